"""The memory a worker shares with the engine process (``service.shared_engine``,
:mod:`edge_daemon.app.engine_server`): a block of ``slots`` batches, each with its input and its outputs
(:class:`Layout`), in an anonymous ``memfd`` the worker makes and hands over its pipe, so ``/dev/shm``'s
size does not matter (:class:`Block`); page-locked in each process that copies into it on a GPU.
"""

from __future__ import annotations

import contextlib
import ctypes
import mmap
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_daemon.errors import ConfigError
from edge_daemon.runtime import DeviceIO, EngineInfo


@dataclass(frozen=True)
class Layout:
    """A block of ``slots`` batches of up to ``batch`` images: where each slot keeps its input and each of
    its outputs (byte offsets; sizes per image)."""

    batch: int
    slots: int
    input_dtype: str
    input_bytes: int  # per image
    output_shapes: tuple[tuple[int, ...], ...]  # per image
    output_bytes: list[int]  # per image, float32

    @classmethod
    def of(cls, info: EngineInfo, io: DeviceIO | None, batch: int, slots: int = 1) -> Layout:
        """The layout for ``info``'s engine: its input in ``io``'s element type (float32 on the host)."""
        h, w = info.input_hw
        dtype = io.input_dtype if io is not None else "float32"
        shapes = []
        for name, shape in zip(info.output_names, info.output_shapes, strict=True):
            if any(d is None for d in shape):
                raise ConfigError(f"service.shared_engine: output {name} has a dynamic shape {shape}")
            shapes.append(tuple(int(d) for d in shape if d is not None))
        sizes = [int(np.prod(shape)) * 4 for shape in shapes]
        return cls(batch, slots, dtype, 3 * h * w * np.dtype(dtype).itemsize, tuple(shapes), sizes)

    @property
    def slot_bytes(self) -> int:
        return self.batch * (self.input_bytes + sum(self.output_bytes))

    @property
    def nbytes(self) -> int:
        return self.slots * self.slot_bytes

    def input_offset(self, slot: int) -> int:
        return slot * self.slot_bytes

    def output_offset(self, slot: int, i: int) -> int:
        return slot * self.slot_bytes + self.batch * (self.input_bytes + sum(self.output_bytes[:i]))


class Block:
    """A shared memory block (memfd) laid out by ``layout``, mapped here; page-locked for the GPU on
    :meth:`pin`. Made by the worker (:meth:`create`), opened by the engine process from the descriptor."""

    def __init__(self, fd: int, layout: Layout) -> None:
        self.fd, self.layout = fd, layout
        self.map = mmap.mmap(fd, layout.nbytes)
        self._anchor = ctypes.c_char.from_buffer(self.map)
        self.address = ctypes.addressof(self._anchor)
        self.pinned = False

    @classmethod
    def create(cls, layout: Layout) -> Block:
        fd = os.memfd_create("edge-daemon-engine", os.MFD_CLOEXEC)
        os.ftruncate(fd, layout.nbytes)
        return cls(fd, layout)

    def input(self, slot: int, n: int) -> npt.NDArray[Any]:
        """The first ``n`` images of a slot's input, flat."""
        count = n * self.layout.input_bytes // np.dtype(self.layout.input_dtype).itemsize
        return np.frombuffer(self.map, self.layout.input_dtype, count, self.layout.input_offset(slot))

    def output(self, slot: int, i: int, n: int) -> npt.NDArray[np.float32]:
        """Output ``i`` of a slot's first ``n`` images."""
        count = n * self.layout.output_bytes[i] // 4
        flat = np.frombuffer(self.map, np.float32, count, self.layout.output_offset(slot, i))
        return flat.reshape(n, *self.layout.output_shapes[i])

    def pin(self) -> None:
        from edge_daemon.gpu import cuda

        cuda.host_register(self.address, self.layout.nbytes)
        self.pinned = True

    def close(self) -> None:
        if self.pinned:
            from edge_daemon.gpu import cuda

            with contextlib.suppress(cuda.CudaError):
                cuda.host_unregister(self.address)
            self.pinned = False
        del self._anchor
        with contextlib.suppress(BufferError):
            self.map.close()
        with contextlib.suppress(OSError):
            os.close(self.fd)
