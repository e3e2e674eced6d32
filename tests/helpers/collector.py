"""A persistent-session MQTT subscriber that records every detections message's (camera, seq, captured_at)."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


class Collector:
    """QoS 1, ``clean_session=False``: the broker keeps this client's messages while it is away."""

    def __init__(self, port: int, topic: str, client_id: str = "collector") -> None:
        self.seqs: list[int] = []
        self.runs: list[tuple[str, int]] = []  # (run, seq): what a consumer deduplicates on
        self.messages: list[tuple[str, int, str]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        body = json.loads(msg.payload)
        with self.lock:
            self.seqs.append(body["seq"])
            self.runs.append((body.get("run", ""), body["seq"]))
            self.messages.append((body["camera"], body["seq"], body.get("captured_at", "")))

    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
