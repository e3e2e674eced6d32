"""The event message: one JSON document per thing that happened to a tracked object, described by
``schema/events-v1.json``; and the topics of the analytics (events, occupancy, snapshots).

Topics, under ``<prefix>/<device_id>/``:

- ``<camera>/events``: events, through the disk outbox like detections (nothing lost), not retained;
- ``<camera>/zones/<zone>/<label>``: retained occupancy, the number of tracked objects of that label in the
  zone now (``all``: every label), as a plain integer;
- ``<camera>/<label>/snapshot``: retained JPEG, the latest snapshot of an object of that label.
"""

from __future__ import annotations

from typing import Any

from edge_daemon.analytics import Event, SnapshotRef
from edge_daemon.publish.payload import box_dict, iso_time, packaged_schema

SCHEMA_ID = "edge-daemon/events"
SCHEMA_VERSION = 1


def event_payload(
    device_id: str,
    run: str,
    camera: str,
    seq: int,
    event: Event,
    snapshot: SnapshotRef | None,
    frame_wh: tuple[int, int],
) -> dict[str, Any]:
    obj = event.object
    w, h = frame_wh
    body: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "camera": camera,
        "run": run,
        "seq": seq,
        "type": event.type,
        "at": iso_time(event.at),
        "frame_seq": event.seq,
    }
    for key in ("zone", "line", "direction", "reason"):
        value = getattr(event, key)
        if value is not None:
            body[key] = value
    if event.dwell_s is not None:
        body["dwell_s"] = round(max(0.0, event.dwell_s), 3)
    body["object"] = {
        "track_id": obj.track_id,
        "label": obj.label,
        "class_id": obj.class_id,
        "confidence": round(obj.confidence, 4),
        "max_confidence": round(obj.max_confidence, 4),
        "box": box_dict(obj.box),
        "box_norm": box_dict(obj.box, w, h),
        "first_seen": iso_time(obj.first_at),
        "last_seen": iso_time(obj.last_at),
        "frames": obj.frames,
        "zones": list(obj.zones),
        "entered_zones": list(obj.entered),
        "snapshot": None
        if snapshot is None
        else {
            "file": snapshot.file,
            "topic": snapshot.topic,
            "frame_seq": snapshot.seq,
            "captured_at": iso_time(snapshot.captured_at),
            "confidence": round(snapshot.confidence, 4),
            "box": box_dict(snapshot.box),
        },
    }
    return body


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the event message."""
    return packaged_schema(f"events-v{SCHEMA_VERSION}.json")
