"""Home Assistant MQTT discovery: the device and its entities appear in Home Assistant by themselves.

Retained ``<discovery_prefix>/<component>/edge_daemon_<device>/<object>/config`` messages
(https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery), one per entity:

- per camera: its fps (``sensor``, from the retained health message), detection on/off (``switch``, on
  the MQTT control topics), the confidence threshold (``number``), and the latest snapshot of each label
  it snapshots (``image``);
- per zone and label (``all`` included): the count (``sensor``) and whether anything is there
  (``binary_sensor``, device class occupancy), from the retained occupancy topics;
- availability from the daemon's retained ``status`` topic (``online``/``offline``, the Last Will).

What was published is remembered in a small JSON file; at the next start, entities of cameras, zones or
labels no longer configured are removed with an empty retained config (Home Assistant's way to delete).
The configs are sent again whenever Home Assistant announces itself (``<discovery_prefix>/status``
``online``), as its documentation recommends.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from edge_daemon import __version__
from edge_daemon.analytics.camera import topic_level
from edge_daemon.files import atomic_write

log = logging.getLogger(__name__)

_NOT_ID = re.compile(r"[^A-Za-z0-9_-]")


def object_id(*parts: str) -> str:
    """Home Assistant's node and object ids allow ``[A-Za-z0-9_-]`` only."""
    return _NOT_ID.sub("_", "_".join(parts))


def snapshot_labels(cam: Any, names: dict[int, str]) -> list[str]:
    """Labels whose latest snapshot becomes an image entity: the tracked labels if listed, else those the
    camera's zones and lines name, else the model's first class (``person`` for COCO models)."""
    if not cam.tracking.enabled:
        return []
    if cam.tracking.labels:
        return list(cam.tracking.labels)
    named = [label for region in (*cam.zones, *cam.lines) for label in (region.labels or [])]
    return list(dict.fromkeys(named)) or [names[min(names)]]


def discovery_messages(
    settings: Any, names: dict[int, str], model: str, prefix: str
) -> list[tuple[str, dict[str, Any]]]:
    """``(topic, config)`` for every entity of ``settings``; ``prefix``: ``<topic_prefix>/<device_id>``."""
    ha = settings.homeassistant.discovery_prefix
    node = object_id("edge_daemon", settings.device_id)
    device = {
        "identifiers": [node],
        "name": f"edge-daemon {settings.device_id}",
        "manufacturer": "edge-daemon",
        "model": model,
        "sw_version": __version__,
    }
    common = {
        "device": device,
        "origin": {"name": "edge-daemon", "sw_version": __version__},
        "availability_topic": f"{prefix}/status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "qos": 1,
    }
    out: list[tuple[str, dict[str, Any]]] = []

    def add(component: str, parts: tuple[str, ...], config: dict[str, Any]) -> None:
        oid = object_id(*parts)
        out.append(
            (f"{ha}/{component}/{node}/{oid}/config", {**config, "unique_id": f"{node}_{oid}", **common})
        )

    for cam in settings.cameras:
        c = cam.name
        add(
            "sensor",
            (c, "fps"),
            {
                "name": f"{c} fps",
                "state_topic": f"{prefix}/health",
                "value_template": f"{{{{ value_json.cameras['{c}'].fps | default(0) }}}}",
                "unit_of_measurement": "fps",
                "state_class": "measurement",
                "suggested_display_precision": 1,
                "entity_category": "diagnostic",
                "icon": "mdi:speedometer",
            },
        )
        add(
            "switch",
            (c, "detect"),
            {
                "name": f"{c} detection",
                "command_topic": f"{prefix}/{c}/detect/set",
                "state_topic": f"{prefix}/{c}/detect/state",
                "payload_on": "ON",
                "payload_off": "OFF",
                "state_on": "ON",
                "state_off": "OFF",
                "icon": "mdi:motion-sensor",
            },
        )
        add(
            "number",
            (c, "threshold"),
            {
                "name": f"{c} confidence threshold",
                "command_topic": f"{prefix}/{c}/threshold/set",
                "state_topic": f"{prefix}/{c}/threshold/state",
                "min": settings.detect.conf,
                "max": 1.0,
                "step": 0.01,
                "mode": "slider",
                "entity_category": "config",
            },
        )
        for label in snapshot_labels(cam, names):
            add(
                "image",
                (c, label, "snapshot"),
                {
                    "name": f"{c} {label} snapshot",
                    "image_topic": f"{prefix}/{c}/{topic_level(label)}/snapshot",
                    "content_type": "image/jpeg",
                },
            )
        for zone in cam.zones:
            for label in ["all", *(zone.labels or [])]:
                state = f"{prefix}/{c}/zones/{zone.name}/{topic_level(label)}"
                add(
                    "sensor",
                    (c, zone.name, label, "count"),
                    {
                        "name": f"{c} {zone.name} {label} count",
                        "state_topic": state,
                        "state_class": "measurement",
                        "icon": "mdi:counter",
                    },
                )
                add(
                    "binary_sensor",
                    (c, zone.name, label, "occupancy"),
                    {
                        "name": f"{c} {zone.name} {label} occupancy",
                        "state_topic": state,
                        "value_template": "{{ 'ON' if (value | int(0)) > 0 else 'OFF' }}",
                        "device_class": "occupancy",
                    },
                )
    return out


class Discovery:
    """Publishes the discovery configs through ``publisher`` and removes those no longer configured."""

    def __init__(self, settings: Any, names: dict[int, str], model: str, publisher: Any) -> None:
        ha = settings.homeassistant
        self.publisher = publisher
        prefix = publisher.topic("").rstrip("/")
        self.messages = [
            (topic, json.dumps(config).encode("utf-8"))
            for topic, config in discovery_messages(settings, names, model, prefix)
        ]
        self.state_file: Path = ha.state_file or (
            settings.model.cache_dir / "ha-discovery" / f"{settings.device_id}.json"
        )
        self.birth_topic = f"{ha.discovery_prefix}/status"
        publisher.subscribe(self.birth_topic, self._birth)

    def start(self) -> None:
        """Remove what the last run published and this one does not, then publish (retained, and again
        after every reconnect); remember what was published."""
        current = {topic for topic, _ in self.messages}
        stale = sorted(set(self._previous()) - current)
        for topic in stale:
            self.publisher.publish_retained(topic, b"")
        if stale:
            log.info("home assistant: removed %d entities no longer configured", len(stale))
        for topic, payload in self.messages:
            self.publisher.publish_retained(topic, payload)
        try:
            atomic_write(self.state_file, json.dumps(sorted(current), indent=1).encode("utf-8"))
        except OSError as exc:
            log.warning(
                "home assistant: cannot remember the discovery topics in %s: %s", self.state_file, exc
            )

    def _previous(self) -> list[str]:
        try:
            topics = json.loads(self.state_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as exc:
            log.warning("home assistant: ignoring %s (%s)", self.state_file, exc)
            return []
        return [t for t in topics if isinstance(t, str)] if isinstance(topics, list) else []

    def _birth(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() == b"online":
            for config_topic, config in self.messages:
                self.publisher.publish_retained(config_topic, config)
