"""The main thread's loop while the cameras run, whoever runs them (threads in this process,
:class:`~edge_daemon.pipeline.runner.Pipeline`, or worker processes, :mod:`edge_daemon.app.workers`):
systemd's READY, WATCHDOG and STATUS; the retained health message at once when a camera comes or goes and
every interval; the stats line."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Protocol

from edge_daemon.service.notify import Watchdog

log = logging.getLogger(__name__)


class Supervised(Protocol):
    publisher: Any

    def running(self) -> bool:
        """Some of the work still runs (the loop ends when none does)."""
        ...

    def alive(self) -> bool:
        """All of it still runs (the watchdog pings only then)."""
        ...

    def stuck(self) -> tuple[str, float] | None:
        """(what, seconds) of the worker stuck in the engine longest past the bound, or None."""
        ...

    def connected(self) -> tuple[bool, ...]:
        """Per camera, whether it delivers now."""
        ...

    def camera_status(self) -> str: ...

    def health(self) -> dict[str, Any]: ...

    def log_stats(self) -> str: ...


def supervise(target: Supervised, stop: threading.Event, interval_s: float) -> None:
    """Until ``stop`` is set or nothing runs any more. READY once running; WATCHDOG while everything lives
    and nothing is stuck in the engine; STATUS says which cameras are down."""
    next_log = time.monotonic() + interval_s
    watchdog = Watchdog()
    watchdog.ready(f"running; {target.camera_status()}")  # the engine is loaded, the cameras run
    seen = target.connected()
    stuck_said = False
    while not stop.is_set() and target.running():
        stop.wait(watchdog.tick_s)
        stuck = target.stuck()
        watchdog.tick(stuck is None and target.alive())
        if stuck is not None and not stuck_said:
            stuck_said = True
            text = f"unhealthy: the {stuck[0]} thread is stuck in the engine for {stuck[1]:.0f}s"
            log.error("%s; watchdog pings stop (systemd restarts the service)", text)
            watchdog.status(text)
        state = target.connected()
        due = time.monotonic() >= next_log
        if state != seen or due:  # a camera came or went: say so now, not at the next interval
            if state != seen:
                watchdog.status(f"running; {target.camera_status()}")
            seen = state
            target.publisher.publish_health(target.health())
        if due:
            watchdog.status(f"{target.log_stats()}; {target.camera_status()}")
            next_log += interval_s
    watchdog.status("stopping: finishing in-flight frames")
