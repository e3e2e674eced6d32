"""What can be switched while the daemon runs, per camera: detection on or off, and the confidence below
which detections are not published. Set from MQTT (:mod:`edge_daemon.publish.control`), read by the
pipeline on every frame (plain attribute reads: no lock on the hot path) and shown by the status page.

Not persisted: a restart starts from the configuration (detection on, ``detect.conf``), and the retained
``…/state`` topics say so again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass
class CameraControl:
    detect: bool = True
    threshold: float = 0.25
    skipped: int = 0  # frames captured while detection was off (not inferred)


class Controls:
    """Per camera :class:`CameraControl`; ``floor``: the decoder's own threshold (``detect.conf``), the
    lowest a threshold can be set to (detections below it were never decoded)."""

    def __init__(self, cameras: Iterable[str], floor: float) -> None:
        self.floor = floor
        self.cameras = {name: CameraControl(True, floor) for name in cameras}
        self._listeners: list[Callable[[str], None]] = []

    def on_change(self, listener: Callable[[str], None]) -> None:
        """``listener(camera)`` after every change (the MQTT state echo)."""
        self._listeners.append(listener)

    def set_detect(self, camera: str, on: bool) -> None:
        self.cameras[camera].detect = on
        self._changed(camera)

    def set_threshold(self, camera: str, value: float) -> None:
        if not self.floor <= value <= 1.0:
            raise ValueError(f"threshold must be between detect.conf ({self.floor:g}) and 1, got {value:g}")
        self.cameras[camera].threshold = value
        self._changed(camera)

    def _changed(self, camera: str) -> None:
        for listener in self._listeners:
            listener(camera)
