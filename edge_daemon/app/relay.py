"""The worker's side of :mod:`edge_daemon.app.workers`: the process's main function, a publisher that hands
each call to the main process over the pipe, the thread that takes its orders (go, control, stop), and the
reports."""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from edge_daemon.config import Settings
from edge_daemon.errors import EdgeError, EngineError
from edge_daemon.threads import set_os_name, thread

log = logging.getLogger(__name__)

REPORT_S = 0.5
COUNTERS = ("published", "inferred", "batches", "detections", "events", "suppressed", "analytics_errors")


class RelayPublisher:
    """What :class:`~edge_daemon.publish.base.Publisher` asks, sent to the main process (one pickled tuple
    per call: a whole batch's detections go as one). Health is not relayed: the main process merges the
    workers' reports into one message for the device."""

    def __init__(self, conn: Connection) -> None:
        self.info: dict[str, Any] | None = None
        self._conn = conn
        self._lock = threading.Lock()
        self.gone = threading.Event()  # the main process closed the pipe (or died)

    def send(self, *message: Any) -> None:
        with self._lock:
            try:
                self._conn.send(message)
            except (OSError, ValueError):
                self.gone.set()

    def start(self) -> None:
        return None

    def publish_detections(self, camera: str, payload: bytes) -> None:
        self.send("send", "publish_detections", (camera, payload))

    def publish_detections_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.send("send", "publish_detections_many", (list(messages),))

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        self.send("send", "publish_many", (list(messages),))

    def publish_state(self, path: str, payload: bytes) -> None:
        self.send("send", "publish_state", (path, payload))

    def publish_health(self, health: dict[str, Any]) -> None:
        return None

    def close(self, timeout: float = 5.0) -> None:
        return None

    def listen(self, pipeline: Any, stop: threading.Event, go: threading.Event) -> None:
        """Take the main process's orders on a thread: ``go``, ``control``, ``stop``; a closed pipe stops."""

        def loop() -> None:
            while True:
                try:
                    message = self._conn.recv()
                except (EOFError, OSError):
                    log.warning("the main process has gone: stopping")
                    self.gone.set()
                    break
                if message[0] == "go":
                    go.set()
                elif message[0] == "control":
                    _, camera, detect, threshold = message
                    control = pipeline.controls.cameras[camera]
                    control.detect, control.threshold = detect, threshold
                elif message[0] == "stop":
                    break
            stop.set()
            go.set()

        thread(loop, "orders").start()


class Reporter:
    """Every ``period_s``: the pipeline's health, counters, the latency samples and slow frames since the
    last report, this process's CPU seconds and whether it is stuck in the engine."""

    def __init__(self, relay: RelayPublisher, pipeline: Any, period_s: float) -> None:
        self._relay, self._pipeline, self._period = relay, pipeline, period_s
        self._sent = {"published": 0, "batches": 0, "slow": 0}
        self._done = threading.Event()
        self._thread = thread(self._loop, "reporter")
        self._thread.start()

    def report(self) -> dict[str, Any]:
        p = self._pipeline
        s = p.stats
        published, batches = s.published, s.batches
        e2e = _newest(s.end_to_end_ms, published - self._sent["published"])
        inference = _newest(s.inference_ms, batches - self._sent["batches"])
        count = s.slow_count
        slow = _newest(s.slow, count - self._sent["slow"])
        self._sent = {"published": published, "batches": batches, "slow": count}
        t = os.times()
        return {
            "health": p.health(),
            "counters": {k: getattr(s, k) for k in COUNTERS},
            "e2e": e2e,
            "inference": inference,
            "slow": slow,
            "cpu_s": t.user + t.system,
            "stuck": p.stuck(),
        }

    def _loop(self) -> None:
        while not self._done.wait(self._period):
            self._relay.send("report", self.report())

    def stop(self) -> dict[str, Any]:
        """The last report (after the pipeline drained)."""
        self._done.set()
        self._thread.join(5.0)
        return self.report()


def _newest(samples: Any, n: int) -> list[float]:
    """The last ``n`` of a bounded deque another thread appends to."""
    if n <= 0:
        return []
    values = list(samples)
    return values[-n:]


def portable(exc: BaseException | None) -> BaseException | None:
    """``exc`` if it survives pickling (the daemon's own errors do), else an EngineError saying it."""
    if exc is None:
        return None
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return EngineError(f"{type(exc).__name__}: {exc}")


def worker_main(
    settings: Settings,
    index: int,
    conn: Connection,
    run_id: str,
    level: str,
    engine: Connection | None = None,
) -> None:
    """A worker process: load (or, with ``engine``, attach to the engine process), build, wait for ``go``,
    run its cameras until told to stop."""
    from edge_daemon.app.boot import load_model
    from edge_daemon.app.daemon import build_pipeline
    from edge_daemon.logs import setup_logging

    set_os_name(f"edge-worker-{index}")  # ps, top and the bench's CPU per thread tell the processes apart
    os.environ.pop("NOTIFY_SOCKET", None)  # only the main process speaks to systemd
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C reaches us too: the main one drains
    setup_logging(level)
    relay = RelayPublisher(conn)
    error: BaseException | None = None
    reporter: Reporter | None = None
    model = pipeline = None
    try:
        if engine is not None:
            from edge_daemon.app.engine_server import remote_model

            model = remote_model(settings, engine)
        else:
            model = load_model(settings)
        pipeline = build_pipeline(settings, model, publisher=relay, run=run_id)
        about = {"names": model.info.names, "tag": model.tag, "fallback": model.fallback}
        relay.send("model", {**about, "info": pipeline.info()})
        stop, go = threading.Event(), threading.Event()
        relay.listen(pipeline, stop, go)
        go.wait()
        if not stop.is_set():
            reporter = Reporter(relay, pipeline, REPORT_S)
            pipeline.run(stop, settings.service.drain_timeout_s)
            error = pipeline.error
    except EdgeError as exc:
        log.error("worker %d: %s", index, exc)
        error = exc
    except BaseException as exc:
        log.exception("worker %d failed", index)
        error = exc
    finally:
        final = reporter.stop() if reporter is not None else None
        relay.send("end", portable(error), final)
        if model is not None and not (pipeline is not None and pipeline.abandoned):
            model.engine.close()
        conn.close()
