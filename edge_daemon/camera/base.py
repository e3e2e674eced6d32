"""The camera interface, the frame queue with its named drop policy, and the reader thread.

A :class:`FrameSource` is one opened device: ``open()``, ``read()`` frames, ``close()``. The
:class:`CameraReader` thread owns a source: it opens it, reads frames, numbers them, hands them to a sink,
and on failure closes, waits (capped exponential backoff) and opens again, until stopped or the source
reports its natural end.
"""

from __future__ import annotations

import enum
import logging
import random
import threading
import time
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from edge_daemon.errors import CameraError
from edge_daemon.threads import thread
from edge_daemon.types import Frame, Nv12Picture

log = logging.getLogger(__name__)

T = TypeVar("T")


class FrameSource(ABC):
    """One camera device or stream.

    ``read()`` returns a BGR uint8 (H, W, 3) image, ``None`` at the natural end of a finite source (a file
    that does not loop), and raises CameraError when the device fails or a read times out.
    """

    #: Label used in logs; must never contain credentials.
    description: str = "camera"
    #: True when reaching the end is normal (files); False for live sources, where it means a drop-out.
    finite: bool = False
    #: Frames per second of a file read faster (or slower) than real time, once open; None otherwise. The
    #: analytics clock is then the file's own timeline (frame number / media_fps), not the wall clock.
    media_fps: float | None = None
    #: How frames are decoded, for ``info``: "cpu", "nvdec", or "cpu (<why NVDEC is not used>)".
    decoder: str = "cpu"

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self) -> npt.NDArray[np.uint8] | Nv12Picture | None:
        """A BGR frame, or an NV12 picture (hardware decoders), or None at the end of a finite source."""

    @abstractmethod
    def close(self) -> None: ...

    def read_into(self, out: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8] | Nv12Picture | None:
        """Like :meth:`read`, decoding into ``out`` when the source can (same shape and type): the
        returned array is then ``out`` itself. Sources that cannot return a new array, as ``read`` does."""
        return self.read()


def as_bgr(image: npt.NDArray[np.uint8] | Nv12Picture | None) -> npt.NDArray[np.uint8] | None:
    """What a source read, as BGR (an NV12 picture converted): for the few readers outside the pipeline."""
    return image.to_bgr() if isinstance(image, Nv12Picture) else image


class DropPolicy(enum.Enum):
    """What a full queue does with a new item.

    LATEST: drop the oldest waiting item so the newest one always gets in (live cameras: latency never
    builds up). BLOCK: the producer waits for room (files and benchmarks: nothing is skipped).
    """

    LATEST = "latest"
    BLOCK = "block"


class QueueClosed(Exception):
    """Raised by :meth:`DropQueue.get` once the queue is closed and empty."""


class DropQueue(Generic[T]):
    """A small bounded FIFO with a named drop policy. Thread-safe; ``dropped`` counts discarded items."""

    def __init__(self, maxsize: int, policy: DropPolicy, on_drop: Callable[[T], None] | None = None) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.policy = policy
        self.dropped = 0
        self._on_drop = on_drop  # gets each discarded item (outside the lock), e.g. to free its buffer
        self._items: deque[T] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def put(self, item: T, timeout: float | None = None) -> bool:
        """Add ``item``. Returns False only if BLOCK timed out or the queue is closed (the caller still
        owns ``item`` then)."""
        dropped: T | None = None
        with self._cond:
            if self._closed:
                return False
            if len(self._items) >= self.maxsize:
                if self.policy is DropPolicy.LATEST:
                    dropped = self._items.popleft()
                    self.dropped += 1
                elif (
                    not self._cond.wait_for(
                        lambda: len(self._items) < self.maxsize or self._closed, timeout=timeout
                    )
                    or self._closed
                ):
                    return False
            self._items.append(item)
            self._cond.notify_all()
        if dropped is not None and self._on_drop is not None:
            self._on_drop(dropped)
        return True

    def drain(self) -> list[T]:
        """Remove and return whatever is waiting (at shutdown, to release it)."""
        with self._cond:
            items = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return items

    def get(self, timeout: float | None = None) -> T | None:
        """Next item, or None on timeout. Raises QueueClosed once closed and drained."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._items or self._closed, timeout=timeout):
                return None
            if self._items:
                item = self._items.popleft()
                self._cond.notify_all()
                return item
            raise QueueClosed

    def peek(self) -> T | None:
        """The item ``get`` would return next, without removing it; None when empty."""
        with self._cond:
            return self._items[0] if self._items else None

    def close(self) -> None:
        """No more puts; waiting getters drain what is left and then see QueueClosed."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)


