"""MQTT control, Frigate's way: per camera, switch detection on and off and set the confidence threshold.

Topics, under the daemon's own prefix only (``<prefix>/<device_id>/<camera>/…``):

- ``detect/set``: ``ON`` or ``OFF`` (case-insensitive); echoed, retained, on ``detect/state``;
- ``threshold/set``: a number between ``detect.conf`` and 1; echoed, retained, on ``threshold/state``.

A bad payload (another word, not a number, out of range, too long) is ignored with one log line naming
the topic; nothing changes. The state topics are published at start, so a dashboard sees the truth
before anyone switches anything.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from edge_daemon.controls import Controls

log = logging.getLogger(__name__)

MAX_PAYLOAD = 64  # a command is a word or a number; anything longer is not one


class MqttControl:
    """Subscribes ``publisher`` to every camera's ``…/set`` topics; applies what arrives to ``controls``."""

    def __init__(self, controls: Controls, publisher: Any) -> None:
        self.controls, self.publisher = controls, publisher
        self.ignored = 0
        self._routes: dict[str, tuple[str, str]] = {}
        for camera in controls.cameras:
            for what in ("detect", "threshold"):
                topic = publisher.topic(f"{camera}/{what}/set")
                self._routes[topic] = (camera, what)
                publisher.subscribe(topic, self.handle)
        controls.on_change(self.echo)

    def echo_all(self) -> None:
        for camera in self.controls.cameras:
            self.echo(camera)

    def echo(self, camera: str) -> None:
        control = self.controls.cameras[camera]
        self.publisher.publish_state(f"{camera}/detect/state", b"ON" if control.detect else b"OFF")
        self.publisher.publish_state(f"{camera}/threshold/state", f"{control.threshold:g}".encode())

    def handle(self, topic: str, payload: bytes) -> None:
        camera, what = self._routes[topic]
        try:
            if len(payload) > MAX_PAYLOAD:
                raise ValueError(f"{len(payload)} bytes, a command is at most {MAX_PAYLOAD}")
            text = payload.decode("utf-8").strip()
            if what == "detect":
                word = text.upper()
                if word not in ("ON", "OFF"):
                    raise ValueError(f"{text!r} is neither ON nor OFF")
                self.controls.set_detect(camera, word == "ON")
                log.info("camera %s: detection %s (over MQTT)", camera, word.lower())
            else:
                value = float(text)
                if not math.isfinite(value):
                    raise ValueError(f"{text!r} is not a finite number")
                self.controls.set_threshold(camera, value)
                log.info("camera %s: confidence threshold %g (over MQTT)", camera, value)
        except (ValueError, UnicodeDecodeError) as exc:
            self.ignored += 1
            log.warning("mqtt control: ignored the message on %s: %s", topic, exc)
