"""Which message each MQTT acknowledgement belongs to, so a row leaves the outbox only through its own.

paho numbers publications with 16-bit message ids that wrap (minutes at 30 FPS and several cameras), and
an acknowledgement can arrive between ``publish()`` returning and the caller learning the id. So:

- every publication is registered under its id, with paho's message-info object, tracked by the outbox or
  not (health, status, info too): no acknowledgement is ever "someone else's";
- an acknowledgement for a registered id belongs to that publication: paho never hands out an id that is
  still waiting for its acknowledgement;
- an acknowledgement that arrives before its id is registered is only a hint: the publication registered
  next under that id is confirmed by its *own* message-info object (paho marks it published), never by
  the hint alone, so a stale hint can never acknowledge a newer message that reused the id;
- registering an id that is still registered means paho reused it: the older publication left paho's
  queue unacknowledged; its row stays on disk and the next replay sends it again.

Acknowledged rows are collected and deleted from the outbox in batches (:meth:`AckBook.forget_acked`),
off paho's network thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EARLY_LIMIT = 4096  # hints kept at most; a dropped hint only delays a confirmation, never makes a wrong one
DONE_ROWS_KEPT = 10_000


@dataclass(eq=False, slots=True)
class _Sent:
    info: Any  # paho's MQTTMessageInfo
    row: int | None


def _published(info: Any) -> bool:
    try:
        return bool(info.is_published())
    except (ValueError, RuntimeError):  # rc says queue full / not connected: not (yet) published
        return False


class AckBook:
    """Thread-safe: the publish and replay threads register, paho's network thread acknowledges."""

    def __init__(self, outbox: Any = None) -> None:
        self._outbox = outbox
        self._cond = threading.Condition()
        self._by_mid: dict[int, _Sent] = {}
        self._early: set[int] = set()
        self._unconfirmed: list[_Sent] = []
        self._inflight_rows: set[int] = set()
        self._done_rows: set[int] = set()
        self.to_forget: list[int] = []

    @property
    def in_flight(self) -> int:
        """Publications registered and not yet acknowledged."""
        with self._cond:
            return len(self._by_mid)

    def claim(self, row: int) -> bool:
        """Mark ``row`` as being sent; False if it is in flight already or was acknowledged since it was read
        from disk (sending it again would only make a duplicate)."""
        with self._cond:
            if row in self._inflight_rows or row in self._done_rows:
                return False
            self._inflight_rows.add(row)
            return True

    def unclaim(self, row: int | None) -> None:
        if row is not None:
            with self._cond:
                self._inflight_rows.discard(row)

    def register(self, info: Any, row: int | None) -> None:
        """``info`` (paho's MQTTMessageInfo) was just returned by ``publish()`` for ``row`` (None: no row)."""
        with self._cond:
            mid = int(info.mid)
            older = self._by_mid.pop(mid, None)
            if older is not None and older not in self._unconfirmed and older.row is not None:
                self._inflight_rows.discard(older.row)  # left paho's queue unacknowledged: replayed later
            sent = _Sent(info, row)
            self._by_mid[mid] = sent
            if mid in self._early:
                self._early.discard(mid)
                self._unconfirmed.append(sent)
                self._confirm()

    def acknowledged(self, mid: int) -> None:
        """paho's on_publish for ``mid``."""
        with self._cond:
            sent = self._by_mid.pop(mid, None)
            if sent is None:
                if len(self._early) >= EARLY_LIMIT:
                    self._early.clear()
                self._early.add(mid)
            else:
                if sent in self._unconfirmed:
                    self._unconfirmed.remove(sent)
                self._done(sent)
            self._confirm()
            self._cond.notify_all()

    def _confirm(self) -> None:
        """Acknowledge registered publications whose own message-info says published. Lock held."""
        if not self._unconfirmed:
            return
        still = []
        for sent in self._unconfirmed:
            if _published(sent.info):
                if self._by_mid.get(int(sent.info.mid)) is sent:
                    del self._by_mid[int(sent.info.mid)]
                self._done(sent)
            else:
                still.append(sent)
        self._unconfirmed = still
        self._cond.notify_all()

    def _done(self, sent: _Sent) -> None:
        if sent.row is None:
            return
        self._inflight_rows.discard(sent.row)
        self._done_rows.add(sent.row)
        if len(self._done_rows) > 2 * DONE_ROWS_KEPT:  # row ids only grow (AUTOINCREMENT): keep the newest
            newest = max(self._done_rows)
            self._done_rows = {r for r in self._done_rows if r > newest - DONE_ROWS_KEPT}
        self.to_forget.append(sent.row)

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``predicate()`` (called with the lock held) is true; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                self._confirm()
                if predicate():
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(min(remaining, 0.05))

    def forget_acked(self) -> None:
        """Delete the acknowledged rows from the outbox, in one transaction."""
        with self._cond:
            rows, self.to_forget = self.to_forget, []
        if rows and self._outbox is not None:
            self._outbox.ack_many(rows)
