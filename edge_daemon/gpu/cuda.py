"""Checked cuda-python runtime calls, owned device/pinned buffers and streams.

Imported only when a GPU backend is selected. Works with cuda-python 12.x and 13.x
(``cuda.bindings.runtime``; older 12.x releases expose the same module as ``cuda.cudart``).
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_daemon.errors import EngineError

try:
    from cuda.bindings import runtime as cudart
except ImportError:  # cuda-python < 12.6
    try:
        from cuda import cudart
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise ImportError(
            "cuda-python is not installed; install the gpu extra: pip install 'edge-daemon[gpu]'"
        ) from exc


class CudaError(EngineError):
    """A CUDA runtime call failed; ``code`` is the cudaError_t name, e.g. ``cudaErrorMemoryAllocation``."""

    def __init__(self, call: str, code: str, detail: str) -> None:
        self.call, self.code = call, code
        super().__init__(f"{call} failed: {code}: {detail}")


def check(result: Any, call: str) -> Any:
    """Unpack a cuda-python result tuple ``(err, *values)``; raise CudaError unless err is success."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != int(cudart.cudaError_t.cudaSuccess):
        name = cudart.cudaGetErrorName(err)[1]
        text = cudart.cudaGetErrorString(err)[1]
        raise CudaError(call, _s(name) or str(err), _s(text) or "")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str
    integrated: bool
    total_memory: int


def device_info(index: int = 0) -> GpuInfo:
    """Properties of GPU ``index``. Raises CudaError without a driver or GPU."""
    count = check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if count <= index:
        raise CudaError("cudaGetDeviceCount", "cudaErrorNoDevice", f"{count} GPU(s), asked for #{index}")
    prop = check(cudart.cudaGetDeviceProperties(index), "cudaGetDeviceProperties")
    return GpuInfo(
        _s(prop.name), f"{prop.major}.{prop.minor}", bool(prop.integrated), int(prop.totalGlobalMem)
    )


def init_context(index: int = 0) -> None:
    """Select GPU ``index`` and make its primary context current (the driver API then shares it)."""
    check(cudart.cudaSetDevice(index), "cudaSetDevice")
    _CURRENT.index = index
    check(cudart.cudaFree(0), "cudaFree(0)")


_CURRENT = threading.local()

WAIT_POLICIES = ("auto", "spin", "yield", "block")


def _schedule_flags() -> dict[str, int]:
    flags = (
        cudart.cudaDeviceScheduleAuto,
        cudart.cudaDeviceScheduleSpin,
        cudart.cudaDeviceScheduleYield,
        cudart.cudaDeviceScheduleBlockingSync,
    )
    return {name: int(flag) for name, flag in zip(WAIT_POLICIES, flags, strict=True)}


def set_wait(index: int, policy: str) -> None:
    """How host threads of this process wait for GPU ``index`` (``cudaSetDeviceFlags``' scheduling bits;
    its other flags are kept): "block" sleeps on a synchronisation primitive until the work is done,
    "spin" polls on the core, "yield" polls and yields, "auto" is CUDA's heuristic. Since CUDA 12 the
    flags of an already initialised device are overwritten. The flags govern stream and device
    synchronisation (the engine's and the decoder's own waits); an event's wait follows the event's own
    flag instead: ``cudaEventSynchronize`` busy-waits unless the event was created with
    ``cudaEventBlockingSync`` (CUDA runtime API, cudaEventSynchronize; measured on the H100: a "block"
    process still spun a whole core on a plain event), so under "block" the :class:`Event` s created
    after this call carry that flag (they read the device's flags). Call it once per process before the
    pipeline makes its events."""
    flags = _schedule_flags()
    if policy not in flags:
        raise ValueError(f"wait policy {policy!r}: expected one of {', '.join(WAIT_POLICIES)}")
    set_device(index)
    current = int(check(cudart.cudaGetDeviceFlags(), "cudaGetDeviceFlags"))
    mask = int(cudart.cudaDeviceScheduleMask)
    check(cudart.cudaSetDeviceFlags((current & ~mask) | flags[policy]), "cudaSetDeviceFlags")


def wait_policy(index: int) -> str:
    """The scheduling policy GPU ``index`` has in this process (see :func:`set_wait`)."""
    set_device(index)
    current = _schedule()
    return next((name for name, bits in _schedule_flags().items() if bits == current), str(current))


def _schedule() -> int:
    """The scheduling bits of the calling thread's current device."""
    flags = int(check(cudart.cudaGetDeviceFlags(), "cudaGetDeviceFlags"))
    return flags & int(cudart.cudaDeviceScheduleMask)


