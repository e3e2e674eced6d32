"""The detections message: a versioned JSON document, described by ``schema/detections-v2.json``.

Topic: ``<prefix>/<device_id>/<camera>/detections``. Bump SCHEMA_VERSION on any change that is not a
pure addition of optional fields; consumers should check it.

Deduplication: ``seq`` restarts at 0 in every run of the daemon, so a message is identified by
``(device_id, camera, run, seq)``; ``run`` is a random id drawn once per start (:func:`new_run_id`).
Messages replayed from the outbox after a crash keep the run id they were made under.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import numpy as np

from edge_daemon.model.tasks.obb import corners
from edge_daemon.types import Detections, Frame

SCHEMA_ID = "edge-daemon/detections"
SCHEMA_VERSION = 2  # 2: per-task fields, run; v1's schema is kept beside it for reference


@dataclass(frozen=True, slots=True)
class ModelTag:
    """Identifies the model and how it runs, published with every message."""

    model_id: str
    precision: str
    backend: str
    input_hw: tuple[int, int]
    task: str = "detect"


def new_run_id() -> str:
    """A random id for this run of the daemon: 16 hex digits (64 bits)."""
    return secrets.token_hex(8)


def detections_topic(prefix: str, device_id: str, camera: str) -> str:
    return f"{prefix}/{device_id}/{camera}/detections"


def status_topic(prefix: str, device_id: str) -> str:
    return f"{prefix}/{device_id}/status"


def build_payload(
    device_id: str,
    run: str,
    frame: Frame,
    detections: Detections,
    names: dict[int, str],
    model: ModelTag,
    inference_ms: float,
    end_to_end_ms: float,
) -> dict[str, Any]:
    """The message for one frame. Boxes: pixels of the original frame and normalised to [0, 1]."""
    w, h = frame.width, frame.height
    items: list[dict[str, Any]] = []
    for (x1, y1, x2, y2), conf, cls in zip(
        detections.xyxy.tolist(), detections.confidence.tolist(), detections.class_id.tolist(), strict=True
    ):
        items.append(
            {
                "class_id": cls,
                "label": names.get(cls, str(cls)),
                "confidence": round(conf, 4),
                "box": box_dict((x1, y1, x2, y2)),
                "box_norm": box_dict((x1, y1, x2, y2), w, h),
            }
        )
    _task_fields(items, detections)
    if detections.track_id is not None:
        for item, tid in zip(items, detections.track_id.tolist(), strict=True):
            if tid >= 0:
                item["track_id"] = tid
    payload: dict[str, Any] = {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "device_id": device_id,
        "camera": frame.camera,
        "run": run,
        "seq": frame.seq,
        "captured_at": iso_time(frame.captured_at),
        "image": {"width": w, "height": h},
        "model": {
            "id": model.model_id,
            "precision": model.precision,
            "backend": model.backend,
            "task": model.task,
            "input": {"height": model.input_hw[0], "width": model.input_hw[1]},
        },
        "latency_ms": {"inference": round(inference_ms, 2), "end_to_end": round(end_to_end_ms, 2)},
        "detections": items,
    }
    if detections.top_class is not None and detections.top_confidence is not None:
        payload["classes"] = [
            {"class_id": c, "label": names.get(c, str(c)), "confidence": round(p, 4)}
            for c, p in zip(detections.top_class.tolist(), detections.top_confidence.tolist(), strict=True)
        ]
    return payload


def _task_fields(items: list[dict[str, Any]], detections: Detections) -> None:
    """Each detection's per-task fields: pose keypoints (x, y to 0.1 px, visibility to 3 decimals), mask
    polygons (0.1 px), oriented boxes (0.1 px, the angle to 4 decimals, with their corners)."""
    if detections.keypoints is not None:
        kpts = np.round(detections.keypoints, 3)
        kpts[..., :2] = np.round(kpts[..., :2], 1)
        for item, points in zip(items, kpts.tolist(), strict=True):
            item["keypoints"] = points
    if detections.polygons is not None:
        for item, outlines in zip(items, detections.polygons, strict=True):
            item["polygons"] = [np.round(p, 1).tolist() for p in outlines]
    if detections.obb is not None:
        pts = np.round(corners(detections.obb), 1).tolist()
        for item, (cx, cy, w, h, angle), quad in zip(items, detections.obb.tolist(), pts, strict=True):
            item["obb"] = {
                "cx": round(cx, 1),
                "cy": round(cy, 1),
                "w": round(w, 1),
                "h": round(h, 1),
                "angle": round(angle, 4),
                "corners": quad,
            }


def box_dict(
    box: tuple[float, float, float, float], w: float | None = None, h: float | None = None
) -> dict[str, float]:
    """Corners as published: frame pixels to 0.1 px, or, given the frame size, normalised to 5 decimals."""
    if w is None or h is None:
        return {
            "x1": round(box[0], 1),
            "y1": round(box[1], 1),
            "x2": round(box[2], 1),
            "y2": round(box[3], 1),
        }
    return {
        "x1": round(box[0] / w, 5),
        "y1": round(box[1] / h, 5),
        "x2": round(box[2] / w, 5),
        "y2": round(box[3] / h, 5),
    }


def iso_time(ts: float) -> str:
    """Unix seconds as published: ISO 8601 UTC with milliseconds."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds")


def encode(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the detections message."""
    return packaged_schema(f"detections-v{SCHEMA_VERSION}.json")


def packaged_schema(name: str) -> dict[str, Any]:
    """A JSON Schema shipped in ``edge_daemon/publish/schema/``."""
    text = resources.files("edge_daemon.publish").joinpath(f"schema/{name}").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema
