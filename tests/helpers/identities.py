"""The hand-checked identities of the demo clip (tests/data/vtest_identities.json) and the track id a run
gave each checked box: shared by the analytics end-to-end test and scripts/bench_analytics.py."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edge_daemon.types import Detections

TRUTH = Path(__file__).resolve().parents[1] / "data" / "vtest_identities.json"


def checked_people() -> dict[str, dict[str, list[float]]]:
    """person -> {frame number (as text): [x1, y1, x2, y2]} in frame pixels."""
    people: dict[str, dict[str, list[float]]] = json.loads(TRUTH.read_text())["people"]
    return people


def ids_along(boxes: dict[str, list[float]], tracked: dict[int, Detections]) -> list[int | None]:
    """Frame by frame, the track id of the detection over each checked box (IoU >= 0.5); None where no
    detection covers it."""
    out: list[int | None] = []
    for frame, box in boxes.items():
        dets = tracked[int(frame)]
        if dets.track_id is None:
            raise ValueError(f"frame {frame}: the detections carry no track ids")
        b = np.asarray(box, np.float32)
        lt = np.maximum(dets.xyxy[:, :2], b[:2])
        rb = np.minimum(dets.xyxy[:, 2:], b[2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        area = np.prod(dets.xyxy[:, 2:] - dets.xyxy[:, :2], axis=1)
        iou = inter / (area + np.prod(b[2:] - b[:2]) - inter)
        best = int(np.argmax(iou)) if len(iou) else -1
        out.append(int(dets.track_id[best]) if best >= 0 and iou[best] >= 0.5 else None)
    return out
