"""How the pipeline judges its own health: which worker is inside an engine call and since when, and the
one-line status systemd shows (``systemctl status``)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any


class BusyClock:
    """When each worker thread entered the engine call it is waiting on (submit, or waiting for a batch's
    outputs); a call that lasts longer than a bound means inference is hung."""

    def __init__(self) -> None:
        self._since: dict[str, float] = {}

    @contextlib.contextmanager
    def inside(self, worker: str) -> Iterator[None]:
        self._since[worker] = time.monotonic()
        try:
            yield
        finally:
            self._since.pop(worker, None)

    def stuck(self, bound_s: float) -> tuple[str, float] | None:
        """(worker, seconds) of the longest call over ``bound_s``, or None."""
        now = time.monotonic()
        calls = sorted(((now - t, w) for w, t in list(self._since.items())), reverse=True)
        if calls and calls[0][0] > bound_s:
            return calls[0][1], calls[0][0]
        return None


def camera_status(readers: Sequence[Any]) -> str:
    """``cameras 1/2 connected; cam1 down: <last error>`` from the camera readers' stats."""
    down = [r for r in readers if not r.stats.connected]
    text = f"cameras {len(readers) - len(down)}/{len(readers)} connected"
    for r in down:
        text += f"; {r.name} down" + (f": {r.stats.last_error}" if r.stats.last_error else "")
    return text


def health_message(
    device_id: str, run: str, stats: Any, readers: Sequence[Any], queues: dict[str, Any]
) -> dict[str, Any]:
    """The retained ``health`` message: per camera connected, frames, reconnects, last error, drops."""
    cameras = {
        r.name: {
            "connected": r.stats.connected,
            "frames": r.stats.frames,
            "reconnects": r.stats.reconnects,
            "errors": r.stats.errors,
            "last_error": r.stats.last_error,
            "dropped_by_policy": queues[r.name].dropped,
        }
        for r in readers
    }
    return {
        "device_id": device_id,
        "run": run,
        "time": time.time(),
        "fps": round(stats.fps(), 2),
        "published": stats.published,
        "cameras": cameras,
    }


def analytics_health(
    health: dict[str, Any], gates: dict[str, Any], analyzers: dict[str, Any]
) -> dict[str, Any]:
    """Adds to ``health``: per camera frames skipped by motion gating, objects tracked now, events sent and
    detections messages held back (``publish.detections``); the snapshot store's counters."""
    for name, cam in health["cameras"].items():
        gate, analyzer = gates.get(name), analyzers.get(name)
        if gate is not None:
            cam["motion_skipped"] = gate.skipped
        if analyzer is not None:
            cam["tracked"] = len(analyzer.scene.objects) if analyzer.scene is not None else 0
            cam["events"] = analyzer.events
            cam["detections_suppressed"] = analyzer.filter.suppressed
            cam["snapshot_errors"] = analyzer.errors
    store = next((a.store for a in analyzers.values() if a.store is not None), None)
    if store is not None:
        health["snapshots"] = {
            "written": store.written,
            "dropped": store.dropped,
            "write_errors": store.write_errors,
            "bytes": store.size,
        }
    return health
