"""Snapshots drawn, encoded and stored on their own thread, not on the publish thread.

A snapshot costs milliseconds of CPU (scale, convert, draw, JPEG, write); several objects appearing in one
frame cost tens of milliseconds, and on the publish thread that held up every camera's frames behind
them: capture -> publish p99 went from 9 ms without snapshots to 70-180 ms with them, and frames were
dropped, at one and two 1080p cameras on the H100 (docs/benchmarks.md). Here the analyzer hands the
picture over and goes on; the event names the file the snapshot will have, and the finished JPEG is
published (retained) with the camera's next frame.

The queue is bounded: a newer snapshot of the same object replaces one still waiting, and when ``depth``
different snapshots wait the oldest is skipped (counted in ``skipped``): snapshots are the first thing an
overloaded device gives up, before frames.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_daemon.analytics.snapshots import SnapshotStore, render
from edge_daemon.threads import thread
from edge_daemon.types import Nv12Picture

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    camera: str
    name: str  # the file's name in the camera's folder, without .jpg
    topic: str  # the retained topic path the JPEG is published on
    picture: npt.NDArray[np.uint8] | Nv12Picture
    box: tuple[float, float, float, float]
    caption: str


class SnapshotDrawer:
    """One thread drawing ``store``'s snapshots at ``max_width`` and JPEG ``quality``."""

    def __init__(self, store: SnapshotStore, max_width: int, quality: int, depth: int = 64) -> None:
        self.store, self.max_width, self.quality, self.depth = store, max_width, quality, depth
        self.skipped = 0  # snapshots given up because ``depth`` others were waiting
        self.errors: dict[str, int] = {}  # per camera: pictures that could not be drawn or encoded
        self._jobs: OrderedDict[tuple[str, str], Job] = OrderedDict()
        self._done: dict[str, list[tuple[str, bytes]]] = {}
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, job: Job) -> str:
        """Queue ``job`` (never blocks); returns the file's path in the store, as events name it."""
        with self._cond:
            key = (job.camera, job.name)
            self._jobs.pop(key, None)  # a newer best frame of the same object replaces the waiting one
            self._jobs[key] = job
            if len(self._jobs) > self.depth:
                self._jobs.popitem(last=False)
                self.skipped += 1
            if self._thread is None and not self._closed:
                self._thread = thread(self._run, "snapshots")
                self._thread.start()
            self._cond.notify_all()
        return self.store.relative(job.camera, job.name)

    def take(self, camera: str) -> list[tuple[str, bytes]]:
        """The JPEGs finished for ``camera`` since the last call: (topic path, JPEG)."""
        with self._cond:
            return self._done.pop(camera, [])

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued snapshot is done (at the end of the stream); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._jobs and not self._busy, timeout=timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._busy = False
                self._cond.notify_all()
                self._cond.wait_for(lambda: self._jobs or self._closed, timeout=60.0)
                if not self._jobs:
                    if self._closed:
                        return
                    self.store.prune_if_due(time.time())  # the age bound, on a quiet camera too
                    continue
                _, job = self._jobs.popitem(last=False)
                self._busy = True
            try:
                jpeg = render(job.picture, job.box, job.caption, self.max_width, self.quality)
            except Exception as exc:  # counted and said; never the end of the thread (and of snapshots)
                with self._cond:
                    n = self.errors[job.camera] = self.errors.get(job.camera, 0) + 1
                if n in (1, 10) or n % 1000 == 0:
                    log.error("camera %s: cannot draw a snapshot (%r); %d so far", job.camera, exc, n)
                continue
            self.store.save(job.camera, job.name, jpeg)
            self.store.prune_if_due(time.time())
            with self._cond:
                self._done.setdefault(job.camera, []).append((job.topic, jpeg))
