"""What the build layer gets to make an engine's artifact, besides the engine's own config section."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class BuildRequest:
    """onnx_path: the FP32 model (``.pt`` already exported) or TorchScript file; model_sha256: of the file
    the user configured; model_stem: its name without suffix; imgsz: (H, W) asked for, or None for the
    model's own size; cache_dir: where artifacts live; camera: settings of the first camera (INT8
    calibration frames come from it); memory: a GPU memory provider (TensorRT: the calibrator's buffers
    and the device fingerprint); status: receives progress text for systemd's STATUS= line.
    """

    onnx_path: Path
    model_sha256: str
    model_stem: str
    imgsz: tuple[int, int] | None
    cache_dir: Path
    camera: Any = None
    memory: Any = None
    status: Callable[[str], None] = field(default=lambda text: None)
