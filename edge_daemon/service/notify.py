"""systemd notifications (sd_notify protocol): READY=1, STATUS=..., WATCHDOG=1. No-ops outside systemd."""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def notify(**fields: str) -> bool:
    """Send ``KEY=value`` lines to $NOTIFY_SOCKET, e.g. ``notify(STATUS="calibrating 10/500")``.

    Returns False (and does nothing) when not run by systemd with Type=notify.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace socket
    message = "\n".join(f"{k}={v}" for k, v in fields.items()).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            # Never block the daemon on status reporting: if the receiver's queue is full, drop this one.
            sock.setblocking(False)
            sock.connect(address)
            sock.send(message)
    except OSError as exc:  # BlockingIOError included
        log.debug("sd_notify failed: %s", exc)
        return False
    return True


def status(text: str) -> None:
    """Show ``text`` in `systemctl status` (STATUS=)."""
    notify(STATUS=text)


class Watchdog:
    """Tells systemd the daemon is ready and alive, from the pipeline's own progress.

    ``READY=1`` once, when the first frame has been published (the engine is loaded and the whole path
    works). ``WATCHDOG=1`` every half watchdog period, but only while frames keep being published: a
    stalled camera or a hung inference stops the pings, and systemd (WatchdogSec=) restarts the service.
    The period comes from $WATCHDOG_USEC, which systemd sets; without it only READY and STATUS are sent.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        self.period_s = int(usec) / 1e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0.0
        self.ready = False
        self._clock = clock
        self._last_ping = -1e18
        self._last_count = -1
        self._last_progress = clock()

    def tick(self, published: int, fps: float) -> None:
        """Call often (every ~0.2 s) with the count of frames published so far."""
        now = self._clock()
        if published != self._last_count:
            self._last_count = published
            self._last_progress = now
        if not self.ready and published > 0:
            self.ready = True
            notify(READY="1", STATUS="running: first frame published")
        if not self.period_s or not self.ready:
            return
        stalled = now - self._last_progress > self.period_s
        if not stalled and now - self._last_ping >= self.period_s / 2:
            self._last_ping = now
            notify(WATCHDOG="1")

    def status(self, text: str) -> None:
        notify(STATUS=text)
