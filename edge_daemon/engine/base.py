"""The one small interface every inference backend implements (ONNX Runtime now, TensorRT next).

Contract of :meth:`InferenceEngine.infer`: input float32 NCHW (B, 3, H, W), RGB, values in [0, 1], with
(H, W) == ``input_hw``; output the raw detect-head tensor (B, 4 + nc + extra, N) as float32 on the host
(layout documented in :mod:`edge_daemon.postprocess`). Backends hold no per-frame state beyond their own
buffers, and ``close()`` releases everything they own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What a loaded engine reports about itself.

    input_hw: (height, width) in pixels; max_batch: largest batch ``infer`` accepts;
    precision: the precision actually running (fp32, fp16, int8), never merely the one asked for;
    metadata: the model's own key/value metadata (Ultralytics writes names, stride, task, imgsz).
    """

    backend: str
    precision: str
    input_name: str
    input_hw: tuple[int, int]
    max_batch: int
    providers: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineRequest:
    """What a backend gets to produce a ready engine, besides its own config section.

    onnx_path: the model to run (``.pt`` already exported); model_sha256: of the file the user configured;
    model_stem: its name without suffix; imgsz: (H, W) asked for, or None for the model's own size;
    cache_dir: where engines and caches live; camera: settings of the first camera (INT8 calibration
    frames come from it); memory: a GPU memory provider, or None for the backend's default;
    status: receives progress text for systemd's STATUS= line.
    """

    onnx_path: Path
    model_sha256: str
    model_stem: str
    imgsz: tuple[int, int] | None
    cache_dir: Path
    camera: Any = None
    memory: Any = None
    status: Callable[[str], None] = field(default=lambda text: None)


class InferenceEngine(ABC):
    """A loaded model that turns an input batch into the raw head output."""

    info: EngineInfo

    @abstractmethod
    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run one batch. Raises EngineError on a backend failure and ValueError on a bad input shape."""

    @abstractmethod
    def close(self) -> None:
        """Release the backend's resources. Idempotent."""

    def __enter__(self) -> InferenceEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def check_input(self, batch: npt.NDArray[np.float32]) -> None:
        h, w = self.info.input_hw
        if batch.ndim != 4 or batch.shape[1:] != (3, h, w) or not 1 <= batch.shape[0] <= self.info.max_batch:
            raise ValueError(
                f"input must be (1..{self.info.max_batch}, 3, {h}, {w}), got {tuple(batch.shape)}"
            )
