"""The one small interface every inference backend implements (ONNX Runtime, OpenVINO, TensorRT, PyTorch
CUDA).

Run-time only: an engine loads a ready :class:`Artifact` and runs it; it never exports, quantizes,
calibrates or builds (that is :mod:`edge_daemon.build`, before serving).

Contract of :meth:`InferenceEngine.run`: input float32 NCHW (B, 3, H, W), RGB, values in [0, 1], with
(H, W) == ``input_hw``; output every output tensor of the model, float32 on the host, in the order of
``info.output_names`` (the head's main output first: detect (B, 4 + nc + extra, N); a segmentation model
adds its mask prototypes (B, 32, 160, 160) as the second; layouts in :mod:`edge_daemon.model.tasks`).
:meth:`InferenceEngine.infer` is the first output alone. Backends hold no per-frame state beyond their own
buffers, and ``close()`` releases everything they own.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
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
    metadata: the model's own key/value metadata (Ultralytics writes names, stride, task, imgsz, end2end);
    output_names: the model's outputs, main output first; output_shapes: each output per image, without
    the batch dimension (None where a size is dynamic), in the same order.
    """

    backend: str
    precision: str
    input_name: str
    input_hw: tuple[int, int]
    max_batch: int
    providers: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    output_names: tuple[str, ...] = ("output0",)
    output_shapes: tuple[tuple[int | None, ...], ...] = ((),)

    def __post_init__(self) -> None:
        if len(self.output_names) != len(self.output_shapes) or not self.output_names:
            raise ValueError(f"outputs {self.output_names} and shapes {self.output_shapes} do not pair up")

    @property
    def output_shape(self) -> tuple[int | None, ...]:
        """The main output per image (the first)."""
        return self.output_shapes[0]


@dataclass(frozen=True)
class Artifact:
    """A ready model file for a backend to load: everything that had to be built was built before.

    path: the file (ONNX, Q/DQ ONNX, TorchScript, TensorRT plan or Ultralytics ``.engine``);
    imgsz: (H, W) for models whose input size is dynamic, None for the model's own size;
    precision: what the file computes in when the file itself does not say (a Q/DQ model is int8; a
    TensorRT plan's manifest says what was built), None for the backend's own reading;
    metadata: the model's key/value metadata where the file does not carry it (TensorRT plans);
    memory: a GPU memory provider (TensorRT), None for the backend's default;
    cache_dir: where the backend may cache what it compiles from the file (OpenVINO's blobs), keyed by the
    build layer; None: no cache.
    """

    path: Path
    imgsz: tuple[int, int] | None = None
    precision: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    memory: Any = None
    cache_dir: Path | None = None


@dataclass(frozen=True, slots=True)
class DeviceIO:
    """How a GPU engine reads and writes device buffers (see :meth:`InferenceEngine.enqueue`).

    input_dtype: "float32" or "float16", the element type the input tensor must hold;
    output_shapes: each output tensor's shape at ``max_batch`` (float32, row-major), in the order of
    ``EngineInfo.output_names``; a batch of b uses the first b rows of each.
    """

    input_dtype: str
    output_shapes: tuple[tuple[int, ...], ...]


Outputs = tuple[npt.NDArray[np.float32], ...]


class InferenceEngine(ABC):
    """A loaded model that turns an input batch into its raw outputs.

    GPU engines also run on device memory: :meth:`device_io` says how, :meth:`enqueue` queues one batch
    on a CUDA stream without waiting. Engines that cannot return None from ``device_io``.
    """

    info: EngineInfo

    @abstractmethod
    def run(self, batch: npt.NDArray[np.float32]) -> Outputs:
        """Run one batch: every output, in the order of ``info.output_names``. Raises EngineError on a
        backend failure and ValueError on a bad input shape."""

    def start(self, batch: npt.NDArray[np.float32]) -> Callable[[], tuple[Outputs, float]]:
        """Start one batch; returns a function that waits for (its outputs, the engine's milliseconds on
        it). Engines that run several batches at once (OpenVINO's THROUGHPUT streams) return at once,
        blocking only while all their requests are busy; the default runs the batch now. The inference
        thread starts, the publish thread waits: batches overlap where the engine can."""
        t0 = time.perf_counter()
        outputs = self.run(batch)
        done = (outputs, (time.perf_counter() - t0) * 1000.0)
        return lambda: done

    def infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run one batch; the main output only."""
        return self.run(batch)[0]

    @abstractmethod
    def close(self) -> None:
        """Release the backend's resources. Idempotent."""

    def device_io(self) -> DeviceIO | None:
        """Device-buffer contract, or None when this engine runs on the host only."""
        return None

    def enqueue(self, input_ptr: int, output_ptrs: Sequence[int], batch: int, stream_handle: int) -> None:
        """Queue inference of ``batch`` images at device address ``input_ptr`` (B, 3, H, W, ``input_dtype``)
        writing float32 results to ``output_ptrs`` (one per output, in order), on CUDA stream
        ``stream_handle``; returns without waiting. Only for engines whose :meth:`device_io` is not None."""
        raise NotImplementedError(f"{type(self).__name__} does not run on device buffers")

    def prepare_device(  # noqa: B027 (optional: most engines have nothing to prepare)
        self, input_ptr: int, output_ptr_sets: Sequence[Sequence[int]], stream_handle: int
    ) -> None:
        """Do now, before frames flow, the one-time work :meth:`enqueue` would otherwise do on its first
        calls with these buffers (one output set per batch in flight). Engines without any: nothing."""

    def __enter__(self) -> InferenceEngine:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def check_batch(self, batch: int) -> None:
        if not 1 <= batch <= self.info.max_batch:
            raise ValueError(f"batch must be 1..{self.info.max_batch}, got {batch}")

    def check_input(self, batch: npt.NDArray[np.float32]) -> None:
        h, w = self.info.input_hw
        if batch.ndim != 4 or batch.shape[1:] != (3, h, w) or not 1 <= batch.shape[0] <= self.info.max_batch:
            raise ValueError(
                f"input must be (1..{self.info.max_batch}, 3, {h}, {w}), got {tuple(batch.shape)}"
            )
