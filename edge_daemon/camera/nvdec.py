"""Hardware decode on NVIDIA GPUs: files and RTSP through NVDEC (PyNvVideoCodec) into device memory.

PyNvVideoCodec's demuxer (FFmpeg's) reads the container or the RTSP session, NVDEC decodes, and each
frame arrives as NV12 in device memory. It is copied (device to device, 1.5 bytes a pixel) into a buffer of
this source's small pool, so the decoder can reuse its own surface at once, and handed on as an
:class:`~edge_daemon.types.Nv12Picture`: the CUDA stage's kernel converts and letterboxes it where it is;
the frame never visits host memory (snapshots and the live view download it when they need it).

The pool bounds the frames in flight per camera: when every buffer is out (queued, in a batch, being
published) the camera waits, as with the stage's pinned slots. A buffer comes back when its frame is
published or dropped.

A codec or GPU NVDEC cannot decode, or no PyNvVideoCodec, falls back to the CPU source this one wraps
(OpenCV's FFmpeg): said once in the log, and in :attr:`NvdecSource.decoder` (the daemon's ``info``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_daemon.camera.base import FrameSource
from edge_daemon.camera.pacing import Pacer
from edge_daemon.colour import DEFAULT, from_names
from edge_daemon.errors import CameraError
from edge_daemon.types import Nv12Picture

log = logging.getLogger(__name__)


class DeviceNv12:
    """One pooled device buffer holding an NV12 picture (contiguous planes, pitch = width)."""

    def __init__(self, pool: NvdecPool, width: int, height: int) -> None:
        from edge_daemon.gpu import cuda

        self.pool = pool
        self.width, self.height = width, height
        self.buffer = cuda.DeviceBuffer(width * height * 3 // 2)
        self.y_ptr = self.buffer.ptr
        self.y_pitch = self.uv_pitch = width
        self.uv_ptr = self.buffer.ptr + width * height

    def download(self) -> npt.NDArray[np.uint8]:
        from edge_daemon.gpu import cuda

        out = np.empty((self.height * 3 // 2, self.width), np.uint8)
        with self.pool.stream("download") as stream:
            return cuda.download(self.y_ptr, out, stream)

    def release(self) -> None:
        self.pool.release(self)


class NvdecPool:
    """A fixed number of device NV12 buffers of one size on GPU ``gpu``; ``acquire`` waits while all are
    out. Buffers live as long as the source (a reconnect keeps them)."""

    def __init__(self, count: int, gpu: int = 0) -> None:
        self.count = count
        self.gpu = gpu
        self._free: deque[DeviceNv12] = deque()
        self._all: list[DeviceNv12] = []
        self._cond = threading.Condition()
        self._size: tuple[int, int] | None = None
        self._streams: dict[str, tuple[threading.Lock, list[Any]]] = {
            role: (threading.Lock(), []) for role in ("copy", "download")
        }

    @contextlib.contextmanager
    def stream(self, role: str = "copy") -> Iterator[Any]:
        """One of the pool's own non-blocking CUDA streams (made on first use), held by one thread at a
        time: ``copy``, the camera thread's copies out of the decoder; ``download``, snapshot copies brought
        to the host from the publish thread, on a stream of their own so that a 3 MB download never holds
        up the camera's next frame (the buffer was filled and synchronised before its frame went on)."""
        from edge_daemon.gpu import cuda

        lock, made = self._streams[role]
        with lock:
            cuda.init_context(self.gpu)  # the calling thread's current device
            if not made:
                made.append(cuda.Stream())
            yield made[0]

    def acquire(self, width: int, height: int, timeout: float) -> DeviceNv12 | None:
        with self._cond:
            if self._size != (width, height):  # first frame, or the stream changed size
                self._retire()
                self._size = (width, height)
            if len(self._all) < self.count and not self._free:
                buf = DeviceNv12(self, width, height)
                self._all.append(buf)
                return buf
            if not self._cond.wait_for(lambda: self._free, timeout=timeout):
                return None
            return self._free.popleft()

    def release(self, buf: DeviceNv12) -> None:
        with self._cond:
            if buf in self._all:
                self._free.append(buf)
                self._cond.notify()
            else:
                buf.buffer.close()

    def _retire(self) -> None:
        """Free the buffers of the old size; those still out are freed when they come back."""
        for buf in self._free:
            buf.buffer.close()
        self._free.clear()
        self._all = []


