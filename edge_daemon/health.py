"""systemd notifications (sd_notify protocol): READY=1, STATUS=..., WATCHDOG=1. No-ops outside systemd."""

from __future__ import annotations

import logging
import os
import socket

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