def set_device(index: int) -> None:
    """``cudaSetDevice`` for the calling thread (CUDA's current device is per thread), once per thread."""
    if getattr(_CURRENT, "index", None) != index:
        check(cudart.cudaSetDevice(index), "cudaSetDevice")
        _CURRENT.index = index


def copy_pageable_htod(dst: DeviceBuffer, src: npt.NDArray[Any]) -> None:
    """Synchronous copy from ordinary (pageable) host memory; benchmarks use it as the slow baseline."""
    if src.nbytes > dst.nbytes:
        raise ValueError(f"copy of {src.nbytes} bytes exceeds the device buffer ({dst.nbytes})")
    check(
        cudart.cudaMemcpy(dst.ptr, src.ctypes.data, src.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice),
        "cudaMemcpy(HtoD, pageable)",
    )


class Stream:
    """An owned CUDA stream. ``handle`` is the integer TensorRT's ``execute_async_v3`` takes."""

    def __init__(self) -> None:
        self._stream: Any = check(
            cudart.cudaStreamCreateWithFlags(cudart.cudaStreamNonBlocking), "cudaStreamCreate"
        )

    @property
    def handle(self) -> int:
        return int(self._stream)

    @property
    def raw(self) -> Any:
        return self._stream

    def synchronize(self) -> None:
        check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def close(self) -> None:
        if self._stream is not None:
            check(cudart.cudaStreamDestroy(self._stream), "cudaStreamDestroy")
            self._stream = None


class Event:
    """An owned CUDA event (timing disabled): ``record`` on a stream, then ``synchronize`` or ``query``.
    Under ``gpu.wait: block`` (:func:`set_wait`) its ``synchronize`` sleeps rather than spins."""

    def __init__(self) -> None:
        flags = int(cudart.cudaEventDisableTiming)
        if _schedule() == int(cudart.cudaDeviceScheduleBlockingSync):  # gpu.wait: block
            flags |= int(cudart.cudaEventBlockingSync)
        self._event: Any = check(cudart.cudaEventCreateWithFlags(flags), "cudaEventCreate")

    def record(self, stream: Stream) -> None:
        check(cudart.cudaEventRecord(self._event, stream.raw), "cudaEventRecord")

    def synchronize(self) -> None:
        check(cudart.cudaEventSynchronize(self._event), "cudaEventSynchronize")

    def query(self) -> bool:
        """True once all work recorded before the event has finished."""
        err = cudart.cudaEventQuery(self._event)[0]
        if int(err) == int(cudart.cudaError_t.cudaErrorNotReady):
            return False
        check((err,), "cudaEventQuery")
        return True

    def close(self) -> None:
        if self._event is not None:
            check(cudart.cudaEventDestroy(self._event), "cudaEventDestroy")
            self._event = None


