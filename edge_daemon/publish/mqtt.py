"""MQTT publisher on paho-mqtt 2.x.

One room at about 400 lines on purpose: connecting, the outbox replay, live sends and the retained-state
resend share one ordering lock and one connection counter; split apart, their ordering would be spread
over several files.

Topics: detections on ``<prefix>/<device_id>/<camera>/detections`` and events on ``…/<camera>/events`` at
the configured QoS (:meth:`MqttPublisher.publish_many`); retained state (occupancy, snapshots:
:meth:`MqttPublisher.publish_state`), whose latest value is sent again after every reconnect; availability on
``<prefix>/<device_id>/status``: retained ``online`` once connected, and ``offline`` both as the Last Will
(the broker sends it if the daemon dies) and on a clean shutdown; ``<prefix>/<device_id>/info``: retained
JSON with the model, backend and the precision actually running. Subscriptions (the control topics, Home
Assistant's birth message: :mod:`.subscriptions`) are made on every connection, before ``online``;
:meth:`MqttPublisher.publish_retained` sends retained state outside the prefix (discovery configs).

paho's network loop runs in its own thread and reconnects by itself (exponential backoff from a random
0.5-1.5 s base to 60 s).
``publish`` never blocks. With an outbox (the default for QoS >= 1, see outbox.py), every detections
message is stored on disk first and deleted when the broker acknowledges it; after each (re)connect the
stored messages are replayed in order before new ones go out live, so outages and crashes lose nothing.
Without one, paho's bounded in-memory queue (``max_queued_messages``) holds messages while disconnected.

Acknowledgements (:mod:`.acks`): every publication, tracked or not, is registered under its message id
with paho's own message-info object; a row leaves the outbox only through the acknowledgement of the
message that carried it. Replays (:meth:`MqttPublisher._replay`) are numbered by connection: a newer
connection's replay supersedes an older one, and only the current one may let live messages through.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt

from edge_daemon.errors import PublishError
from edge_daemon.publish.acks import AckBook
from edge_daemon.publish.client import make_client
from edge_daemon.publish.outbox import Outbox
from edge_daemon.publish.payload import status_topic
from edge_daemon.publish.subscriptions import Handler, Subscriptions
from edge_daemon.threads import thread

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
        self._topics: dict[str, str] = {}
        # Retained state: path -> latest payload, sent again after every reconnect (_resend_state). The lock
        # orders a new value against that resend.
        self._state: dict[str, bytes] = {}
        self._state_lock = threading.Lock()
        self.outbox = outbox
        self._book = AckBook(outbox)
        # Stored messages go out before live ones: the publish thread stores (and, once live, sends) under
        # this lock, and a replay goes live under it, so no message lands between the last stored one and
        # the first live one. Connections are numbered; a replay only goes live for the current one.
        self._order = threading.Lock()
        self._connection = 0
        self._live_for = -1
        self._replay_thread: threading.Thread | None = None
        self._ack_thread: threading.Thread | None = None
        self._closing = threading.Event()
        self.replayed = 0
        self.outbox_errors = 0  # consecutive failed outbox writes (disk full); 0 when healthy
        self.outbox_write_errors_total = 0
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        self._fails = 0
        self.subscriptions = Subscriptions(client)  # control topics, Home Assistant's birth message
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
        if self.outbox is not None:
            self._ack_thread = thread(self._forget_acked, "mqtt-outbox")
            self._ack_thread.start()
        self.client.loop_start()
        if not self._connected.wait(self.connect_timeout):
            log.warning(
                "mqtt: no connection to %s:%d after %.0fs; continuing, messages are queued",
                self.host,
                self.port,
                self.connect_timeout,
            )

    def publish_detections(self, camera: str, payload: bytes) -> None:
        self.publish_detections_many([(camera, payload)])

    def publish_detections_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """``(camera, payload)`` detections messages: :meth:`publish_many` on ``<camera>/detections``."""
        self.publish_many([(f"{camera}/detections", payload) for camera, payload in messages])

    def publish_state(self, path: str, payload: bytes) -> None:
        """Retained, latest value wins; sent now when connected, and again after every reconnect."""
        self.publish_retained(self.topic(path), payload)

    def publish_retained(self, topic: str, payload: bytes) -> None:
        """:meth:`publish_state` on a full ``topic`` (Home Assistant's discovery topics are outside the
        prefix). An empty payload clears the broker's retained message (again after a reconnect too)."""
        with self._state_lock:
            self._state[topic] = payload
            if self._connected.is_set():
                self._send(topic, payload, None, self.qos, retain=True)

    def subscribe(self, topic: str, handler: Handler) -> None:
        """Call ``handler(topic, payload)`` for each message on ``topic`` (subscribed at QoS 1 on every
        connection). Call before :meth:`start`."""
        self.subscriptions.add(topic, handler)

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """Publish ``(path, payload)`` messages in order: stored in the outbox in one transaction first,
        then handed to MQTT if no replay is catching up (otherwise the replay sends them, in order)."""
        batch = [(self.topic(path), payload) for path, payload in messages]
        if self.outbox is None:
            for topic, payload in batch:
                if self._send(topic, payload, None, self.qos):
                    self.published += 1
            return
        with self._order:
            try:
                rows = self.outbox.add_many(batch)
            except PublishError as exc:  # disk full or failing: keep publishing, from memory
                self._outbox_failed(exc)
                for topic, payload in batch:
                    if self._send(topic, payload, None, self.qos):
                        self.published += 1
                return
            if self.outbox_errors:
                log.warning("outbox: writable again after %d failed writes", self.outbox_errors)
                self.outbox_errors = 0
            self.published += len(rows)
            if self._live_for == self._connection and self.connected:
                for (topic, payload), row in zip(batch, rows, strict=True):
                    self._send(topic, payload, row, self.qos)

    def topic(self, path: str) -> str:
        """``<prefix>/<device_id>/<path>``."""
        topic = self._topics.get(path)
        if topic is None:
            topic = f"{self.prefix}/{self.device_id}/{path}"
            if len(self._topics) < 10_000:  # a few paths per camera; never a leak if a caller varies them
                self._topics[path] = topic
        return topic

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
        self._send(self.health_topic, json.dumps(body).encode("utf-8"), None, self.qos, retain=True)

    def _send(self, topic: str, payload: bytes, row: int | None, qos: int, retain: bool = False) -> bool:
        """Hand one message to paho and register it for its acknowledgement. Every publication goes
        through here, tracked by the outbox or not, so that no acknowledgement is ever unaccounted for.

        Never calls paho while holding the book's lock: paho runs on_publish under its own mutex, so
        holding ours across publish() would deadlock with the network thread.
        """
        if row is not None and not self._book.claim(row):
            return True  # in flight already (paho resends it itself), or acknowledged since it was read
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc == mqtt.MQTT_ERR_QUEUE_SIZE:
            self._book.unclaim(row)  # stays in the outbox; the next replay sends it
            self.rejected += 1
            if self.rejected in (1, 10, 100) or self.rejected % 1000 == 0:
                log.warning("mqtt: outgoing queue full, %d messages rejected so far", self.rejected)
            return False
        # NO_CONN is fine for QoS >= 1: paho keeps the message and sends it after reconnecting.
        if qos > 0 or info.rc == mqtt.MQTT_ERR_SUCCESS:
            self._book.register(info, row)
        if len(self._book.to_forget) > 512:  # the outbox thread lags: forget on this thread too
            self._book.forget_acked()
        return True

    def _replay(self, connection: int, previous: threading.Thread | None) -> None:
        """Send every stored message in order, then let new messages go out directly, unless a newer
        connection has begun meanwhile (its own replay takes over)."""
        if previous is not None:
            previous.join()  # one replay at a time: the older one stops at its next message
        if self.outbox is None:
            return
        # What was in flight when the connection dropped, paho sends again itself, but only once on_connect
        # (which started this thread) has returned: a row sent now could overtake them on the wire. Wait
        # until they are acknowledged (seen in CI: stored message 11738 arrived before 11400..11737).
        if not self._book.wait(lambda: self._book.in_flight == 0 or not self._current(connection), 30):
            log.warning("mqtt: messages from before the reconnect still unacknowledged after 30 s; replaying")
        sent = 0
        for row, topic, payload in self.outbox.iter_pending():
            if not self._current(connection):
                return
            # keep paho's queue small: wait while many are in flight
            self._book.wait(lambda: self._book.in_flight < 500 or not self._current(connection), 30)
            if self._send(topic, payload, row, self.qos):
                sent += 1
        with self._order:  # the publish thread waits: nothing new is stored until this replay went live
            if not self._current(connection):
                return
            for row, topic, payload in self.outbox.iter_pending():  # stored while the replay ran
                if self._send(topic, payload, row, self.qos):
                    sent += 1
            self._live_for = connection
        if sent:
            self.replayed += sent
            log.info("mqtt: replayed %d stored messages", sent)

    def _resend_state(self, connection: int) -> None:
        """After a reconnect, the latest retained state again: once what was in flight before has been
        acknowledged (paho resends that itself, after on_connect returns; an older value sent after the
        newest would be the one the broker keeps)."""
        if not self._book.wait(lambda: self._book.in_flight == 0 or not self._current(connection), 30):
            log.warning("mqtt: messages from before the reconnect still unacknowledged after 30 s")
        with self._state_lock:
            if self._current(connection):
                for topic, payload in list(self._state.items()):
                    self._send(topic, payload, None, self.qos, retain=True)

    def _current(self, connection: int) -> bool:
        return connection == self._connection and self._connected.is_set()

    def _forget_acked(self) -> None:
        """Outbox thread: delete acknowledged rows in batches, off paho's network thread."""
        while not self._closing.wait(0.1):
            self._book.forget_acked()

    @property
    def pending(self) -> int:
        """Publications handed to paho and not yet acknowledged by the broker."""
        return self._book.in_flight

    def flush(self, timeout: float) -> bool:
        """Wait until the broker acknowledged every publication; False on timeout."""
        return self._book.wait(lambda: self._book.in_flight == 0, max(0.0, timeout))

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
            while self._stored() and self.connected and time.monotonic() < deadline:
                self._book.wait(lambda: False, 0.05)
        if not self.flush(deadline - time.monotonic()):
            log.warning("mqtt: %d messages not acknowledged by the broker at shutdown", self.pending)
        if self.connected:  # the one publication not registered: nothing is tracked after it
            _wait(self.client.publish(self.status_topic, OFFLINE, qos=1, retain=True), deadline)
        self.client.disconnect()
        self.client.loop_stop()
        self._connected.clear()
        self._closing.set()
        if self._ack_thread is not None:
            self._ack_thread.join(5)
        if self.outbox is not None:
            left = self._stored()
            if left:
                log.warning(
                    "mqtt: %d messages stay in the outbox %s and go out on the next start",
                    left,
                    self.outbox.path,
                )
            self.outbox.close()

    def _stored(self) -> int:
        """Rows still on disk once the acknowledged ones are deleted."""
        assert self.outbox is not None
        self._book.forget_acked()
        return self.outbox.pending()

    # paho callbacks, run on paho's network thread --------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            log.error("mqtt: broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        log.info("mqtt: connected to %s:%d", self.host, self.port)
        self._fails = 0
        self._connection += 1  # before anything else: an older replay must not go live from now on
        self.subscriptions.subscribe_all()  # before "online": whoever reacts to it can command at once
        self._send(self.status_topic, ONLINE, None, 1, retain=True)
        if self.info is not None:
            info = {**self.info, "outbox_dropped": self.outbox.dropped if self.outbox is not None else 0}
            self._send(self.info_topic, json.dumps(info).encode("utf-8"), None, 1, retain=True)
        self._connected.set()
        if self._state:
            threading.Thread(
                target=self._resend_state, args=(self._connection,), name="mqtt-state", daemon=True
            ).start()
        if self.outbox is not None:
            previous = self._replay_thread
            self._replay_thread = threading.Thread(
                target=self._replay, args=(self._connection, previous), name="mqtt-replay", daemon=True
            )
            self._replay_thread.start()

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._book.acknowledged(mid)

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
        if was and reason.is_failure:
            log.warning("mqtt: disconnected (%s); reconnecting", reason)


def _wait(info: mqtt.MQTTMessageInfo, deadline: float) -> None:
    remaining = deadline - time.monotonic()
    if remaining <= 0 or info.rc != mqtt.MQTT_ERR_SUCCESS:
        return
    with contextlib.suppress(RuntimeError, ValueError):  # not connected / queue full: nothing to wait for
        info.wait_for_publish(timeout=remaining)
