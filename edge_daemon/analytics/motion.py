"""Motion gating: skip inference on frames in which nothing moved.

The frame is shrunk to a small grey image (``width`` pixels wide, area-averaged and blurred), compared
with the grey image of the last frame that was inferred, and counted as moving when more than
``min_area`` of its unmasked pixels changed by ``threshold`` grey levels. Comparing with the last
*inferred* frame rather than the previous one catches slow movement that adds up over several frames.
Runs on the camera's own thread, before the frame is queued; about 1.4 ms on a 768x576 frame (2-core EPYC).
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.config.analytics import MotionConfig


class MotionGate:
    """One per camera, used from its thread only."""

    def __init__(self, cfg: MotionConfig) -> None:
        self.cfg = cfg
        self.skipped = 0
        self.passed = 0
        self._ref: npt.NDArray[np.uint8] | None = None
        self._mask: npt.NDArray[np.bool_] | None = None
        self._shape: tuple[int, int] = (0, 0)
        self._last_t = float("-inf")
        self._prev_t: float | None = None
        self.still_s = 0.0  # camera time spent in skipped (still) frames so far

    def _small(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        h, w = image.shape[:2]
        width = min(self.cfg.width, w)
        size = (width, max(1, round(h * width / w)))
        shrunk = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        grey = shrunk if shrunk.ndim == 2 else cv2.cvtColor(shrunk, cv2.COLOR_BGR2GRAY)  # NV12: its Y plane
        small = np.asarray(cv2.GaussianBlur(grey, (5, 5), 0), np.uint8)
        if self._shape != (h, w):
            self._shape, self._ref = (h, w), None
            self._mask = self._build_mask(w, h, size)
        return small

    def _build_mask(self, w: int, h: int, size: tuple[int, int]) -> npt.NDArray[np.bool_] | None:
        """Pixels of the small image that count (True), or None when nothing is masked."""
        if not self.cfg.mask:
            return None
        scale = (size[0], size[1]) if self.cfg.units == "norm" else (size[0] / w, size[1] / h)
        canvas = np.zeros((size[1], size[0]), np.uint8)
        for polygon in self.cfg.mask:
            pts = np.round(np.asarray(polygon, np.float64) * np.asarray(scale)).astype(np.int32)
            cv2.fillPoly(canvas, [pts], 1)
        counted: npt.NDArray[np.bool_] = canvas == 0
        return counted

    def moving(self, image: npt.NDArray[np.uint8], t: float) -> bool:
        """Whether this frame should be inferred: it moved against the last inferred frame, or none was
        inferred for ``max_skip_s`` (timers and stationary objects still get fresh detections)."""
        small = self._small(image)
        ref = self._ref
        due = ref is None or t - self._last_t >= self.cfg.max_skip_s
        if not due:
            assert ref is not None
            changed = cv2.absdiff(small, ref) >= self.cfg.threshold
            if self._mask is not None:
                changed &= self._mask
                total = max(1, int(np.count_nonzero(self._mask)))
            else:
                total = changed.size
            due = bool(np.count_nonzero(changed) > self.cfg.min_area * total)
        if due:
            self._ref, self._last_t = small, t
            self.passed += 1
        else:
            self.skipped += 1
            if self._prev_t is not None:
                self.still_s += max(0.0, t - self._prev_t)  # nothing moved since the last inferred frame
        self._prev_t = t
        return bool(due)