@dataclass
class Backoff:
    """Capped exponential backoff: initial, 2x, 4x, ... up to ``maximum`` seconds; ``reset()`` on success.

    ``jitter``: each delay is scaled by a random factor in [1 - jitter, 1 + jitter], so that many cameras
    (or devices) that lost the same server do not all knock again at the same instant.
    """

    initial: float
    maximum: float
    jitter: float = 0.0
    _next: float = 0.0

    def __post_init__(self) -> None:
        self._next = self.initial

    def next_delay(self) -> float:
        delay = self._next
        self._next = min(self._next * 2, self.maximum)
        if self.jitter:
            delay *= random.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        return delay

    def reset(self) -> None:
        self._next = self.initial


@dataclass
class CameraStats:
    frames: int = 0
    reconnects: int = 0
    errors: int = 0
    connected: bool = False
    last_error: str = ""


class FrameBuffers(Protocol):
    """Where a reader may decode frames in place (the CUDA stage's pinned slots)."""

    def claim(self, camera: str) -> tuple[object, npt.NDArray[np.uint8]] | None:
        """A free buffer shaped like this camera's last frame: (token, array), or None (no shape known
        yet, or closing). Blocks while every buffer is in use."""
        ...

    def unclaim(self, token: object) -> None:
        """Give back a claimed buffer that did not end up holding a frame."""
        ...


class CameraReader:
    """Thread that reads one :class:`FrameSource` and hands numbered :class:`Frame` objects to ``sink``.

    ``sink`` runs on this thread; it must not block for long unless the drop policy is BLOCK.
    The reader stops on :meth:`stop`, after ``max_frames`` frames, or at the end of a finite source.
    ``on_end`` is called once from the thread when it finishes, whatever the reason.
    """

    def __init__(
        self,
        name: str,
        source: FrameSource,
        sink: Callable[[Frame], object],
        backoff: Backoff,
        max_frames: int | None = None,
        on_end: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.time,
        buffers: FrameBuffers | None = None,
    ) -> None:
        self.name = name
        self.source = source
        self.stats = CameraStats()
        self._sink = sink
        self._backoff = backoff
        self._max_frames = max_frames
        self._on_end = on_end
        self._clock = clock
        self._buffers = buffers
        self._stop = threading.Event()
        self._thread = thread(self._run, f"camera-{name}")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug in a sink must not vanish silently with the thread
            log.exception("camera %s: reader crashed", self.name)
        finally:
            self.source.close()
            self.stats.connected = False
            if self._on_end is not None:
                self._on_end()

    def _loop(self) -> None:
        seq = 0
        while not self._stop.is_set():
            if not self.stats.connected:
                try:
                    self.source.open()
                except CameraError as exc:
                    self._failed(exc)
                    continue
                self.stats.connected = True
                log.info("camera %s: opened %s", self.name, self.source.description)
            claimed = self._buffers.claim(self.name) if self._buffers is not None else None
            try:
                image = self.source.read_into(claimed[1]) if claimed is not None else self.source.read()
            except BaseException as exc:
                if claimed is not None and self._buffers is not None:
                    self._buffers.unclaim(claimed[0])
                if not isinstance(exc, CameraError):
                    raise
                self.source.close()
                self.stats.connected = False
                self._failed(exc)
                continue
            token: object | None = None
            if claimed is not None and self._buffers is not None:
                if image is not None and image is claimed[1]:
                    token = claimed[0]  # decoded in place: no copy downstream
                else:
                    self._buffers.unclaim(claimed[0])
            if image is None:
                if self.source.finite:
                    log.info("camera %s: end of %s after %d frames", self.name, self.source.description, seq)
                    return
                self.source.close()
                self.stats.connected = False
                self._failed(CameraError("stream ended"))
                continue
            self._backoff.reset()
            if isinstance(image, Nv12Picture):  # hardware decode: the picture stays where it was decoded
                frame = Frame(self.name, seq, None, self._clock(), time.monotonic(), image.device, nv12=image)
            else:
                frame = Frame(self.name, seq, image, self._clock(), time.monotonic(), buffer=token)
            self._sink(frame)
            seq += 1
            self.stats.frames = seq
            if self._max_frames is not None and seq >= self._max_frames:
                return

    def _failed(self, exc: CameraError) -> None:
        self.stats.errors += 1
        self.stats.last_error = str(exc)
        delay = self._backoff.next_delay()
        log.warning("camera %s: %s; retrying in %.1fs", self.name, exc, delay)
        self.stats.reconnects += 1
        self._stop.wait(delay)
