"""What one frame's results become on MQTT: its detections message (when ``publish.detections`` lets it
out), its events, and the retained state that changed (occupancy counts, snapshots). Topics are paths
under ``<prefix>/<device_id>/`` (the publisher adds those)."""

from __future__ import annotations

from edge_daemon.analytics import Outcome
from edge_daemon.analytics.camera import topic_level
from edge_daemon.publish.events import event_payload
from edge_daemon.publish.payload import ModelTag, build_payload, encode
from edge_daemon.types import Frame

Message = tuple[str, bytes]  # topic path, payload


class Messages:
    """Builds messages for one pipeline; event numbers count per camera, from 0, without gaps."""

    def __init__(self, device_id: str, run_id: str, names: dict[int, str], tag: ModelTag) -> None:
        self.device_id, self.run_id, self.names, self.tag = device_id, run_id, names, tag
        self.events_sent = 0
        self._event_seq: dict[str, int] = {}

    def detections(self, frame: Frame, out: Outcome, inference_ms: float, e2e_ms: float) -> Message:
        body = build_payload(
            self.device_id, self.run_id, frame, out.detections, self.names, self.tag, inference_ms, e2e_ms
        )
        return f"{frame.camera}/detections", encode(body)

    def events(self, camera: str, out: Outcome, frame_wh: tuple[int, int]) -> list[Message]:
        messages = []
        for event, snapshot in out.events:
            seq = self._event_seq.get(camera, 0)
            self._event_seq[camera] = seq + 1
            body = event_payload(self.device_id, self.run_id, camera, seq, event, snapshot, frame_wh)
            messages.append((f"{camera}/events", encode(body)))
        self.events_sent += len(messages)
        return messages

    @staticmethod
    def states(camera: str, out: Outcome) -> list[Message]:
        """Retained: ``<camera>/zones/<zone>/<label>`` counts as plain integers, then snapshots (JPEG)."""
        states = [
            (f"{camera}/zones/{zone}/{topic_level(label)}", str(n).encode())
            for zone, label, n in out.occupancy
        ]
        return states + list(out.snapshots)
