"""What the pipeline needs from a publisher, and a publisher that only counts (benchmarks, reports)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Publisher(Protocol):
    """What the pipeline needs from a publisher."""

    info: dict[str, Any] | None

    def start(self) -> None: ...

    def publish_detections(self, camera: str, payload: bytes) -> None: ...

    def publish_detections_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """``(camera, payload)`` messages of one batch, in order."""
        ...

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        """``(path, payload)`` messages, in order, each on ``<prefix>/<device_id>/<path>`` (``cam0/events``),
        delivered like detections (the disk outbox: nothing lost)."""
        ...

    def publish_state(self, path: str, payload: bytes) -> None:
        """Retained state on ``<prefix>/<device_id>/<path>``: the latest value wins, and it is sent again
        after every reconnect (occupancy counts, snapshots)."""
        ...

    def publish_health(self, health: dict[str, Any]) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...


class NullPublisher:
    """Accepts payloads and counts them; used by ``edge-daemon bench --no-mqtt``."""

    def __init__(self) -> None:
        self.info: dict[str, Any] | None = None
        self.messages = 0
        self.bytes = 0
        self.states: dict[str, bytes] = {}

    def start(self) -> None:
        return None

    def publish_detections(self, camera: str, payload: bytes) -> None:
        self.messages += 1
        self.bytes += len(payload)

    def publish_detections_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for camera, payload in messages:
            self.publish_detections(camera, payload)

    def publish_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for path, payload in messages:
            self.publish_detections(path, payload)

    def publish_state(self, path: str, payload: bytes) -> None:
        self.states[path] = payload

    def publish_health(self, health: dict[str, Any]) -> None:
        return None

    def close(self, timeout: float = 5.0) -> None:
        return None