class DeviceBuffer:
    """``nbytes`` of device memory (cudaMalloc). ``ptr`` is the device address."""

    def __init__(self, nbytes: int) -> None:
        if nbytes <= 0:
            raise ValueError("nbytes must be positive")
        self.nbytes = nbytes
        self.ptr: int = int(check(cudart.cudaMalloc(nbytes), "cudaMalloc"))

    def close(self) -> None:
        if self.ptr:
            check(cudart.cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


class PinnedBuffer:
    """Page-locked host memory (cudaHostAlloc) seen as a NumPy array of ``shape`` and ``dtype``.

    Write into it with :meth:`write` (a checked ``np.copyto``); never rebind ``array`` to a new NumPy
    array, or copies would silently come from pageable memory. With ``mapped=True`` the memory is also
    mapped into the device address space (``device_ptr``): zero-copy on integrated GPUs (Jetson).
    """

    def __init__(self, shape: tuple[int, ...], dtype: npt.DTypeLike, mapped: bool = False) -> None:
        self.dtype = np.dtype(dtype)
        self.shape = tuple(shape)
        self.nbytes = int(np.prod(shape)) * self.dtype.itemsize
        flags = cudart.cudaHostAllocMapped if mapped else cudart.cudaHostAllocDefault
        self.ptr: int = int(check(cudart.cudaHostAlloc(self.nbytes, flags), "cudaHostAlloc"))
        self.device_ptr = (
            int(check(cudart.cudaHostGetDevicePointer(self.ptr, 0), "cudaHostGetDevicePointer"))
            if mapped
            else 0
        )
        buf = (ctypes.c_byte * self.nbytes).from_address(self.ptr)
        self.array: npt.NDArray[Any] = np.frombuffer(memoryview(buf), dtype=self.dtype).reshape(self.shape)

    def write(self, src: npt.NDArray[Any]) -> None:
        if src.shape != self.shape:
            raise ValueError(f"pinned buffer holds {self.shape}, got {src.shape}")
        np.copyto(self.array, src, casting="same_kind")

    def close(self) -> None:
        if self.ptr:
            self.array = np.empty(0, self.dtype)
            check(cudart.cudaFreeHost(self.ptr), "cudaFreeHost")
            self.ptr = 0


def _copy_async(
    dst_ptr: int, src_ptr: int, n: int, limit: tuple[int, int], kind: Any, stream: Stream, call: str
) -> None:
    if n > limit[0] or n > limit[1]:
        raise ValueError(f"copy of {n} bytes exceeds a buffer ({limit[0]} -> {limit[1]})")
    check(cudart.cudaMemcpyAsync(dst_ptr, src_ptr, n, kind, stream.raw), call)


def copy_htod_async(dst: DeviceBuffer, src: PinnedBuffer, stream: Stream, nbytes: int | None = None) -> None:
    """Pinned host -> device, asynchronous on ``stream`` (``nbytes``: default the whole source)."""
    n = nbytes if nbytes is not None else src.nbytes
    kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
    _copy_async(dst.ptr, src.ptr, n, (src.nbytes, dst.nbytes), kind, stream, "cudaMemcpyAsync(HtoD)")


def copy_dtoh_async(dst: PinnedBuffer, src: DeviceBuffer, stream: Stream, nbytes: int | None = None) -> None:
    """Device -> pinned host, asynchronous on ``stream`` (``nbytes``: default the whole destination)."""
    n = nbytes if nbytes is not None else dst.nbytes
    kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
    _copy_async(dst.ptr, src.ptr, n, (src.nbytes, dst.nbytes), kind, stream, "cudaMemcpyAsync(DtoH)")


def copy_dtod(dst_ptr: int, src_ptr: int, nbytes: int, stream: Stream) -> None:
    """Device -> device copy on ``stream`` (non-blocking: a plain cudaMemcpy on the legacy default stream
    would wait for the inference stream's work), waited for before returning."""
    kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
    check(cudart.cudaMemcpyAsync(dst_ptr, src_ptr, nbytes, kind, stream.raw), "cudaMemcpyAsync(DtoD)")
    stream.synchronize()


def download(src_ptr: int, out: npt.NDArray[Any], stream: Stream) -> npt.NDArray[Any]:
    """Device -> pageable host copy into ``out`` on ``stream``, waited for (rare paths: snapshots, the
    live view)."""
    kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
    check(
        cudart.cudaMemcpyAsync(out.ctypes.data, src_ptr, out.nbytes, kind, stream.raw),
        "cudaMemcpyAsync(DtoH)",
    )
    stream.synchronize()
    return out


_KINDS = {
    "htod": "cudaMemcpyHostToDevice",
    "dtoh": "cudaMemcpyDeviceToHost",
    "dtod": "cudaMemcpyDeviceToDevice",
}


def copy_ptr_async(dst_ptr: int, src_ptr: int, nbytes: int, kind: str, stream_handle: int) -> None:
    """``nbytes`` from ``src_ptr`` to ``dst_ptr`` (``kind``: htod, dtoh, dtod; host memory page-locked) on
    the stream whose raw handle is ``stream_handle`` (an engine's ``enqueue`` gets one), without waiting."""
    direction = getattr(cudart.cudaMemcpyKind, _KINDS[kind])
    stream = cudart.cudaStream_t(stream_handle)
    check(cudart.cudaMemcpyAsync(dst_ptr, src_ptr, nbytes, direction, stream), f"cudaMemcpyAsync({kind})")


def synchronize_handle(stream_handle: int) -> None:
    """Wait for the stream whose raw handle is ``stream_handle``."""
    check(cudart.cudaStreamSynchronize(cudart.cudaStream_t(stream_handle)), "cudaStreamSynchronize")


def host_register(address: int, nbytes: int) -> None:
    """Page-lock ``nbytes`` of host memory at ``address`` (shared memory too) for DMA on CUDA streams."""
    check(cudart.cudaHostRegister(address, nbytes, cudart.cudaHostRegisterPortable), "cudaHostRegister")


def host_unregister(address: int) -> None:
    check(cudart.cudaHostUnregister(address), "cudaHostUnregister")
