"""Host-memory stand-in for edge_daemon.gpu.memory.CudaMemory (tests only; CI has no GPU).

Addresses are the host addresses of NumPy buffers, which the TensorRT double reads and writes with ctypes,
the way TensorRT reads device addresses (and, on Jetson's integrated memory, mapped host memory).
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

import numpy as np


class HostBuffer:
    def __init__(self, shape: tuple[int, ...], dtype: Any) -> None:
        self.array = np.zeros(shape, dtype=dtype)
        self.ptr = self.array.ctypes.data
        self.nbytes = self.array.nbytes
        self.closed = False

    def write(self, src: np.ndarray) -> None:
        if src.shape != self.array.shape:
            raise ValueError(f"buffer holds {self.array.shape}, got {src.shape}")
        np.copyto(self.array, src)

    def close(self) -> None:
        self.closed = True


class HostMemory:
    def __init__(
        self, name: str = "NVIDIA Test GPU", cc: str = "8.7", integrated: bool = True, device_index: int = 0
    ) -> None:
        self.identity = (name, cc, integrated)
        self.device_index = device_index
        self.buffers: list[HostBuffer] = []
        self.closed = False

    @property
    def stream_handle(self) -> int:
        return 1

    def device(self, nbytes: int) -> HostBuffer:
        buf = HostBuffer((nbytes,), np.uint8)
        self.buffers.append(buf)
        return buf

    def host(self, shape: tuple[int, ...], dtype: Any) -> HostBuffer:
        buf = HostBuffer(shape, dtype)
        self.buffers.append(buf)
        return buf

    def upload(self, dst: HostBuffer, src: HostBuffer) -> None:
        ctypes.memmove(dst.ptr, src.ptr, min(dst.nbytes, src.nbytes))

    def download(self, dst: HostBuffer, src: HostBuffer) -> None:
        ctypes.memmove(dst.ptr, src.ptr, min(dst.nbytes, src.nbytes))

    def synchronize(self) -> None:
        return None

    def device_identity(self) -> tuple[str, str, bool]:
        return self.identity

    def activate(self) -> None:
        """``cudaSetDevice`` as the TensorRT double sees it (per thread)."""
        trt = sys.modules.get("tensorrt")
        if trt is not None and hasattr(trt, "set_current_device"):
            trt.set_current_device(self.device_index)

    def close(self) -> None:
        self.closed = True
