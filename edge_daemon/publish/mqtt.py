"""MQTT publisher on paho-mqtt 2.x.

Topics: detections on ``<prefix>/<device_id>/<camera>/detections`` at the configured QoS; availability on
``<prefix>/<device_id>/status``: retained ``online`` once connected, and ``offline`` both as the Last Will
(the broker sends it if the daemon dies) and on a clean shutdown; ``<prefix>/<device_id>/info``: retained
JSON with the model, backend and the precision actually running.

paho's network loop runs in its own thread and reconnects by itself (exponential backoff from a random
0.5-1.5 s base to 60 s).
``publish`` never blocks. With an outbox (the default for QoS >= 1, see outbox.py), every detections
message is stored on disk first and deleted when the broker acknowledges it; after each (re)connect the
stored messages are replayed in order before new ones go out live, so outages and crashes lose nothing.
Without one, paho's bounded in-memory queue (``max_queued_messages``) holds messages while disconnected.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from typing import Any

import paho.mqtt.client as mqtt

from edge_daemon.errors import PublishError
from edge_daemon.publish.client import make_client
from edge_daemon.publish.outbox import Outbox
from edge_daemon.publish.payload import detections_topic, status_topic

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"


class MqttPublisher:
    """Publishes detections and availability. Build with :meth:`from_config`; tests may pass a client."""

    def __init__(
        self,
        client: mqtt.Client,
        outbox: Outbox | None,
        host: str,
        port: int,
        keepalive: int,
        prefix: str,
        device_id: str,
        qos: int,
        connect_timeout: float,
    ) -> None:
        self.client = client
        self.host, self.port, self.keepalive = host, port, keepalive
        self.prefix, self.device_id, self.qos = prefix, device_id, qos
        self.connect_timeout = connect_timeout
        self.status_topic = status_topic(prefix, device_id)
        self.info_topic = f"{prefix}/{device_id}/info"
        self.health_topic = f"{prefix}/{device_id}/health"
        # Retained JSON describing what runs (model, backend, precision actually running); set before start.
        self.info: dict[str, Any] | None = None
        self.published = 0
        self.rejected = 0
        self._connected = threading.Event()
        # Message ids of QoS >= 1 publications the broker has not acknowledged yet.
        self._unacked: set[int] = set()
        self._acked = threading.Condition()
        self._topics: dict[str, str] = {}
        # Outbox bookkeeping: mid -> outbox row (None: no outbox), rows in flight, and acknowledgements that
        # arrived before publish() returned their mid (mid -> arrival time).
        self.outbox = outbox
        self._row_of: dict[int, int | None] = {}
        self._inflight_rows: set[int] = set()
        self._done_rows: set[int] = set()  # recently acknowledged rows (see _send)
        self._early: dict[int, float] = {}
        # New messages go out directly only once the replay after a connect has caught up (keeps order).
        self._live = False
        self.replayed = 0
        self.outbox_errors = 0  # consecutive failed outbox writes (disk full); 0 when healthy
        self.outbox_write_errors_total = 0
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        self._fails = 0
        client.will_set(self.status_topic, OFFLINE, qos=1, retain=True)

    @classmethod
    def from_config(cls, cfg: Any, device_id: str) -> MqttPublisher:
        """The paho client and the outbox from an MqttConfig (TLS files and credentials checked here)."""
        client = make_client(cfg, device_id)
        outbox = None
        if cfg.outbox.enabled and cfg.qos > 0:
            outbox = Outbox(cfg.outbox.path, cfg.outbox.max_messages, cfg.outbox.max_age_s)
            if outbox.pending():
                log.info(
                    "outbox %s holds %d undelivered messages from before; sending them first",
                    cfg.outbox.path,
                    outbox.pending(),
                )
        return cls(
            client,
            outbox,
            cfg.host,
            cfg.port,
            cfg.keepalive_s,
            cfg.topic_prefix,
            device_id,
            cfg.qos,
            cfg.connect_timeout_s,
        )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; wait up to ``connect_timeout`` for the first connection.

        If the broker is not there yet the daemon keeps running: paho keeps trying, and QoS >= 1 messages
        wait in its queue.
        """
        try:
            self.client.connect_async(self.host, self.port, keepalive=self.keepalive)
        except (OSError, ValueError) as exc:
            raise PublishError(f"mqtt: cannot connect to {self.host}:{self.port}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(self.connect_timeout):
            log.warning(
                "mqtt: no connection to %s:%d after %.0fs; continuing, messages are queued",
                self.host,
                self.port,
                self.connect_timeout,
            )

    def publish_detections(self, camera: str, payload: bytes) -> None:
        topic = self._topics.get(camera)
        if topic is None:
            topic = self._topics[camera] = detections_topic(self.prefix, self.device_id, camera)
        if self.outbox is not None:
            try:
                row = self.outbox.add(topic, payload)
            except PublishError as exc:  # disk full or failing: keep publishing, from memory
                self._outbox_failed(exc)
                if self._send(topic, payload, None):
                    self.published += 1
                return
            if self.outbox_errors:
                log.warning("outbox: writable again after %d failed writes", self.outbox_errors)
                self.outbox_errors = 0
            self.published += 1
            if self._live and self.connected:
                self._send(topic, payload, row)
            return
        if self._send(topic, payload, None):
            self.published += 1

    def _outbox_failed(self, exc: PublishError) -> None:
        """Said once per episode (then every 1000th time): messages go out from memory meanwhile, so only
        a broker outage during a disk failure can lose them."""
        self.outbox_errors += 1
        self.outbox_write_errors_total += 1
        if self.outbox_errors == 1 or self.outbox_errors % 1000 == 0:
            log.error(
                "%s; publishing without the disk outbox until it can be written (%d failed writes)",
                exc,
                self.outbox_errors,
            )

    def publish_health(self, health: dict[str, Any]) -> None:
        """Retained state (cameras, drops, outbox) for dashboards; the latest one replaces the last, so it
        bypasses the outbox. Dropped silently while disconnected: the next one is sent after reconnect."""
        if not self._connected.is_set():
            return
        outbox = None
        if self.outbox is not None:
            try:
                pending: int | None = self.outbox.pending()
            except sqlite3.Error:
                pending = None
            outbox = {
                "pending": pending,
                "dropped": self.outbox.dropped,
                "write_errors": self.outbox_write_errors_total,
                "writable": self.outbox_errors == 0,
            }
        body = {**health, "mqtt": {"published": self.published, "replayed": self.replayed}, "outbox": outbox}
        self.client.publish(self.health_topic, json.dumps(body).encode("utf-8"), qos=self.qos, retain=True)

    def _send(self, topic: str, payload: bytes, row: int | None) -> bool:
        """Hand one message to paho and track its acknowledgement.

        Never calls paho while holding our lock: paho runs on_publish under its own mutex, so holding ours
        across publish() would deadlock with the network thread.
        """
        with self._acked:
            if row is not None:
                if row in self._inflight_rows or row in self._done_rows:
                    # in flight already (paho resends it itself after a reconnect), or acknowledged since
                    # the replay read it from disk: sending it again would only make a duplicate
                    return True
                self._inflight_rows.add(row)
        info = self.client.publish(topic, payload, qos=self.qos)
        with self._acked:
            if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
                if row is not None:
                    self._inflight_rows.discard(row)  # stays in the outbox; the next replay sends it
                self.rejected += 1
                if self.rejected in (1, 10, 100) or self.rejected % 1000 == 0:
                    log.warning("mqtt: outgoing queue full, %d messages rejected so far", self.rejected)
                return False
            # NO_CONN is fine for QoS >= 1: paho keeps the message and sends it after reconnecting.
            if self.qos == 0:
                return True
            if self._early.pop(info.mid, None) is not None:
                self._acknowledged(row)
            else:
                self._unacked.add(info.mid)
                self._row_of[info.mid] = row
            return True

    def _acknowledged(self, row: int | None) -> None:
        """The broker has a message. Called with the lock held."""
        if row is not None:
            self._inflight_rows.discard(row)
            self._done_rows.add(row)
            if len(self._done_rows) > 20_000:  # row ids only grow (AUTOINCREMENT): keep the newest
                newest = max(self._done_rows)
                self._done_rows = {r for r in self._done_rows if r > newest - 10_000}
            if self.outbox is not None:
                self.outbox.ack(row)
        if not self._unacked:
            self._acked.notify_all()

    def _replay(self) -> None:
        """Send every stored message in order, then let new messages go out directly."""
        if self.outbox is None:
            return
        sent = 0
        for row, topic, payload in self.outbox.iter_pending():
            if not self.connected:
                return
            with self._acked:  # keep paho's queue small: wait while many are in flight
                self._acked.wait_for(lambda: len(self._unacked) < 500 or not self.connected, timeout=30)
            if self._send(topic, payload, row):
                sent += 1
        self._live = True
        # Rows added between the last batch and going live: sent now, not at the next outage.
        for row, topic, payload in self.outbox.iter_pending():
            self._send(topic, payload, row)
        if sent:
            self.replayed += sent
            log.info("mqtt: replayed %d stored messages", sent)

    @property
    def pending(self) -> int:
        """QoS >= 1 messages handed to paho but not yet acknowledged by the broker."""
        with self._acked:
            return len(self._unacked)

    def flush(self, timeout: float) -> bool:
        """Wait until the broker acknowledged every QoS >= 1 message; False on timeout."""
        with self._acked:
            return self._acked.wait_for(lambda: not self._unacked, timeout=max(0.0, timeout))

    def close(self, timeout: float = 5.0) -> None:
        """Flush what was published (bounded by ``timeout``), publish ``offline``, disconnect."""
        deadline = time.monotonic() + timeout
        stored = self.outbox.pending() if self.outbox is not None else 0
        if (self.pending or stored) and not self.connected:
            log.info(
                "mqtt: waiting up to %.0fs for the broker to take %d queued messages", timeout, self.pending
            )
            self._connected.wait(timeout)
        if self.outbox is not None:
            # The replay after a (late) connect runs on its own thread: wait for the outbox itself to empty,
            # not just for what happens to be in flight at this instant.
            while self.outbox.pending() and self.connected and time.monotonic() < deadline:
                with self._acked:
                    self._acked.wait(timeout=0.05)
        if not self.flush(deadline - time.monotonic()):
            log.warning("mqtt: %d messages not acknowledged by the broker at shutdown", self.pending)
        if self.connected:
            _wait(self.client.publish(self.status_topic, OFFLINE, qos=1, retain=True), deadline)
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()
        if self.outbox is not None:
            left = self.outbox.pending()
            if left:
                log.warning(
                    "mqtt: %d messages stay in the outbox %s and go out on the next start",
                    left,
                    self.outbox.path,
                )
            self.outbox.close()

    # paho callbacks, run on paho's network thread --------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("mqtt: broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        log.info("mqtt: connected to %s:%d", self.host, self.port)
        self._fails = 0
        client.publish(self.status_topic, ONLINE, qos=1, retain=True)
        if self.info is not None:
            info = {**self.info, "outbox_dropped": self.outbox.dropped if self.outbox is not None else 0}
            client.publish(self.info_topic, json.dumps(info).encode("utf-8"), qos=1, retain=True)
        self._connected.set()
        if self.outbox is not None:
            self._live = False
            threading.Thread(target=self._replay, name="mqtt-replay", daemon=True).start()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        now = time.monotonic()
        with self._acked:
            if mid in self._unacked:
                self._unacked.discard(mid)
                self._acknowledged(self._row_of.pop(mid, None))
                return
            # Not registered (yet): the ack overtook publish()'s return, or it is a status message's.
            self._early[mid] = now
            if len(self._early) > 1000:  # forget stale ones long before 16-bit mids wrap around
                self._early = {m: t for m, t in self._early.items() if now - t < 60}

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._fails += 1
        if self._fails in (1, 10) or self._fails % 100 == 0:
            log.warning(
                "mqtt: cannot reach %s:%d (%d failed attempts); still trying",
                self.host,
                self.port,
                self._fails,
            )

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        self._live = False
        if was and reason.is_failure:
            log.warning("mqtt: disconnected (%s); reconnecting", reason)


def _wait(info: mqtt.MQTTMessageInfo, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or info.rc != mqtt.MQTT_ERR_SUCCESS:
        return
    with contextlib.suppress(RuntimeError, ValueError):  # not connected / queue full: nothing to wait for
        info.wait_for_publish(timeout=remaining)
