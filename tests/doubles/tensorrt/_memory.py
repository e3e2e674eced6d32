"""Memory at a bound address: host memory (the host-memory double) is read in place; device memory (the
GPU tests) is copied out and back with cuda-python, after the stream's earlier work has finished."""

from __future__ import annotations

import ctypes

import numpy as np

_DEVICE_PTRS: dict[int, bool] = {}


def _is_device(ptr: int) -> bool:
    if ptr not in _DEVICE_PTRS:
        try:
            from cuda.bindings import runtime as cudart

            err, attrs = cudart.cudaPointerGetAttributes(ptr)
            _DEVICE_PTRS[ptr] = int(err) == 0 and int(attrs.type) == int(
                cudart.cudaMemoryType.cudaMemoryTypeDevice
            )
        except Exception:  # no cuda-python or no GPU: host memory
            _DEVICE_PTRS[ptr] = False
    return _DEVICE_PTRS[ptr]


def read(ptr: int, shape: list[int], stream: int) -> np.ndarray:
    n = int(np.prod(shape))
    if _is_device(ptr):
        from cuda.bindings import runtime as cudart

        out = np.empty(shape, np.float32)
        cudart.cudaStreamSynchronize(stream)
        (err,) = cudart.cudaMemcpy(
            out.ctypes.data, ptr, out.nbytes, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        )
        if int(err):
            raise RuntimeError(f"cudaMemcpy: {err}")
        return out
    return np.ctypeslib.as_array((ctypes.c_float * n).from_address(ptr)).reshape(shape).copy()


def write(ptr: int, y: np.ndarray) -> None:
    if _is_device(ptr):
        from cuda.bindings import runtime as cudart

        (err,) = cudart.cudaMemcpy(ptr, y.ctypes.data, y.nbytes, cudart.cudaMemcpyKind.cudaMemcpyHostToDevice)
        if int(err):
            raise RuntimeError(f"cudaMemcpy: {err}")
        return
    ctypes.memmove(ptr, y.ctypes.data, y.nbytes)
