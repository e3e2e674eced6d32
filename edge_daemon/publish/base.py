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

    def publish_health(self, health: dict[str, Any]) -> None: ...

    def close(self, timeout: float = 5.0) -> None: ...


class NullPublisher:
    """Accepts payloads and counts them; used by ``edge-daemon bench --no-mqtt``."""

    def __init__(self) -> None:
        self.info: dict[str, Any] | None = None
        self.messages = 0
        self.bytes = 0

    def start(self) -> None:
        return None

    def publish_detections(self, camera: str, payload: bytes) -> None:
        self.messages += 1
        self.bytes += len(payload)

    def publish_detections_many(self, messages: Sequence[tuple[str, bytes]]) -> None:
        for camera, payload in messages:
            self.publish_detections(camera, payload)

    def publish_health(self, health: dict[str, Any]) -> None:
        return None

    def close(self, timeout: float = 5.0) -> None:
        return None
