"""How the pipeline judges its own health: which worker is inside an engine call and since when, and the
one-line status systemd shows (``systemctl status``)."""

from __future__ import annotations

import bisect
import contextlib
import statistics
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

# Latency samples kept for the statistics (the most recent ones): bounded, so a daemon that runs for
# months holds a fixed amount (about 0.7 MB per deque), not one float per frame it ever served.
LATENCY_SAMPLES = 20_000
SLOW_MS = 100.0  # a frame slower than this, capture to publish, is kept in ``slow`` with where it waited


# Latency histogram bounds in milliseconds (Prometheus ``le`` buckets; +Inf implied).
LATENCY_BUCKETS_MS = (1, 2.5, 5, 10, 25, 50, 75, 100, 150, 250, 500, 1000, 2500, 5000, 10000)


class Histogram:
    """Cumulative counts per bucket, a sum and a count: what Prometheus histograms expose, kept without a
    lock by the one thread that observes (the publish thread); readers see a consistent-enough copy."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_MS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one: above every bound (+Inf)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``[(le, count of observations <= le), …, ("+Inf", count)]``."""
        out, running = [], 0
        for bound, n in zip((*(f"{b:g}" for b in self.bounds), "+Inf"), list(self.counts), strict=True):
            running += n
            out.append((bound, running))
        return out


class Rate:
    """Frames per second over the last ``window`` frames, 0 once nothing arrived for ``stale_s``."""

    def __init__(self, window: int = 64, stale_s: float = 5.0) -> None:
        self._times: deque[float] = deque(maxlen=window)
        self._stale_s = stale_s

    def mark(self, now: float) -> None:
        self._times.append(now)

    def fps(self, now: float | None = None) -> float:
        times = list(self._times)
        if len(times) < 2 or (now or time.monotonic()) - times[-1] > self._stale_s:
            return 0.0
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)


@dataclass
class PipelineStats:
    """Counters and latency samples (milliseconds), readable while the pipeline runs."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    inferred: int = 0
    batches: int = 0
    published: int = 0
    detections: int = 0
    events: int = 0
    suppressed: int = 0  # inferred frames whose detections message was not sent (publish.detections)
    analytics_errors: int = 0  # frames on which analytics failed (published untracked)
    first_publish: float | None = None
    end_to_end_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    inference_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_SAMPLES))
    # Frames over SLOW_MS: (published at, monotonic s; capture -> publish ms; of which: until the inference
    # thread took it into a batch, then until its outputs were in the publish thread's hands (the engine,
    # and waiting for that thread), then publishing: decode, analytics, messages).
    slow: deque[tuple[float, float, float, float, float]] = field(default_factory=lambda: deque(maxlen=256))
    slow_count: int = 0  # frames ever put in ``slow``
    dropped: dict[str, int] = field(default_factory=dict)
    captured: dict[str, int] = field(default_factory=dict)
    rates: dict[str, Rate] = field(default_factory=dict)  # per camera: frames published per second
    inference_hist: Histogram = field(default_factory=Histogram)
    end_to_end_hist: Histogram = field(default_factory=Histogram)

    def mark(self, camera: str, now: float) -> None:
        """One frame of ``camera`` published (or held back by ``publish.detections``) at ``now``."""
        rate = self.rates.get(camera)
        if rate is None:
            rate = self.rates[camera] = Rate()
        rate.mark(now)

    def camera_fps(self, camera: str) -> float:
        rate = self.rates.get(camera)
        return rate.fps() if rate is not None else 0.0

    def fps(self) -> float:
        """Published frames per second, from the first publication to the last (or now)."""
        if self.first_publish is None or self.published < 2:
            return 0.0
        end = self.finished or time.monotonic()
        return (self.published - 1) / max(end - self.first_publish, 1e-9)


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


def camera_status(cameras: Sequence[tuple[str, bool, str | None]]) -> str:
    """``cameras 1/2 connected; cam1 down: <last error>`` from (name, connected, last error) per camera."""
    down = [(name, error) for name, connected, error in cameras if not connected]
    text = f"cameras {len(cameras) - len(down)}/{len(cameras)} connected"
    for name, error in down:
        text += f"; {name} down" + (f": {error}" if error else "")
    return text


def stats_line(stats: PipelineStats, dropped: int, where: str = "") -> str:
    """``running at 29.9 fps: 1200 frames published, end-to-end p50 12.0 ms, 0 dropped by policy``
    (``where``: `` in 8 workers``)."""
    e2e = list(stats.end_to_end_ms)[-1000:]
    p50 = statistics.median(e2e) if e2e else 0.0
    return (
        f"running at {stats.fps():.1f} fps{where}: {stats.published} frames published, "
        f"end-to-end p50 {p50:.1f} ms, {dropped} dropped by policy"
    )


def health_message(
    device_id: str,
    run: str,
    stats: Any,
    readers: Sequence[Any],
    queues: dict[str, Any],
    controls: Any = None,
) -> dict[str, Any]:
    """The retained ``health`` message: per camera connected, frames, reconnects, last error, drops, fps;
    with ``controls``, whether detection is on, the threshold and the frames skipped while it was off."""
    cameras = {
        r.name: {
            "connected": r.stats.connected,
            "frames": r.stats.frames,
            "reconnects": r.stats.reconnects,
            "errors": r.stats.errors,
            "last_error": r.stats.last_error,
            "dropped_by_policy": queues[r.name].dropped,
            "fps": round(stats.camera_fps(r.name), 2),
        }
        for r in readers
    }
    if controls is not None:
        for name, cam in cameras.items():
            control = controls.cameras[name]
            cam.update(detect=control.detect, threshold=control.threshold, detect_off_skipped=control.skipped)
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
    drawer = next((a.drawer for a in analyzers.values() if a.drawer is not None), None)
    if drawer is not None:
        health["snapshots"] = {
            "written": drawer.store.written,
            "dropped": drawer.store.dropped,
            "write_errors": drawer.store.write_errors,
            "skipped": drawer.skipped,  # not drawn: too many were waiting (an overloaded device)
            "bytes": drawer.store.size,
        }
    return health
