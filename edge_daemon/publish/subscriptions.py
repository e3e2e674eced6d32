"""What the daemon listens to on MQTT (its control topics, Home Assistant's birth message): each topic with
its handler, subscribed again on every connection, and the broker's refusals said in the log."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

log = logging.getLogger(__name__)

Handler = Callable[[str, bytes], None]


class Subscriptions:
    """Installs paho's ``on_message`` and ``on_subscribe`` on ``client``. Handlers run on paho's network
    thread: they must be quick, and an exception in one is logged, never raised into paho."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.handlers: dict[str, Handler] = {}
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe

    def add(self, topic: str, handler: Handler) -> None:
        self.handlers[topic] = handler

    def subscribe_all(self) -> None:
        """On every connection (a clean session forgets them)."""
        if self.handlers:
            self.client.subscribe([(topic, 1) for topic in self.handlers])

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        handler = self.handlers.get(msg.topic)
        if handler is None:
            return
        try:
            handler(msg.topic, bytes(msg.payload))
        except Exception:
            log.exception("mqtt: handling a message on %s failed", msg.topic)

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        refused = sorted({str(code) for code in codes if code.is_failure})
        if refused:
            log.warning(
                "mqtt: the broker refused subscriptions (%s): control topics and Home Assistant's birth "
                "message will not arrive; does the broker's ACL let this user read its own prefix?",
                ", ".join(refused),
            )
