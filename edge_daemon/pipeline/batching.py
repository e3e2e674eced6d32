"""Which waiting frames go to the engine together: the frame captured first across every camera's queue,
plus, up to the engine's max batch, the frame waiting first at each other camera."""

from __future__ import annotations

import threading
from typing import Any

from edge_daemon.camera import DropQueue, QueueClosed


class Batcher:
    """``queues``: each camera's queue of prepared frames (the dict may still be filled after this is
    made); camera threads call :meth:`notify` after a put and :meth:`ended` when their camera ends."""

    def __init__(self, queues: dict[str, DropQueue[Any]], max_batch: int) -> None:
        self.queues = queues
        self.max_batch = max_batch
        self._cond = threading.Condition()
        self._ended: set[str] = set()

    def notify(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def ended(self, name: str) -> None:
        self.queues[name].close()
        with self._cond:
            self._ended.add(name)
            self._cond.notify_all()

    def next_batch(self) -> list[Any] | None:
        """The next frame (captured first across cameras) plus, up to the engine's max batch, the frame
        waiting first at each other camera; None once every camera ended and drained."""
        first = self._next_prepared()
        if first is None or self.max_batch == 1:
            return None if first is None else [first]
        batch = [first]
        for queue in self.queues.values():
            if len(batch) >= self.max_batch:
                break
            head = queue.peek()
            if head is None or head.frame.camera == first.frame.camera:
                continue
            try:
                item = queue.get(timeout=0)
            except QueueClosed:
                continue
            if item is not None:
                batch.append(item)
        return batch

    def _next_prepared(self) -> Any:
        """The waiting frame captured first across all cameras; None once every camera ended and drained."""
        while True:
            with self._cond:
                self._cond.wait_for(
                    lambda: any(len(q) for q in self.queues.values()) or len(self._ended) == len(self.queues),
                    timeout=0.5,
                )
            heads = [(q, q.peek()) for q in self.queues.values()]
            ready = [(q, head.frame.captured_mono) for q, head in heads if head is not None]
            if ready:
                queue = min(ready, key=lambda pair: pair[1])[0]
                try:
                    item = queue.get(timeout=0)
                except QueueClosed:
                    continue
                if item is not None:
                    return item
            elif len(self._ended) == len(self.queues):
                return None
