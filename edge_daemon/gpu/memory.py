"""The small memory interface the TensorRT engine and calibrator use, and its CUDA implementation.

TensorRT reads and writes device addresses; this interface hands them out. :class:`CudaMemory` is the
real one (cuda-python). The engine takes a ``Memory`` as a ready part, so on machines without a GPU the
test suite can run the engine through its TensorRT test double with host memory (tests/doubles).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt


class HostView(Protocol):
    """Host memory the device copies to/from: ``array`` to read/write, ``write`` to fill it."""

    array: npt.NDArray[Any]

    def write(self, src: npt.NDArray[Any]) -> None: ...

    def close(self) -> None: ...


class DeviceView(Protocol):
    ptr: int
    nbytes: int

    def close(self) -> None: ...


class Memory(Protocol):
    """Allocation, copies and one stream. ``stream_handle`` is what ``execute_async_v3`` takes."""

    @property
    def stream_handle(self) -> int: ...

    def device(self, nbytes: int) -> DeviceView: ...

    def host(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> HostView: ...

    def upload(self, dst: DeviceView, src: HostView) -> None: ...

    def download(self, dst: HostView, src: DeviceView) -> None: ...

    def synchronize(self) -> None: ...

    def device_identity(self) -> tuple[str, str, bool]:
        """(GPU name, compute capability like "8.7", integrated memory?)."""
        ...

    def activate(self) -> None:
        """Make this memory's GPU the calling thread's current device (``cudaSetDevice``): TensorRT binds
        builders, engines and contexts to the device current when they are made or run."""
        ...

    def close(self) -> None: ...


class CudaMemory:
    """Memory on the current CUDA device, with one non-blocking stream; pinned host buffers."""

    def __init__(self, device_index: int = 0) -> None:
        from edge_daemon.gpu import cuda

        self._cuda = cuda
        self._index = device_index
        self._info = cuda.device_info(device_index)
        cuda.init_context(device_index)  # the stream and every buffer below belong to this GPU
        self._stream = cuda.Stream()

    @property
    def stream_handle(self) -> int:
        return self._stream.handle

    def device(self, nbytes: int) -> Any:
        return self._cuda.DeviceBuffer(nbytes)

    def host(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> Any:
        return self._cuda.PinnedBuffer(shape, np.dtype(dtype))

    def upload(self, dst: Any, src: Any) -> None:
        self._cuda.copy_htod_async(dst, src, self._stream)

    def download(self, dst: Any, src: Any) -> None:
        self._cuda.copy_dtoh_async(dst, src, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def device_identity(self) -> tuple[str, str, bool]:
        return self._info.name, self._info.compute_capability, self._info.integrated

    def activate(self) -> None:
        self._cuda.set_device(self._index)

    def close(self) -> None:
        self._stream.close()
