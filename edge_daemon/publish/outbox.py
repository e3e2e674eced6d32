"""A disk-backed outbox: every message survives broker outages and daemon crashes until it is acknowledged.

SQLite in WAL mode, one row per message, in publication order. A row is written before the message is
handed to MQTT and deleted only when the broker acknowledges it (QoS 1/2 PUBACK/PUBCOMP). After a
reconnect, or on the next boot after a crash, every remaining row is sent again in order: consumers may
see a message twice (MQTT QoS 1 is at-least-once; ``run`` and the per-camera ``seq`` let them drop
duplicates), but none is lost. Bounded by ``max_messages`` and ``max_age_s``: past those the oldest rows
are dropped and counted (``dropped``), never silently.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from edge_daemon.errors import PublishError

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


class Outbox:
    """Thread-safe: the publish thread adds, paho's network thread acknowledges."""

    def __init__(self, path: Path, max_messages: int = 100_000, max_age_s: float = 7 * 86400) -> None:
        self.path = path
        self.max_messages = max_messages
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across process crashes
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise PublishError(f"outbox {path}: cannot open: {exc}") from None
        self.dropped = self._counter("dropped")
        self.ack_errors = 0

    def _counter(self, name: str) -> int:
        row = self._db.execute("SELECT value FROM counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def add(self, topic: str, payload: bytes) -> int:
        """Store a message; returns its row id."""
        return self.add_many([(topic, payload)])[0]

    def add_many(self, messages: Sequence[tuple[str, bytes]]) -> list[int]:
        """Store ``(topic, payload)`` messages in order, in one transaction; returns their row ids. Enforces
        the bounds (dropping the oldest, counted) every 256 rows."""
        now = time.time()
        with self._lock:
            try:
                self._db.execute("BEGIN")
                rows = []
                for topic, payload in messages:
                    cur = self._db.execute(
                        "INSERT INTO outbox (topic, payload, created) VALUES (?, ?, ?)", (topic, payload, now)
                    )
                    rows.append(int(cur.lastrowid or 0))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:  # disk full, read-only, corrupt: say so, don't crash the pipeline
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise PublishError(f"outbox {self.path}: cannot store a message: {exc}") from None
            if rows and rows[-1] // 256 != (rows[0] - 1) // 256:
                try:
                    self._enforce_bounds()
                except sqlite3.Error as exc:
                    log.warning("outbox %s: cannot enforce its bounds now: %s", self.path, exc)
            return rows

    def _enforce_bounds(self) -> None:
        n = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        drop = 0
        if n > self.max_messages:
            drop += self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)",
                (n - self.max_messages,),
            ).rowcount
        drop += self._db.execute(
            "DELETE FROM outbox WHERE created < ?", (time.time() - self.max_age_s,)
        ).rowcount
        if drop:
            self.dropped += drop
            self._db.execute(
                "INSERT INTO counters (name, value) VALUES ('dropped', ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
                (self.dropped,),
            )
            log.warning(
                "outbox full or too old: dropped %d oldest messages (%d in total)", drop, self.dropped
            )

    def ack(self, row_id: int) -> None:
        self.ack_many([row_id])

    def ack_many(self, row_ids: Sequence[int]) -> None:
        """Forget acknowledged messages, in one transaction. If the disk refuses even that, the rows stay and
        go out once more after the next reconnect: duplicates (consumers drop them by run and seq), never a
        loss."""
        with self._lock:
            try:
                self._db.execute("BEGIN")
                self._db.executemany("DELETE FROM outbox WHERE id = ?", [(r,) for r in row_ids])
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                self.ack_errors += 1
                if self.ack_errors == 1 or self.ack_errors % 1000 == 0:
                    log.error("outbox %s: cannot forget acknowledged messages: %s", self.path, exc)

    def pending(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def iter_pending(self, batch: int = 500) -> Iterator[tuple[int, str, bytes]]:
        """All stored messages in order, read in batches (rows added meanwhile are included)."""
        last = 0
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (last, batch)
                ).fetchall()
            if not rows:
                return
            for row_id, topic, payload in rows:
                last = row_id
                yield int(row_id), str(topic), bytes(payload)

    def close(self) -> None:
        with self._lock:
            self._db.close()
