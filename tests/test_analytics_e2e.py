"""Analytics end to end: real video decoded, the real model (YOLO-World v8s, ONNX Runtime), ByteTrack, and
every message through a real mosquitto.

- A synthetic clip whose truth is known (tests/helpers/sprites.py): two people walk known paths across a
  line and through a zone. Every expected event arrives, in order per object, and no other.
- The demo clip with a zone and a line: every detections and event message valid against its schema,
  occupancy and snapshots retained, snapshots on disk, fewer detections messages with ``on_change``.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

from edge_daemon.app import run_daemon
from edge_daemon.config import Settings
from edge_daemon.publish import events as event_schema
from edge_daemon.publish.payload import load_schema
from edge_daemon.types import Detections
from tests.conftest import Broker, subscribed
from tests.helpers import sprites
from tests.helpers.identities import checked_people, ids_along

DETECTIONS = jsonschema.Draft202012Validator(load_schema())
EVENTS = jsonschema.Draft202012Validator(event_schema.load_schema())


@pytest.fixture(autouse=True)
def _default_publishing(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests run the shipped default of ``publish.detections`` (conftest pins ``all`` for others)."""
    monkeypatch.delenv("EDGE_PUBLISH__DETECTIONS", raising=False)


@pytest.fixture(scope="module")
def sprite_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    ultralytics = pytest.importorskip("ultralytics")
    bus = Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
    return sprites.make_video(tmp_path_factory.mktemp("sprites") / "walks.avi", bus)


def _run(
    broker: Broker, device: str, data: dict[str, Any], on_result: Any = None
) -> tuple[Any, list[tuple[str, bytes, bool]]]:
    settings = Settings(
        device_id=device,
        mqtt={"host": "127.0.0.1", "port": broker.port, "connect_timeout_s": 5},
        log={"stats_interval_s": 1},
        **data,
    )
    with subscribed(broker, f"edge/{device}/#") as sub:
        stats = run_daemon(settings, threading.Event(), on_result=on_result)
        assert sub.wait_for(lambda msgs: msgs and msgs[-1][:2] == (f"edge/{device}/status", b"offline"), 30)
        return stats, list(sub.messages)


@pytest.mark.parametrize("motion", [False, True], ids=["every-frame", "motion-gated"])
def test_known_walks_give_exactly_the_expected_events(
    broker: Broker, sprite_clip: Path, world_onnx: Path, tmp_path: Path, motion: bool
) -> None:
    """With motion gating the still frames at the end are skipped (at least one inferred every 0.5 s, so
    the objects that left still end as lost) and the same events arrive."""
    camera = {
        "name": "yard",
        "type": "file",
        "path": str(sprite_clip),
        "drop_policy": "block",
        "tracking": {"lost_s": 1.0},
        "zones": [
            {
                "name": "bay",
                "polygon": sprites.ZONE,
                "labels": ["person"],
                "min_dwell_s": 0.5,
                "loiter_s": 2.0,
            }
        ],
        "lines": [{"name": "door", "points": sprites.LINE}],
        "motion": {"enabled": motion, "max_skip_s": 0.5},
    }
    device = "walks-gated" if motion else "walks"
    stats, messages = _run(
        broker,
        device,
        {"cameras": [camera], "model": {"path": str(world_onnx)}, "detect": {"classes": [0]}},
    )
    events = [json.loads(p) for t, p, _ in messages if t == f"edge/{device}/yard/events"]
    for e in events:
        EVENTS.validate(e)
    assert [e["seq"] for e in events] == list(range(len(events))), "event numbers without gaps"
    by_track: dict[int, list[tuple[Any, ...]]] = defaultdict(list)
    for e in events:
        if e["type"] != "update":
            by_track[e["object"]["track_id"]].append(
                (e["type"], e.get("zone") or e.get("line"), e.get("direction"))
            )
    # Which track is which: A is the one that entered the zone.
    assert len(by_track) == 2, f"two people, two tracks: {dict(by_track)}"
    a = next(t for t, ev in by_track.items() if ("zone_enter", "bay", None) in ev)
    b = next(t for t in by_track if t != a)
    assert by_track[a] == [
        ("new", None, None),
        ("line_cross", "door", "out"),  # left to right
        ("zone_enter", "bay", None),
        ("loiter", "bay", None),
        ("zone_exit", "bay", None),
        ("line_cross", "door", "in"),  # back, right to left
        ("end", None, None),
    ]
    assert by_track[b] == [("new", None, None), ("line_cross", "door", "in"), ("end", None, None)]
    ends = {e["object"]["track_id"]: e for e in events if e["type"] == "end"}
    assert {e["reason"] for e in ends.values()} == {"lost"}  # both walked off before the clip ended
    assert ends[a]["object"]["entered_zones"] == ["bay"] and ends[b]["object"]["entered_zones"] == []
    [loiter] = [e for e in events if e["type"] == "loiter"]
    assert loiter["dwell_s"] >= 2.0
    [exit_] = [e for e in events if e["type"] == "zone_exit"]
    # inside from about frame 26 (x >= 420) to frame 66 (x < 420): 4 s on the clip's own clock
    assert 3.5 <= exit_["dwell_s"] <= 4.5
    # Occupancy, retained: 0 -> 1 -> 0 for people in the bay, and the total.
    counts = [
        (t.rsplit("/", 1)[1], int(p))
        for t, p, _ in messages
        if t.startswith(f"edge/{device}/yard/zones/bay/")
    ]
    assert [n for label, n in counts if label == "person"] == [0, 1, 0]
    assert [n for label, n in counts if label == "all"] == [0, 1, 0]
    # Snapshots: the retained latest one is a JPEG, and each object's file is in the store.
    snaps = [p for t, p, _ in messages if t == f"edge/{device}/yard/person/snapshot"]
    assert snaps and cv2.imdecode(np.frombuffer(snaps[-1], np.uint8), cv2.IMREAD_COLOR) is not None
    store = tmp_path / "snapshots"  # conftest's EDGE_ANALYTICS__SNAPSHOTS__DIR
    for e in ends.values():
        assert (store / e["object"]["snapshot"]["file"]).is_file()
    # Detections messages carry the same track ids, and fewer of them went out than frames were inferred.
    detections = [json.loads(p) for t, p, _ in messages if t == f"edge/{device}/yard/detections"]
    ids = {d["track_id"] for m in detections for d in m["detections"] if "track_id" in d}
    assert ids == {a, b}
    assert len(detections) < sprites.FRAMES / 2
    health = [json.loads(p) for t, p, _ in messages if t == f"edge/{device}/health"][-1]
    skipped = health["cameras"]["yard"].get("motion_skipped", 0)
    assert stats.published + skipped == sprites.FRAMES
    assert (skipped > 0) == motion


