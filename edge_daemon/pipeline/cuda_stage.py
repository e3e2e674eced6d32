"""The CUDA pipeline stage: pinned frame ring -> async upload -> letterbox kernel -> engine -> async download.

Per batch, everything is queued on one CUDA stream and the inference thread does not wait::

    camera thread     decode straight into a pinned slot (OpenCV writes into it)  [slot ring, >= 3]
    inference thread  H2D(slot) -> letterbox kernel -> engine.enqueue -> D2H(output) -> event record
    publish thread    event.synchronize -> decode + NMS from pinned output -> publish -> release

so capture of frame N+2, upload and pre-processing of N+1 and inference of N overlap. Buffers are
allocated once: frame slots grow only if a camera's frames get larger (logged), device input and
output buffers are sized for the engine's max batch. On integrated GPUs (Jetson) frame slots are
mapped pinned memory that the kernel reads in place (zero-copy, no H2D). NV12 pictures (hardware
decode) are read in device memory where NVDEC left them, or copied from the host at 1.5 bytes a pixel,
and converted by the same kernel. (Slightly over 400 lines: the ring, the output slots and the stage
share one life cycle and one stream; split when the per-batch hot path lands.)
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_daemon.errors import EngineError
from edge_daemon.gpu import cuda
from edge_daemon.gpu.kernels import GpuLetterbox
from edge_daemon.model.preprocess import fit_meta
from edge_daemon.runtime import InferenceEngine, Outputs
from edge_daemon.types import Frame, LetterboxMeta, Nv12Picture

log = logging.getLogger(__name__)


class FrameSlot:
    """One pinned frame buffer (and its device copy unless mapped), owned by one frame at a time."""

    def __init__(self, index: int, mapped: bool) -> None:
        self.index = index
        self.mapped = mapped
        self.host: cuda.PinnedBuffer | None = None
        self.device: cuda.DeviceBuffer | None = None
        self.nbytes = 0
        self.allocations = 0

    def fit(self, nbytes: int) -> None:
        """Make room for ``nbytes``; allocates only when a frame is larger than any before in this slot."""
        if self.host is not None and nbytes <= self.host.nbytes:
            self.nbytes = nbytes
            return
        self.free()
        self.host = cuda.PinnedBuffer((nbytes,), np.uint8, mapped=self.mapped)
        if not self.mapped:
            self.device = cuda.DeviceBuffer(nbytes)
        self.nbytes = nbytes
        self.allocations += 1

    def write(self, image: npt.NDArray[np.uint8]) -> None:
        assert self.host is not None
        np.copyto(self.host.array[: image.nbytes].reshape(image.shape), image)

    @property
    def src_ptr(self) -> int:
        """Device address the kernel reads: the mapped host memory itself, or the uploaded copy."""
        if self.mapped:
            assert self.host is not None
            return self.host.device_ptr
        assert self.device is not None
        return self.device.ptr

    def free(self) -> None:
        for buf in (self.host, self.device):
            if buf is not None:
                buf.close()
        self.host = self.device = None


class FrameRing:
    """A fixed set of frame slots: camera threads acquire one per frame, the publish thread returns it."""

    def __init__(self, count: int, mapped: bool) -> None:
        if count < 3:
            raise ValueError("the frame ring needs at least 3 slots (capture, upload, inference overlap)")
        self.slots = [FrameSlot(i, mapped) for i in range(count)]
        self._free: deque[FrameSlot] = deque(self.slots)
        self._cond = threading.Condition()
        self._closed = False

    def acquire(self, timeout: float | None = None) -> FrameSlot | None:
        """A free slot; waits while all are in flight. None when closed (or on timeout)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._free or self._closed, timeout=timeout) or self._closed:
                return None
            return self._free.popleft()

    def release(self, slot: FrameSlot) -> None:
        with self._cond:
            if self._closed:
                slot.free()  # a slot still out at close is freed when it comes back
                return
            self._free.append(slot)
            self._cond.notify()

    def free_count(self) -> int:
        with self._cond:
            return len(self._free)

    def close(self) -> None:
        """Free the slots not in use; those in flight are freed on release."""
        with self._cond:
            self._closed = True
            for slot in self._free:
                slot.free()
            self._free.clear()
            self._cond.notify_all()


class _OutSlot:
    """Device outputs, their pinned host copies and the completion event of one batch in flight."""

    def __init__(self, shapes: tuple[tuple[int, ...], ...]) -> None:
        self.host: list[cuda.PinnedBuffer] = []
        self.device: list[cuda.DeviceBuffer] = []
        self.event: cuda.Event | None = None
        try:
            for shape in shapes:
                self.host.append(cuda.PinnedBuffer(shape, np.float32))
                self.device.append(cuda.DeviceBuffer(self.host[-1].nbytes))
            self.event = cuda.Event()
        except BaseException:
            self.close()
            raise
        self.ptrs = [d.ptr for d in self.device]

    def close(self) -> None:
        if self.event is not None:
            self.event.close()
        for dev in self.device:
            dev.close()
        for host in self.host:
            host.close()


