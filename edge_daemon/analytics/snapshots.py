"""Snapshots: an object's best frame with its box drawn (OpenCV), as JPEG, kept on disk within bounds.

Files: ``<dir>/<camera>/<run>-<track id>.jpg``, rewritten when the object's picture improves. The store is
bounded by total size and by age: past either, the oldest files are deleted and counted (``dropped``),
never silently; a file that cannot be written is counted too (``write_errors``) and the daemon goes on.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.colour import nv12_to_bgr_scaled
from edge_daemon.types import Nv12Picture

log = logging.getLogger(__name__)

_GREEN = (60, 200, 60)


def scaled_copy(
    image: npt.NDArray[np.uint8] | Nv12Picture, max_width: int
) -> tuple[npt.NDArray[np.uint8], float]:
    """A BGR copy of ``image`` to draw on, scaled down to ``max_width`` (never up), and the scale. An NV12
    picture is scaled as it is converted (:func:`~edge_daemon.colour.nv12_to_bgr_scaled`)."""
    if isinstance(image, Nv12Picture):
        return nv12_to_bgr_scaled(image.to_host(), image.colour, max_width)
    scale = min(1.0, max_width / image.shape[1])
    if scale < 1:
        resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        return np.asarray(resized, np.uint8), scale
    return image.copy(), scale


def draw_box(
    canvas: npt.NDArray[np.uint8],
    box: tuple[float, float, float, float],
    caption: str,
    colour: tuple[int, int, int],
    thick: int,
    font_scale: float,
) -> None:
    """``box`` (canvas pixels, rounded here) in ``colour``, ``caption`` in black on a filled label above."""
    x1, y1, x2, y2 = (round(v) for v in box)
    cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thick)
    (tw, th), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
    top = max(0, y1 - th - base - 4)
    cv2.rectangle(canvas, (x1, top), (x1 + tw + 4, top + th + base + 4), colour, -1)
    cv2.putText(canvas, caption, (x1 + 2, top + th + 2), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1)


def render(
    image: npt.NDArray[np.uint8] | Nv12Picture,
    box: tuple[float, float, float, float],
    caption: str,
    max_width: int,
    quality: int,
) -> bytes:
    """The frame with ``box`` drawn and ``caption`` above it, scaled down to ``max_width``, as JPEG."""
    canvas, scale = scaled_copy(image, max_width)
    thick = max(2, round(canvas.shape[1] / 400))
    font_scale = max(0.5, canvas.shape[1] / 1400)
    x1, y1, x2, y2 = box
    draw_box(canvas, (x1 * scale, y1 * scale, x2 * scale, y2 * scale), caption, _GREEN, thick, font_scale)
    ok, jpeg = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return bytes(jpeg.tobytes())


class SnapshotStore:
    """The on-disk snapshots, bounded by ``max_bytes`` and ``max_age_s``. Used from the publish thread."""

    def __init__(self, root: Path, max_bytes: int, max_age_s: float) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.dropped = 0
        self.write_errors = 0
        self.written = 0
        self._files: dict[Path, tuple[float, int]] = {}  # path -> (mtime, size), oldest first
        self._bytes = 0
        self._next_age_check = 0.0
        found: list[tuple[float, int, Path]] = []
        try:
            paths = list(root.glob("*/*"))
        except OSError as exc:
            log.warning("snapshots: cannot list %s: %s", root, exc)
            paths = []
        for path in paths:  # one file at a time: one that vanishes or cannot be read does not stop the rest
            try:
                if path.suffix == ".tmp":  # a write cut short by a crash
                    path.unlink()
                elif path.suffix == ".jpg":
                    st = path.stat()
                    found.append((st.st_mtime, st.st_size, path))
            except OSError as exc:
                log.warning("snapshots: %s: %s", path, exc)
        for mtime, size, path in sorted(found):
            self._files[path] = (mtime, size)
            self._bytes += size
        self._prune(time.time())

    @property
    def size(self) -> int:
        """Bytes on disk."""
        return self._bytes

    @staticmethod
    def relative(camera: str, name: str) -> str:
        """Where ``save(camera, name, ...)`` writes, relative to the store."""
        return f"{camera}/{name}.jpg"

    def save(self, camera: str, name: str, jpeg: bytes) -> str | None:
        """Write (or rewrite) ``<camera>/<name>.jpg``; returns its path relative to the store, None when it
        could not be written."""
        rel = self.relative(camera, name)
        path = self.root / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(jpeg)
            os.replace(tmp, path)
        except OSError as exc:
            self.write_errors += 1
            if self.write_errors in (1, 10) or self.write_errors % 1000 == 0:
                log.error("snapshots: cannot write %s: %s (%d failed writes)", path, exc, self.write_errors)
            return None
        now = time.time()
        old = self._files.pop(path, None)
        if old is not None:
            self._bytes -= old[1]
        self._files[path] = (now, len(jpeg))
        self._bytes += len(jpeg)
        self.written += 1
        self._prune(now)
        return rel

    def prune_if_due(self, now: float) -> None:
        """The age bound, checked once a minute even when nothing is written (a quiet camera)."""
        if now >= self._next_age_check:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Delete the oldest files while the store is over its size, and (every minute) those too old."""
        check_age = now >= self._next_age_check
        if check_age:
            self._next_age_check = now + 60.0
        while self._files:
            path, (mtime, size) = next(iter(self._files.items()))
            if self._bytes <= self.max_bytes and not (check_age and now - mtime > self.max_age_s):
                break
            del self._files[path]
            self._bytes -= size
            self.dropped += 1
            try:
                path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("snapshots: cannot delete %s: %s", path, exc)
