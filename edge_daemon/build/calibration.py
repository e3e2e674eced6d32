"""INT8 calibration data (TensorRT and Q/DQ): frames from the device's own camera (default) or images.

Camera frames captured at first boot are kept on disk (JPEG, quality 95) with a manifest, so later boots
reuse the same set: its sha256 is part of every key, and recapturing would change it. Delete the folder to
calibrate on fresh frames. No TensorRT import here.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.camera.base import FrameSource, as_bgr
from edge_daemon.errors import CameraError, EngineError
from edge_daemon.files import atomic_write
from edge_daemon.model.preprocess import letterbox, to_tensor

log = logging.getLogger(__name__)

StatusFn = Callable[[str], None]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class CalibrationSet:
    """Ordered calibration images and the sha256 over their bytes (the set's identity in every key)."""

    images: tuple[Path, ...]
    sha256: str
    source: str

    def __len__(self) -> int:
        return len(self.images)


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(hashlib.sha256(p.read_bytes()).digest())
    return digest.hexdigest()


def from_glob(pattern: str, limit: int) -> CalibrationSet:
    """Images matching ``pattern`` (a directory means every image in it), sorted, at most ``limit``."""
    base = Path(pattern)
    paths = (
        sorted(base.iterdir())
        if base.is_dir()
        else sorted(Path(p) for p in glob.glob(pattern, recursive=True))
    )
    images = [p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()][:limit]
    if not images:
        raise EngineError(f"calibration: no images found at {pattern!r}")
    return CalibrationSet(tuple(images), _hash_files(images), f"images {pattern}")


def load_persisted(folder: Path) -> CalibrationSet | None:
    """A set captured on an earlier boot, if complete and intact; None otherwise."""
    try:
        meta = json.loads((folder / "set.json").read_text(encoding="utf-8"))
        images = [folder / name for name in meta["images"]]
        if not images or _hash_files(images) != meta["sha256"]:
            log.warning("calibration set in %s is damaged; capturing a new one", folder)
            return None
        return CalibrationSet(tuple(images), str(meta["sha256"]), str(meta["source"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def capture(
    source: FrameSource,
    count: int,
    folder: Path,
    interval_s: float,
    frame_stride: int = 1,
    status: StatusFn | None = None,
    description: str = "camera",
) -> CalibrationSet:
    """Capture ``count`` frames spread over time and keep them in ``folder``.

    Live sources keep one frame per ``interval_s`` seconds; finite sources (files) keep every
    ``frame_stride``-th frame, so the set spans the whole clip instead of its first seconds.
    """
    folder.mkdir(parents=True, exist_ok=True)
    progress = Progress(count, "capturing calibration frames", status)
    names: list[str] = []
    source.open()
    try:
        index, last_keep = 0, -math.inf
        while len(names) < count:
            try:
                image = as_bgr(source.read())
            except CameraError as exc:
                raise EngineError(f"calibration: camera failed while capturing frames: {exc}") from None
            if image is None:
                break
            now = time.monotonic()
            keep = index % frame_stride == 0 if source.finite else now - last_keep >= interval_s
            index += 1
            if not keep:
                continue
            last_keep = now
            ok, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            if not ok:
                raise EngineError("calibration: could not encode a frame as JPEG")
            name = f"{len(names):06d}.jpg"
            atomic_write(folder / name, jpg.tobytes())
            names.append(name)
            progress.update(len(names))
    finally:
        source.close()
    if len(names) < min(count, 8):
        raise EngineError(f"calibration: only {len(names)} frames could be captured from {description}")
    if len(names) < count:
        log.warning("calibration: the source ended after %d of %d frames; using those", len(names), count)
    images = [folder / n for n in names]
    digest = _hash_files(images)
    manifest = {"images": names, "sha256": digest, "source": description, "captured_at": time.time()}
    atomic_write(folder / "set.json", json.dumps(manifest, indent=1).encode("utf-8"))
    return CalibrationSet(tuple(images), digest, description)


def batches(cset: CalibrationSet, input_hw: tuple[int, int], batch: int) -> Iterator[npt.NDArray[np.float32]]:
    """Letterboxed float32 NCHW batches of exactly ``batch`` images (the remainder is dropped)."""
    for start in range(0, len(cset) - batch + 1, batch):
        boxed = []
        for path in cset.images[start : start + batch]:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise EngineError(f"calibration: cannot read image {path}")
            boxed.append(letterbox(np.ascontiguousarray(image, np.uint8), input_hw)[0])
        yield np.ascontiguousarray(to_tensor(boxed), dtype=np.float32)


class Progress:
    """Counts with ETA: a log line every 10%, a bar on a terminal, and systemd ``STATUS=`` text (at most
    every ``status_every_s`` seconds, and always the last count)."""

    def __init__(
        self, total: int, label: str, status: StatusFn | None = None, status_every_s: float = 0.5
    ) -> None:
        self.total = max(1, total)
        self.status_every_s = status_every_s
        self._last_status = -math.inf
        self.label = label
        self.status = status
        self.started = time.monotonic()
        self._next_log = 0.1
        self._tty = sys.stderr.isatty()

    def eta_s(self, done: int) -> float:
        elapsed = time.monotonic() - self.started
        return elapsed / done * (self.total - done) if done else float("nan")

    def update(self, done: int) -> None:
        frac = done / self.total
        text = f"{self.label} {done}/{self.total}"
        eta = self.eta_s(done)
        if not math.isnan(eta):
            text += f", ETA {eta:.0f}s"
        now = time.monotonic()
        if self.status is not None and (done >= self.total or now - self._last_status >= self.status_every_s):
            self._last_status = now
            self.status(text)
        if self._tty:
            bar = "#" * int(frac * 30)
            sys.stderr.write(f"\r{self.label} [{bar:<30}] {done}/{self.total}")
            if done >= self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        if frac >= self._next_log or done >= self.total:
            log.info("%s", text)
            while self._next_log <= frac:
                self._next_log += 0.1


_SOURCE_FIELDS = ("type", "path", "url", "device", "sensor_id", "pipeline", "width", "height")


def _source_tag(camera: Any) -> str:
    """A short digest of where a camera's frames come from (not its name, rate or queue settings)."""
    data = camera.model_dump(mode="json") if hasattr(camera, "model_dump") else {}
    source = {k: data[k] for k in _SOURCE_FIELDS if k in data}
    return hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()[:10]


def calibration_set(cal: Any, camera: Any, cache_dir: Path, status: StatusFn | None = None) -> CalibrationSet:
    """The calibration set a config asks for (``cal``: config.CalibrationConfig).

    ``images``: read from the glob. ``camera``: the set captured from ``camera`` on an earlier boot (kept in
    ``<cache_dir>/calibration/<camera>-<frames>-<source digest>/``: a camera renamed to another source gets
    new frames), or captured now, spread over time (a file: over the
    whole clip). Shared by the TensorRT calibrator and the Q/DQ quantizer, so both see the same frames.
    """
    if cal.source == "images":
        return from_glob(cal.images, cal.frames)
    if camera is None:
        raise EngineError(
            "INT8 calibration from the camera needs a camera; or set calibration.source: images"
        )
    folder = cache_dir / "calibration" / f"{camera.name}-{cal.frames}-{_source_tag(camera)}"
    persisted = load_persisted(folder)
    if persisted is not None:
        return persisted
    from edge_daemon.camera import open_source

    stride = 1
    if camera.type == "file":
        cap = cv2.VideoCapture(str(camera.path))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        cap.release()
        stride = max(1, total // cal.frames)
    log.info("capturing %d calibration frames from camera %s (first boot only)", cal.frames, camera.name)
    return capture(
        open_source(camera), cal.frames, folder, cal.interval_s, stride, status, f"camera {camera.name}"
    )