@dataclass(frozen=True, slots=True)
class GpuItem:
    frame: Frame
    meta: LetterboxMeta
    slot: FrameSlot | None  # None: an NV12 picture already in device memory (hardware decode)
    nv12: Nv12Picture | None = None  # the picture the kernel converts; None: a BGR frame in the slot


@dataclass(frozen=True, slots=True)
class GpuBatch:
    items: list[GpuItem]
    out: _OutSlot
    started: float


class GpuStage:
    """Runs a device-capable engine (TensorRT, torch CUDA) on pinned frames and one stream."""

    name = "gpu"

    def __init__(
        self,
        engine: InferenceEngine,
        device_index: int = 0,
        frame_slots: int = 3,
        in_flight: int = 2,
        mapped: bool | None = None,
        kernel_cache: Path | None = None,
        fit: str = "letterbox",
    ) -> None:
        io = engine.device_io()
        if io is None:
            raise EngineError(f"the {engine.info.backend} engine does not run on device memory")
        if io.input_dtype not in ("float32", "float16"):
            raise EngineError(f"unsupported engine input type {io.input_dtype}")
        self.engine = engine
        self._device_index = device_index
        cuda.init_context(device_index)
        gpu = cuda.device_info(device_index)
        self.mapped = gpu.integrated if mapped is None else mapped
        self._half = io.input_dtype == "float16"
        h, w = engine.info.input_hw
        self._input_hw = (h, w)
        self._meta = fit_meta(fit)
        self._per_image = 3 * h * w * (2 if self._half else 4)
        self._per_output = [int(np.prod(shape[1:])) * 4 for shape in io.output_shapes]  # bytes per image
        self._thread_ready = threading.local()
        self._shapes: dict[str, tuple[int, int, int]] = {}  # last frame shape per camera (for claim)
        self.in_place = 0  # frames the camera decoded straight into a pinned slot
        self.copied = 0  # frames copied into a slot (each camera's first, or a source that cannot)
        self._closed = False
        self.slots_out_at_close = 0  # frame slots not returned when the stage closed (0 after a clean drain)
        self._parts: list[Any] = []
        try:
            self.kernel = GpuLetterbox.load(gpu.compute_capability, kernel_cache)
            self._parts.append(self.kernel)
            self.stream = cuda.Stream()
            self._parts.append(self.stream)
            self.input = cuda.DeviceBuffer(engine.info.max_batch * self._per_image)
            self._parts.append(self.input)
            self._outs = [_OutSlot(io.output_shapes) for _ in range(in_flight)]
            self._parts.extend(self._outs)
            self.ring = FrameRing(frame_slots, self.mapped)
            engine.prepare_device(self.input.ptr, [out.ptrs for out in self._outs], self.stream.handle)
        except BaseException:
            self._close_parts()
            raise
        self._free_outs: queue.Queue[_OutSlot] = queue.Queue()
        for out in self._outs:
            self._free_outs.put(out)
        log.info(
            "CUDA pipeline on %s (sm %s%s): %d pinned frame slots%s, %d batches in flight, input %s",
            gpu.name,
            gpu.compute_capability,
            ", integrated" if gpu.integrated else "",
            frame_slots,
            " (mapped, zero-copy)" if self.mapped else "",
            in_flight,
            io.input_dtype,
        )

    # camera threads -------------------------------------------------------------------------------

    def claim(self, camera: str) -> tuple[object, npt.NDArray[np.uint8]] | None:
        """A free slot for the camera to decode its next frame into (shaped like its last frame), so the
        frame lands in pinned memory with no copy of ours. None before the camera's first frame."""
        shape = self._shapes.get(camera)
        if shape is None:
            return None
        slot = self.ring.acquire()
        if slot is None:
            return None
        nbytes = shape[0] * shape[1] * shape[2]
        try:
            if slot.host is None or nbytes > slot.host.nbytes:
                self._in_thread()
                slot.fit(nbytes)
            assert slot.host is not None
            view = slot.host.array[:nbytes].reshape(shape)
        except BaseException:
            self.ring.release(slot)
            raise
        return slot, view

    def unclaim(self, token: object) -> None:
        if isinstance(token, FrameSlot):
            self.ring.release(token)
        else:  # a hardware decoder's device buffer (camera/nvdec.py)
            token.release()  # type: ignore[attr-defined]

    def prepare(self, frame: Frame) -> GpuItem | None:
        if frame.nv12 is not None and frame.image is None:
            return self._prepare_nv12(frame)
        image = frame.bgr()
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise EngineError(
                f"camera {frame.camera}: expected a BGR uint8 frame, got {image.dtype} {image.shape}"
            )
        shape = (int(image.shape[0]), int(image.shape[1]), 3)
        self._shapes[frame.camera] = shape
        if isinstance(frame.buffer, FrameSlot):  # decoded into this slot already
            lent = frame.buffer
            if self._closed:
                self.ring.release(lent)
                return None
            lent.nbytes = image.nbytes
            self.in_place += 1
            return GpuItem(frame, self._meta(shape[:2], self._input_hw), lent)
        slot = self.ring.acquire()
        if slot is None:
            return None
        try:
            if slot.host is None or image.nbytes > slot.host.nbytes:
                self._in_thread()
                slot.fit(image.nbytes)
                log.debug("frame slot %d sized for %s", slot.index, image.shape)
            else:
                slot.nbytes = image.nbytes
            slot.write(np.ascontiguousarray(image))
            self.copied += 1
        except BaseException:
            self.ring.release(slot)
            raise
        return GpuItem(frame, self._meta(image.shape[:2], self._input_hw), slot)

    def _prepare_nv12(self, frame: Frame) -> GpuItem | None:
        """An NV12 picture: in device memory it is read where it is; on the host (GStreamer's appsink) its
        1.5 bytes a pixel are copied into a pinned slot. Either way the kernel converts it."""
        pic = frame.nv12
        assert pic is not None
        meta = self._meta((pic.height, pic.width), self._input_hw)
        if pic.device is not None:
            if self._closed:
                pic.device.release()
                return None
            self.in_place += 1
            return GpuItem(frame, meta, None, pic)
        assert pic.host is not None
        slot = self.ring.acquire()
        if slot is None:
            return None
        try:
            if slot.host is None or pic.host.nbytes > slot.host.nbytes:
                self._in_thread()
                slot.fit(pic.host.nbytes)
            else:
                slot.nbytes = pic.host.nbytes
            slot.write(np.ascontiguousarray(pic.host))
            self.copied += 1
        except BaseException:
            self.ring.release(slot)
            raise
        return GpuItem(frame, meta, slot, pic)

    def _free_item(self, item: GpuItem) -> None:
        if item.slot is not None:
            self.ring.release(item.slot)
        elif item.nv12 is not None and item.nv12.device is not None:
            item.nv12.device.release()

    def discard(self, item: Any) -> None:
        self._free_item(item)

    # inference thread -----------------------------------------------------------------------------

    def submit(self, items: list[Any]) -> GpuBatch:
        self._in_thread()
        started = time.perf_counter()
        out = self._next_out()
        try:
            for i, item in enumerate(items):
                self._launch(item, self.input.ptr + i * self._per_image)
            self.engine.enqueue(self.input.ptr, out.ptrs, len(items), self.stream.handle)
            for host, dev, per in zip(out.host, out.device, self._per_output, strict=True):
                cuda.copy_dtoh_async(host, dev, self.stream, nbytes=len(items) * per)
            assert out.event is not None
            out.event.record(self.stream)
        except BaseException:
            self._free_outs.put(out)
            raise
        return GpuBatch(items, out, started)

    def _launch(self, item: GpuItem, dst: int) -> None:
        """Upload (unless mapped or already on the device) and pre-process one frame into ``dst``."""
        slot, pic, meta = item.slot, item.nv12, item.meta
        if slot is not None and not slot.mapped:
            assert slot.device is not None and slot.host is not None
            cuda.copy_htod_async(slot.device, slot.host, self.stream, nbytes=slot.nbytes)
        if pic is None:  # BGR in the slot
            assert slot is not None
            self.kernel.launch(slot.src_ptr, meta.src_w * 3, meta, dst, self.stream.raw, half=self._half)
            return
        if pic.device is not None:
            planes = pic.device
            y, y_pitch, uv, uv_pitch = planes.y_ptr, planes.y_pitch, planes.uv_ptr, planes.uv_pitch
        else:
            assert slot is not None
            y, y_pitch = slot.src_ptr, pic.width
            uv, uv_pitch = y + pic.width * pic.height, pic.width
        coefficients = pic.colour.coefficients()  # cached per colour
        self.kernel.launch_nv12(
            y, y_pitch, uv, uv_pitch, coefficients, meta, dst, self.stream.raw, half=self._half
        )

    def _next_out(self) -> _OutSlot:
        while True:
            try:
                return self._free_outs.get(timeout=0.5)
            except queue.Empty:
                if self._closed:
                    raise EngineError("the CUDA pipeline is closed") from None

    # publish thread -------------------------------------------------------------------------------

    def outputs(self, batch: Any) -> tuple[Outputs, float]:
        batch.out.event.synchronize()
        ms = (time.perf_counter() - batch.started) * 1000.0
        return tuple(host.array[: len(batch.items)] for host in batch.out.host), ms

    def release(self, batch: Any) -> None:
        """After publishing: the frames' slots (their images were views of them) and the output slot."""
        for item in batch.items:
            self._free_item(item)
        self._free_outs.put(batch.out)

    # ----------------------------------------------------------------------------------------------

    def _in_thread(self) -> None:
        """The CUDA runtime's current device is per thread: select ours once in each calling thread."""
        if not getattr(self._thread_ready, "done", False):
            cuda.init_context(self._device_index)
            self._thread_ready.done = True

    def close(self) -> None:
        """Wait for the stream, then free everything. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.slots_out_at_close = len(self.ring.slots) - self.ring.free_count()
        try:
            self.stream.synchronize()
        finally:
            self.ring.close()
            self._close_parts()

    def _close_parts(self) -> None:
        for part in reversed(self._parts):
            part.close()
        self._parts.clear()
