"""What ``edge-daemon bench --cameras`` compares the streams held against, besides the decode limit
(:mod:`edge_daemon.tools.decode_limit`): the engine's bare batched rate, and Ultralytics' own batched
``predict`` on the same weights and device."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from edge_daemon.config import Settings
from edge_daemon.errors import ConfigError

log = logging.getLogger(__name__)


def engine_limit(engine: Any, seconds: float = 3.0, batch: int | None = None) -> tuple[int, float]:
    """(batch, images per second) of the bare engine at ``batch`` (None: its largest): ``enqueue`` on
    device buffers for a GPU engine, ``infer`` on a ready tensor (batch 1) otherwise."""
    h, w = engine.info.input_hw
    io = engine.device_io()
    if io is None:
        tensor = np.zeros((1, 3, h, w), np.float32)
        for _ in range(3):
            engine.infer(tensor)
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            engine.infer(tensor)
            n += 1
        return 1, n / (time.perf_counter() - t0)
    from edge_daemon.gpu import cuda

    batch = min(batch or engine.info.max_batch, engine.info.max_batch)
    itemsize = 2 if io.input_dtype == "float16" else 4
    stream = cuda.Stream()
    dev_in = cuda.DeviceBuffer(batch * 3 * h * w * itemsize)
    outs = [cuda.DeviceBuffer(int(np.prod(shape)) * 4) for shape in io.output_shapes]
    try:
        for _ in range(5):
            engine.enqueue(dev_in.ptr, [o.ptr for o in outs], batch, stream.handle)
        stream.synchronize()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            engine.enqueue(dev_in.ptr, [o.ptr for o in outs], batch, stream.handle)
            stream.synchronize()
            n += 1
        return batch, n * batch / (time.perf_counter() - t0)
    finally:
        for out in outs:
            out.close()
        dev_in.close()
        stream.close()


def ultralytics_rates(
    settings: Settings, model: Any, clip: Path, fps: int, max_cameras: int
) -> dict[int, float]:
    """Ultralytics' batched predict on N frames of the clip, N = 1, 2, 4... while it keeps up with N
    streams (and up to ``max_cameras``): images per second at each N."""
    import cv2

    try:
        from ultralytics import YOLO
    except ImportError:
        raise ConfigError(
            "bench: the Ultralytics comparison needs the export extra; or pass --no-ultralytics"
        ) from None
    info = model.engine.info
    device = getattr(settings.engine, "device_index", None)
    gpu = info.backend in ("torch", "tensorrt")
    yolo = YOLO(str(settings.model.path if gpu else model.onnx_path), task=model.info.task)
    cap = cv2.VideoCapture(str(clip))
    frames = [cap.read()[1] for _ in range(min(max_cameras, 64))]
    cap.release()
    kwargs: dict[str, Any] = {"verbose": False, "imgsz": list(info.input_hw), "conf": settings.detect.conf}
    if gpu:
        kwargs.update(device=device or 0, half=info.precision in ("fp16", "int8"))
    rates: dict[int, float] = {}
    n = 1
    while n <= min(max_cameras, len(frames)):
        batch = frames[:n]
        for _ in range(3):
            yolo.predict(batch, **kwargs)
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < 3.0:
            yolo.predict(batch, **kwargs)
            k += 1
        rates[n] = round(k * n / (time.perf_counter() - t0), 1)
        log.warning("bench: ultralytics predict, batch %d: %.0f FPS", n, rates[n])
        if rates[n] < n * fps:
            break
        n *= 2
    return rates