def test_demo_clip_with_a_zone_and_a_line(broker: Broker, clip: Path, world_onnx: Path) -> None:
    camera = {
        "name": "cam0",
        "type": "file",
        "path": str(clip),
        "drop_policy": "block",
        "max_frames": 120,
        "zones": [
            {"name": "left", "units": "norm", "polygon": [[0, 0], [0.4, 0], [0.4, 1], [0, 1]], "loiter_s": 4}
        ],
        "lines": [{"name": "middle", "units": "norm", "points": [[0.5, 0], [0.5, 1]]}],
    }
    tracked: dict[int, Detections] = {}
    stats, messages = _run(
        broker,
        "democlip",
        {"cameras": [camera], "model": {"path": str(world_onnx)}},
        on_result=lambda frame, dets: tracked.__setitem__(frame.seq, dets),
    )
    events = [json.loads(p) for t, p, _ in messages if t.endswith("/events")]
    detections = [json.loads(p) for t, p, _ in messages if t.endswith("/detections")]
    for e in events:
        EVENTS.validate(e)
    for m in detections:
        DETECTIONS.validate(m)
    kinds = {e["type"] for e in events}
    assert {"new", "end", "zone_enter", "line_cross"} <= kinds
    news = {e["object"]["track_id"] for e in events if e["type"] == "new"}
    ended = {e["object"]["track_id"] for e in events if e["type"] == "end"}
    assert news == ended, "every object that began ended (lost, or at shutdown)"
    assert stats.events == len(events)
    assert 0 < len(detections) < stats.published == 120  # on_change held some back
    [health] = [json.loads(p) for t, p, r in messages if t == "edge/democlip/health"][-1:]
    assert health["cameras"]["cam0"]["events"] == len(events)
    assert health["cameras"]["cam0"]["detections_suppressed"] == 120 - len(detections)
    assert health["snapshots"]["written"] > 0 and health["snapshots"]["dropped"] == 0
    assert health["snapshots"]["skipped"] == 0
    zone_topics = {t for t, _, r in messages if "/zones/left/" in t and not r}
    assert {"edge/democlip/cam0/zones/left/all", "edge/democlip/cam0/zones/left/person"} <= zone_topics
    # Identity: four people checked by eye in frames 20-110 keep one id each (no switch), all different.
    ids = {person: ids_along(boxes, tracked) for person, boxes in checked_people().items()}
    assert all(None not in v for v in ids.values()), f"a checked box without a detection over it: {ids}"
    assert all(len(set(v)) == 1 and v[0] is not None and v[0] >= 0 for v in ids.values()), ids
    assert len({v[0] for v in ids.values()}) == len(ids)
