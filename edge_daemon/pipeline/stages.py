"""The pre-process -> engine -> fetch stage of the pipeline, behind one small interface.

The pipeline's three kinds of thread each call one method::

    camera thread:    prepare(frame) -> item          (letterbox on the CPU, or copy into a pinned slot)
    inference thread: submit([item, ...]) -> batch    (run, or queue on the GPU without waiting)
    publish thread:   outputs(batch) -> outputs       (the raw model outputs on the host), then release()

A stage may also lend the camera threads buffers to decode into (``claim``/``unclaim``): the CUDA stage
lends its pinned slots, so a frame is decoded straight into page-locked memory.

:class:`CpuStage` letterboxes (or, for classifiers, centre-crops) with OpenCV and calls ``engine.run``.
The CUDA stage (:class:`edge_daemon.pipeline.cuda_stage.GpuStage`) keeps frames in pinned memory and does
the rest on one stream.
Items a drop policy discards are handed to ``discard`` so that their resources come back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge_daemon.model.preprocess import preprocess
from edge_daemon.runtime import InferenceEngine, Outputs
from edge_daemon.types import Frame, LetterboxMeta


class Prepared(Protocol):
    @property
    def frame(self) -> Frame: ...

    @property
    def meta(self) -> LetterboxMeta: ...


class Submitted(Protocol):
    @property
    def items(self) -> list[Any]: ...


class Stage(Protocol):
    """What the pipeline needs from pre-processing and the engine (see the module docstring)."""

    name: str

    def prepare(self, frame: Frame) -> Any:
        """Camera thread: make ``frame`` ready for the engine; None if the stage is closing."""
        ...

    def discard(self, item: Any) -> None:
        """A prepared item that will never be submitted (dropped by the queue policy)."""
        ...

    def claim(self, camera: str) -> tuple[object, npt.NDArray[np.uint8]] | None:
        """Camera thread: a buffer to decode the next frame into, or None (see camera.FrameBuffers)."""
        ...

    def unclaim(self, token: object) -> None: ...

    def submit(self, items: list[Any]) -> Any:
        """Inference thread: start one batch (1 <= len(items) <= engine max batch)."""
        ...

    def outputs(self, batch: Any) -> tuple[Outputs, float]:
        """Publish thread: wait for ``batch``; (each raw output with one row per item, in the engine's
        output order; inference milliseconds). The rows stay valid until :meth:`release`."""
        ...

    def release(self, batch: Any) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class CpuItem:
    frame: Frame
    meta: LetterboxMeta
    tensor: npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class CpuBatch:
    items: list[CpuItem]
    wait: Callable[[], tuple[Outputs, float]]  # outputs and engine ms, once ready (``InferenceEngine.start``)


class CpuStage:
    """OpenCV letterbox on the camera threads, ``engine.infer`` on the inference thread."""

    name = "cpu"

    def __init__(self, engine: InferenceEngine, fit: str = "letterbox") -> None:
        self.engine = engine
        self._input_hw = engine.info.input_hw
        self._fit = fit

    def prepare(self, frame: Frame) -> CpuItem:
        tensor, meta = preprocess(frame.bgr(), self._input_hw, self._fit)
        return CpuItem(frame, meta, tensor)

    def discard(self, item: Any) -> None:
        return None

    def claim(self, camera: str) -> tuple[object, npt.NDArray[np.uint8]] | None:
        return None  # OpenCV's own arrays are what the CPU letterbox reads

    def unclaim(self, token: object) -> None:
        return None

    def submit(self, items: list[Any]) -> CpuBatch:
        batch = items[0].tensor if len(items) == 1 else np.concatenate([i.tensor for i in items])
        return CpuBatch(items, self.engine.start(batch))

    def outputs(self, batch: Any) -> tuple[Outputs, float]:
        return batch.wait()  # type: ignore[no-any-return]

    def release(self, batch: Any) -> None:
        return None

    def close(self) -> None:
        return None
