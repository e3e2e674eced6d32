"""``edge-daemon watch``: a small MQTT subscriber that prints one line per message (demo and debugging)."""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

EX_OK = 0
EX_UNAVAILABLE = 69


def summarize(topic: str, payload: bytes) -> str:
    """One human-readable line for a message: detections and events are summarised, snapshots named,
    occupancy and status shown as they are."""
    if topic.endswith("/snapshot"):
        return f"{topic} JPEG, {len(payload)} bytes"
    try:
        msg: Any = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return f"{topic} {payload[:80]!r}"
    if isinstance(msg, dict) and msg.get("schema") == "edge-daemon/events":
        return _event_line(msg)
    if isinstance(msg, int):
        return f"{topic} = {msg}"
    if not isinstance(msg, dict) or "detections" not in msg:
        return f"{topic} {json.dumps(msg)[:120]}"
    counts: dict[str, int] = {}
    for det in msg["detections"]:
        counts[det["label"]] = counts.get(det["label"], 0) + 1
    found = (
        ", ".join(f"{n} {label}" for label, n in sorted(counts.items(), key=lambda kv: -kv[1])) or "nothing"
    )
    lat = msg.get("latency_ms", {})
    return (
        f"{msg['camera']} #{msg['seq']:<5} {found:<40} "
        f"(inference {lat.get('inference', 0):.0f} ms, end-to-end {lat.get('end_to_end', 0):.0f} ms)"
    )


def _event_line(msg: dict[str, Any]) -> str:
    obj = msg.get("object", {})
    where = msg.get("zone") or msg.get("line") or ""
    extra = " ".join(f"{k}={msg[k]}" for k in ("direction", "dwell_s", "reason") if k in msg)
    return (
        f"{msg['camera']} EVENT {msg['type']:<10} {obj.get('label', '?')} #{obj.get('track_id', '?')} "
        f"{where} {extra}".rstrip()
    )


def watch(
    host: str,
    port: int,
    topic: str,
    stop: threading.Event,
    count: int | None = None,
    timeout: float | None = None,
) -> int:
    """Print messages on ``topic`` until ``stop``, ``count`` detections messages, or ``timeout`` seconds."""
    seen = 0
    connected = threading.Event()

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe(topic, qos=1)
            connected.set()

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        nonlocal seen
        sys.stdout.write(summarize(message.topic, bytes(message.payload)) + "\n")
        sys.stdout.flush()
        if message.topic.endswith("/detections"):
            seen += 1
            if count is not None and seen >= count:
                stop.set()

    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.on_connect = on_connect
    client.on_message = on_message
    try:
        client.connect(host, port)
    except OSError as exc:
        sys.stderr.write(f"watch: cannot connect to {host}:{port}: {exc}\n")
        return EX_UNAVAILABLE
    client.loop_start()
    try:
        stop.wait(timeout)
    finally:
        client.disconnect()
        client.loop_stop()
    return EX_OK
