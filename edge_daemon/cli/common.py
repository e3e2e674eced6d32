"""What every command shares: exit codes (sysexits(3)), signal handling, the daemon's logger."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

log = logging.getLogger("edge_daemon")

EX_OK = 0
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_INTERRUPTED = 130
LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR"]


@contextlib.contextmanager
def capture_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (graceful drain); a second SIGINT exits at once. Restores old handlers."""
    seen: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        if seen and signum == signal.SIGINT:
            log.warning("second interrupt: exiting without draining")
            os._exit(EX_INTERRUPTED)
        seen.append(signum)
        log.info("received %s; finishing in-flight frames and shutting down", signal.Signals(signum).name)
        stop.set()

    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