class NvdecSource(FrameSource):
    """Decode ``target`` (a file or an RTSP URL) with NVDEC; fall back to ``fallback`` (a CPU source)."""

    def __init__(
        self,
        target: str,
        description: str,
        fallback: FrameSource,
        gpu: int = 0,
        pool: int = 8,
        finite: bool = False,
        loop: bool = False,
        realtime: bool = False,
        required: bool = False,
    ) -> None:
        self.target = target
        self.description = f"{description} (NVDEC)"
        self.fallback = fallback
        self.gpu = gpu
        self.file = finite
        self.finite = finite and not loop
        self.loop = loop
        self.realtime = realtime
        self.required = required  # decode: nvdec (no fallback) rather than auto
        self.pool = NvdecPool(pool, gpu)
        self.decoder = "nvdec"  # or "cpu (<why>)" once fallen back
        self._demux: Any = None
        self._dec: Any = None
        self._pending: deque[Any] = deque()
        self._colour = DEFAULT
        self.pacer = Pacer()

    @property
    def _fallen_back(self) -> bool:
        return self.decoder != "nvdec"

    # FrameSource ----------------------------------------------------------------------------------

    def open(self) -> None:
        if self._fallen_back:
            self.fallback.open()
            self.media_fps = self.fallback.media_fps
            return
        try:
            self._open_nvdec()
        except CameraError:
            raise
        except Exception as exc:  # no PyNvVideoCodec, no NVDEC, an unsupported codec
            if self.required:
                raise CameraError(f"cannot decode {self.description} with NVDEC: {exc}") from exc
            self.decoder = f"cpu ({exc})"
            self.description = self.fallback.description
            log.warning("%s: NVDEC unavailable (%s); decoding on the CPU", self.fallback.description, exc)
            self.fallback.open()
            self.media_fps = self.fallback.media_fps

    def _open_nvdec(self) -> None:
        import PyNvVideoCodec as nvc

        self.close()
        try:
            demux = nvc.CreateDemuxer(self.target)
        except Exception as exc:
            raise CameraError(f"cannot open {self.description}: {exc}") from exc
        self._dec = nvc.CreateDecoder(
            gpuid=self.gpu,
            codec=demux.GetNvCodecId(),
            usedevicememory=True,
            latency=nvc.DisplayDecodeLatencyType.LOW,  # no B-frames from cameras: a frame per packet
        )
        self._demux = demux
        # PyNvVideoCodec's own enums (ColorSpace.BT_709, ColorRange.UDEF...), read by name.
        self._colour = from_names(
            str(_call(demux, "ColorSpace", raw=True)),
            str(_call(demux, "ColorRange", raw=True)),
            int(_call(demux, "Height") or 0) or None,
        )
        fps = float(_call(demux, "FrameRate") or 0)
        self.pacer.start(fps if self.realtime else None)
        self.media_fps = fps if self.file and not self.realtime and 0 < fps < 1000 else None

    def read(self) -> npt.NDArray[np.uint8] | Nv12Picture | None:
        if self._fallen_back:
            return self.fallback.read()
        if self._dec is None:
            raise CameraError(f"{self.description} is not open")
        frame = self._next_decoded()
        if frame is None:
            return None
        width, height = int(self._dec.GetWidth()), int(self._dec.GetHeight())
        buf = self.pool.acquire(width, height, timeout=30.0)
        if buf is None:
            raise CameraError(f"{self.description}: no frame buffer came back for 30 s")
        from edge_daemon.gpu import cuda

        try:
            with self.pool.stream() as stream:
                cuda.copy_dtod(buf.y_ptr, int(frame.GetPtrToPlane(0)), width * height * 3 // 2, stream)
        except BaseException:
            buf.release()
            raise
        self.pacer.wait()
        return Nv12Picture(width, height, self._colour, device=buf)

    def probe(self) -> None:
        """Open once now, so a GPU or codec NVDEC cannot handle falls back before the daemon says what it
        runs (``info``); a stream that is down is left to the camera's reconnects."""
        try:
            self.open()
        except CameraError:
            pass
        finally:
            self.close()

    def read_into(self, out: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8] | Nv12Picture | None:
        return self.fallback.read_into(out) if self._fallen_back else self.read()

    def _next_decoded(self) -> Any:
        while not self._pending:
            packet = self._demux.Demux()
            if packet is None or getattr(packet, "bsl", 1) == 0:  # end of stream
                if self.loop:
                    # A looped file starts again at its first keyframe with the same decoder: a new
                    # decoder initialises NVDEC on its first packets, holding every other thread of the
                    # daemon up for tens to hundreds of milliseconds (measured on the H100). LOW latency
                    # (no reordering) leaves nothing to flush.
                    import PyNvVideoCodec as nvc

                    self._demux = nvc.CreateDemuxer(self.target)
                    continue
                self._pending.extend(self._dec.Decode(packet) if packet is not None else [])  # flush
                if self._pending:
                    break
                if self.finite:
                    return None
                raise CameraError(f"no frame from {self.description} (stream ended)")
            self._pending.extend(self._dec.Decode(packet))
        return self._pending.popleft()

    def close(self) -> None:
        if self._fallen_back:
            self.fallback.close()
        self._pending.clear()
        self._dec = None
        self._demux = None


def _call(obj: Any, name: str, raw: bool = False) -> Any:
    """``obj.name()`` as a number (or, with ``raw``, as it came), None if the object cannot tell."""
    fn = getattr(obj, name, None)
    try:
        value = fn() if callable(fn) else None
        if raw or value is None:
            return value
        return float(getattr(value, "value", value))
    except Exception:  # a demuxer that cannot tell
        return None
