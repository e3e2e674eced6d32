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
    """Tells systemd the service is up and alive, from the service's own health, not from the cameras.

    ``READY=1`` once, when the engine is loaded and the pipeline runs (:meth:`ready`), whether or not every
    camera delivers yet. ``WATCHDOG=1`` every half watchdog period while the caller says the service is
    healthy (:meth:`tick`): the inference thread alive and not stuck on a batch. A camera that is down
    never stops the pings (systemd would restart the whole daemon, the opposite of the camera's own
    reconnect backoff); it is reported in ``STATUS=`` and the health topic instead. The period comes from
    $WATCHDOG_USEC, which systemd sets; without it only READY and STATUS are sent.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        self.period_s = int(usec) / 1e6 if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0.0
        self.is_ready = False
        self._clock = clock
        self._last_ping = -1e18

    @property
    def tick_s(self) -> float:
        """How often :meth:`tick` should be called: often enough for a ping every half period."""
        return min(0.2, self.period_s / 4) if self.period_s else 0.2

    def ready(self, text: str) -> None:
        if not self.is_ready:
            self.is_ready = True
            notify(READY="1", STATUS=text)

    def tick(self, healthy: bool) -> None:
        """Ping if the service is healthy and half a period has passed since the last ping."""
        if not self.period_s or not self.is_ready or not healthy:
            return
        now = self._clock()
        if now - self._last_ping >= self.period_s / 2:
            self._last_ping = now
            notify(WATCHDOG="1")

    def status(self, text: str) -> None:
        notify(STATUS=text)
