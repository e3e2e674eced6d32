"""Camera groups in worker processes (``service.workers`` > 1), so that one interpreter lock is not the limit.

In one process every camera's Python work (reading frames, launching kernels, decoding the head, tracking,
building payloads) takes turns on one interpreter lock: on the lent H100 one process flattened at about
370 FPS while using under 2 of 16 cores (docs/benchmarks.md, "Streams per GPU"). With workers the cameras
are dealt round-robin into groups, and each group runs the whole pipeline (decode, pre-process, its own
copy of the engine on the same device, post-process, analytics, payload encoding) in its own process,
started with ``spawn`` (CUDA does not survive a fork). This process keeps what there is one of per device:
the MQTT connection (outbox, status, info, health, the control topics, discovery), the HTTP server and
systemd's watchdog. :class:`WorkerGroup` answers the daemon, the web server and the bench the way a
:class:`~edge_daemon.pipeline.runner.Pipeline` does.

One duplex pipe per worker carries pickled tuples. Worker to here: ``("model", about)`` once its engine is
loaded and its pipeline built; ``("send", method, args)``, a publisher call (one batch's detections, its
events, a retained state); ``("report", report)`` every half second (its health, counters, the latency
samples and slow frames since the last report, its CPU seconds, whether it is stuck in the engine);
``("end", error, report)`` last. Here to a worker: ``("go",)`` once MQTT is set up, ``("control",
camera, detect, threshold)``, ``("stop",)``. A worker whose pipe closes (this process died) stops by
itself.

One room at about 400 lines: starting the children, relaying their messages and stopping them share
one lifecycle and one set of pipes (the engine process's own side is :mod:`.engine_server`).

The first worker loads alone (a first boot builds the engine and fills the caches once), the others then
together from the caches. A worker that fails or dies stops the daemon with its error (systemd restarts
it). Costs: a CUDA context and an engine per worker in GPU memory, and each engine batches only its own
cameras' frames.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from edge_daemon.app.engine_server import serve
from edge_daemon.app.relay import COUNTERS, worker_main
from edge_daemon.config import Settings
from edge_daemon.controls import Controls
from edge_daemon.errors import EngineError
from edge_daemon.pipeline.health import PipelineStats, camera_status, stats_line
from edge_daemon.pipeline.supervise import supervise
from edge_daemon.publish.payload import new_run_id
from edge_daemon.threads import cpu_by_thread, thread

log = logging.getLogger(__name__)

SUMMED = ("fps", "published", "analytics_errors")  # health fields added up over the workers


def groups(cameras: list[Any], workers: int) -> list[list[Any]]:
    """Cameras dealt round-robin into ``min(workers, cameras)`` groups."""
    n = max(1, min(workers, len(cameras)))
    return [cameras[i::n] for i in range(n)]


@dataclass
class _Worker:
    index: int
    cameras: list[str]
    process: BaseProcess
    conn: Connection
    about: dict[str, Any] | None = None
    report: dict[str, Any] = field(default_factory=dict)
    ended: bool = False
    error: BaseException | None = None
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    # This process's copies of the pipe ends the child got: closed once it has started, so that the
    # child's death is an end of file for whoever holds the other end (not for a copy kept here).
    handed: list[Connection] = field(default_factory=list)

    @property
    def label(self) -> str:
        return "the engine process" if self.index < 0 else f"worker {self.index}"

    def send(self, *message: Any) -> None:
        # A worker that has gone cannot be told anything: its end (or its death) is seen by the relay.
        with self.send_lock, contextlib.suppress(OSError, ValueError):
            self.conn.send(message)


class WorkerGroup:
    """``settings``' cameras in worker processes. :meth:`load`, then :meth:`attach` the publisher, then
    :meth:`run` until stopped."""

    def __init__(self, settings: Settings, run_id: str | None = None, log_level: str | None = None) -> None:
        self.settings = settings
        self.run_id = run_id or new_run_id()
        self.stats = PipelineStats()
        self.error: BaseException | None = None
        self.abandoned: list[str] = []
        self.publisher: Any = None
        self.controls = Controls([c.name for c in settings.cameras], settings.detect.conf)
        self._level = log_level or logging.getLevelName(logging.getLogger().getEffectiveLevel())
        self._workers: list[_Worker] = []
        self._engine: _Worker | None = None  # the engine process (service.shared_engine)
        self._lock = threading.Lock()
        self._failed = threading.Event()
        self._relay = thread(self._relay_loop, "relay")

    # ------------------------------------------------------------------------------------ start and stop

    def load(self, stop: threading.Event) -> dict[str, Any]:
        """Start the workers; return once every one has loaded its engine: the first worker's ``about``
        (``names``, ``tag``, ``fallback``, ``info``). Raises a worker's error, or if ``stop`` is set."""
        ctx = mp.get_context("spawn")
        dealt = groups(list(self.settings.cameras), self.settings.service.workers)
        engines: list[Any] = [None] * len(dealt)
        if self.settings.service.shared_engine and len(dealt) > 1:
            pipes = [ctx.Pipe() for _ in dealt]  # (engine process's end, worker's end)
            engines = [there for _, there in pipes]
            here, there = ctx.Pipe()
            ends = [end for end, _ in pipes]
            serving = (self.settings, there, ends, self._level)
            process = ctx.Process(target=serve, args=serving, name="edge-engine")
            self._engine = _Worker(-1, [], process, here, handed=[there, *ends])
        for i, cams in enumerate(dealt):
            here, there = ctx.Pipe()
            cfg = self.settings.model_copy(update={"cameras": cams})
            args = (cfg, i, there, self.run_id, self._level, engines[i])
            process = ctx.Process(target=worker_main, args=args, name=f"edge-worker-{i}")
            handed = [there] + ([engines[i]] if engines[i] is not None else [])
            self._workers.append(_Worker(i, [c.name for c in cams], process, here, handed=handed))
        try:
            if self._engine is not None:  # loads (a first boot builds) once; the workers attach to it
                self._start([self._engine], stop)
                self._start(self._workers, stop)
            else:
                self._start([self._workers[0]], stop)  # alone: a first boot builds (and caches) once
                self._start(self._workers[1:], stop)
        except BaseException:
            self.shutdown(5.0)
            raise
        log.info("%d workers running %d cameras", len(self._workers), len(self.settings.cameras))
        return self._workers[0].about or {}

    def _start(self, workers: list[_Worker], stop: threading.Event) -> None:
        for w in workers:
            w.process.start()  # (spawn: the pipe ends have gone to the child by now)
            for end in w.handed:
                end.close()
            w.handed.clear()
        for w in workers:
            while w.about is None:
                if stop.is_set():
                    raise EngineError("stopped while the workers were loading")
                if w.conn.poll(0.2):
                    message = w.conn.recv()
                    if message[0] == "model":
                        w.about = message[1]
                    elif message[0] == "end":
                        w.ended = True
                        raise message[1] or EngineError(f"{w.label} ended while loading")
                elif not w.process.is_alive():
                    w.ended = True
                    raise EngineError(f"{w.label} exited while loading (code {w.process.exitcode})")

    def attach(self, publisher: Any) -> None:
        """The publisher every worker's messages go through (this process's MQTT connection)."""
        self.publisher = publisher
        publisher.info = self.info()
        self.controls.on_change(self._forward_control)

    def info(self) -> dict[str, Any]:
        first = (self._workers[0].about or {}).get("info", {}) if self._workers else {}
        decode: dict[str, str] = {}
        for w in self._workers:
            decode.update(((w.about or {}).get("info") or {}).get("decode", {}))
        cameras = [c.name for c in self.settings.cameras]
        shared = self._engine is not None
        return {
            **first,
            "cameras": cameras,
            "decode": decode,
            "workers": len(self._workers),
            "shared_engine": shared,
        }

    def run(self, stop: threading.Event, drain_timeout_s: float = 10.0) -> PipelineStats:
        """Like :meth:`Pipeline.run`: until ``stop`` is set, a worker fails, or every camera ended."""
        self.publisher.start()
        self._relay.start()
        for w in self._workers:
            w.send("go")
        supervise(self, stop, self.settings.log.stats_interval_s)
        self.shutdown(drain_timeout_s)
        return self.stats

    def shutdown(self, drain_timeout_s: float) -> None:
        """Every worker drains (its frames in flight are published), ends and exits; then this process
        publishes the final health and closes the publisher."""
        deadline = time.monotonic() + drain_timeout_s + 10.0  # + closing an engine and a CUDA context
        for w in self._workers:
            if not w.ended:
                w.send("stop")
        for w in self._workers:
            if w.process.pid is None:
                continue
            if not self._relay.is_alive():  # loading failed: nothing relays, read the ends here
                self._drain_pipe(w, deadline)
            w.process.join(max(0.1, deadline - time.monotonic()))
            if w.process.is_alive():
                self.abandoned.append(f"worker {w.index}")
                log.warning("worker %d did not stop in time: killing it", w.index)
                w.process.kill()
                w.process.join(5.0)
        if self._engine is not None:
            self._stop_engine(deadline)
        if self._relay.is_alive():
            self._relay.join(max(0.1, deadline - time.monotonic()))
        self.stats.finished = time.monotonic()
        errors = [w.error for w in self._workers if w.error is not None]
        if self.error is None and errors:
            self.error = errors[0]
        for name, cam in self._cameras().items():
            self.stats.dropped[name] = cam.get("dropped_by_policy", 0)
            self.stats.captured[name] = cam.get("frames", 0)
        if self.publisher is not None:
            try:
                self.publisher.publish_health(self.health())
            except Exception:
                log.exception("cannot publish the final health message")
            self.publisher.close(timeout=max(1.0, deadline - time.monotonic()))
            self.log_stats()

    def _stop_engine(self, deadline: float) -> None:
        """The engine process ends once every worker has gone; its end says whether it failed."""
        e = self._engine
        assert e is not None
        if e.process.pid is None:
            return
        if not self._relay.is_alive():  # otherwise the relay reads its end (and only the relay)
            self._drain_pipe(e, deadline)
        e.process.join(max(0.1, deadline - time.monotonic()))
        if e.process.is_alive():
            self.abandoned.append("engine process")
            log.warning("the engine process did not stop in time: killing it")
            e.process.kill()
            e.process.join(5.0)
        if e.error is not None and self.error is None:
            self.error = e.error

    def _drain_pipe(self, w: _Worker, deadline: float) -> None:
        while not w.ended and time.monotonic() < deadline:
            try:
                if w.conn.poll(0.2):
                    self._handle(w, w.conn.recv())
                elif not w.process.is_alive():
                    return
            except (EOFError, OSError):
                return

    # ------------------------------------------------------------------------------------- the relay

    def _relay_loop(self) -> None:
        conns = {w.conn: w for w in self._processes() if not w.ended}
        while conns:
            for conn in wait(list(conns), timeout=1.0):
                w = conns[conn]  # type: ignore[index]
                try:
                    message = w.conn.recv()
                except (EOFError, OSError):
                    w.process.join(2.0)
                    if not w.ended:
                        w.ended = True
                        who = f"worker {w.index} ({', '.join(w.cameras)})" if w.index >= 0 else w.label
                        w.error = EngineError(f"{who} died (exit code {w.process.exitcode})")
                        log.error("%s", w.error)
                        self._failed.set()
                    del conns[conn]  # type: ignore[arg-type]
                    continue
                try:
                    self._handle(w, message)
                except Exception as exc:
                    log.exception("relaying %s's messages failed", w.label)
                    self.error = self.error or exc
                    self._failed.set()
                if w.ended:
                    del conns[conn]  # type: ignore[arg-type]

    def _handle(self, w: _Worker, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == "send":
            getattr(self.publisher, message[1])(*message[2])
        elif kind == "report":
            self._merge(w, message[1])
        elif kind == "end":
            w.ended = True
            if message[2]:
                self._merge(w, message[2])
            if message[1] is not None:
                w.error = message[1]
                log.error("%s failed: %s", w.label, message[1])
                self._failed.set()

    def _forward_control(self, camera: str) -> None:
        control = self.controls.cameras[camera]
        for w in self._workers:
            if camera in w.cameras:
                w.send("control", camera, control.detect, control.threshold)

    def _merge(self, w: _Worker, report: dict[str, Any]) -> None:
        with self._lock:
            w.report = report
            s = self.stats
            for key in COUNTERS:
                setattr(s, key, sum(x.report.get("counters", {}).get(key, 0) for x in self._workers))
            for value in report.get("e2e", ()):
                s.end_to_end_ms.append(value)
                s.end_to_end_hist.observe(value)
            s.slow.extend(tuple(e) for e in report.get("slow", ()))
            for value in report.get("inference", ()):
                s.inference_ms.append(value)
                s.inference_hist.observe(value)
            if s.first_publish is None and s.published:
                s.first_publish = time.monotonic()

    # ------------------------------------------------------------------- what supervise() and others ask

    def running(self) -> bool:
        return not self._failed.is_set() and any(not w.ended for w in self._workers)

    def alive(self) -> bool:
        return all(not w.ended and w.process.is_alive() for w in self._workers)

    def stuck(self) -> tuple[str, float] | None:
        for w in self._workers:
            stuck = w.report.get("stuck")
            if stuck is not None:
                return f"worker {w.index} {stuck[0]}", stuck[1]
        return None

    def liveness(self) -> str | None:
        dead = [str(w.index) for w in self._workers if w.ended and w.error is not None]
        if dead and self.stats.finished is None:
            return f"worker {' and '.join(dead)} stopped"
        if self._engine is not None and self._engine.error is not None and self.stats.finished is None:
            return "the engine process stopped"
        stuck = self.stuck()
        return f"the {stuck[0]} thread is stuck in the engine for {stuck[1]:.0f}s" if stuck else None

    def _cameras(self) -> dict[str, dict[str, Any]]:
        cams: dict[str, dict[str, Any]] = {}
        for w in self._workers:
            cams.update(w.report.get("health", {}).get("cameras", {}))
        return {c.name: cams[c.name] for c in self.settings.cameras if c.name in cams}

    def connected(self) -> tuple[bool, ...]:
        cams = self._cameras()
        return tuple(bool(cams.get(c.name, {}).get("connected")) for c in self.settings.cameras)

    def camera_status(self) -> str:
        cams = self._cameras()
        return camera_status(
            [
                (c.name, bool(cams.get(c.name, {}).get("connected")), cams.get(c.name, {}).get("last_error"))
                for c in self.settings.cameras
            ]
        )

    def health(self) -> dict[str, Any]:
        """One ``health`` message for the device: the workers' own, merged (per camera as they said;
        totals added up)."""
        with self._lock:
            reports = [w.report.get("health", {}) for w in self._workers]
        health: dict[str, Any] = {
            "device_id": self.settings.device_id,
            "run": self.run_id,
            "time": time.time(),
            "workers": len(self._workers),
        }
        for key in SUMMED:
            if any(key in r for r in reports):
                health[key] = round(sum(r.get(key, 0) for r in reports), 2)
        health["cameras"] = self._cameras()
        snapshots = [r["snapshots"] for r in reports if "snapshots" in r]
        if snapshots:
            health["snapshots"] = {k: sum(s[k] for s in snapshots) for k in snapshots[0]}
        return health

    def pids(self) -> list[int]:
        """The worker processes' ids, and the engine process's (profilers)."""
        return [w.process.pid for w in self._processes() if w.process.pid is not None]

    def _processes(self) -> list[_Worker]:
        """Every child process: the workers, and the engine process (service.shared_engine)."""
        return [*self._workers, *([self._engine] if self._engine is not None else [])]

    def cpu_seconds(self) -> float:
        """Host CPU seconds used so far: this process, what the workers last reported, and the engine
        process's (read from /proc: it sends no reports)."""
        t = os.times()
        engine = 0.0
        if self._engine is not None and self._engine.process.pid is not None:
            engine = sum(cpu_by_thread([self._engine.process.pid]).values())
        return t.user + t.system + engine + float(sum(w.report.get("cpu_s", 0.0) for w in self._workers))

    def log_stats(self) -> str:
        dropped = sum(c.get("dropped_by_policy", 0) for c in self._cameras().values())
        text = stats_line(self.stats, dropped, f" in {len(self._workers)} workers")
        log.info("%s", text)
        return text
