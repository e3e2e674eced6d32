"""Analytics logic on synthetic detection sequences whose events are known exactly (pure, table-driven):
zones, lines, loitering and object lifecycles (the scene); ByteTrack through Roboflow's trackers; which
detections messages go out; motion gating; the snapshot store's bounds; the config's checks; every
event type as JSON valid against its schema."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest
from pydantic import ValidationError

from edge_daemon.analytics import CameraAnalyzer, MotionGate, Scene, Seen, SnapshotStore
from edge_daemon.analytics.firehose import ChangeFilter
from edge_daemon.analytics.geometry import Line, Zone
from edge_daemon.analytics.snapshots import render
from edge_daemon.analytics.tracker import Tracker
from edge_daemon.config import (
    AnalyticsConfig,
    CameraAnalytics,
    LineConfig,
    MotionConfig,
    PublishConfig,
    Settings,
    TrackingConfig,
    ZoneConfig,
)
from edge_daemon.errors import ConfigError
from edge_daemon.publish.events import event_payload, load_schema
from edge_daemon.types import Detections, Frame

W, H = 640, 480
NAMES = {0: "person", 2: "car"}
# A zone on the left half (its right edge at x = 320) and a vertical line at x = 480 from top to bottom.
ZONE = ZoneConfig(
    name="left", polygon=[(0, 0), (320, 0), (320, 480), (0, 480)], min_dwell_s=1.0, loiter_s=5.0
)
LINE = LineConfig(name="gate", points=((480, 0), (480, 400)))


def box_at(x: float, y: float = 300, w: float = 40, h: float = 100) -> tuple[float, float, float, float]:
    """A box whose bottom centre (the default anchor) is at (x, y)."""
    return (x - w / 2, y - h, x + w / 2, y)


def scene(zones: list[ZoneConfig] | None = None, lines: list[LineConfig] | None = None, **kw: Any) -> Scene:
    return Scene(
        [Zone.from_config(z, W, H) for z in (zones if zones is not None else [ZONE])],
        [Line.from_config(ln, W, H) for ln in (lines if lines is not None else [LINE])],
        lost_s=kw.get("lost_s", 1.0),
        update_interval_s=kw.get("update_interval_s", 1000.0),
        update_move=kw.get("update_move", 10.0),
        names=NAMES,
    )


def run(sc: Scene, frames: list[tuple[float, list[Seen]]], finish: bool = False) -> list[tuple[Any, ...]]:
    """Feed frames (t, objects) at 10 fps numbering; the events as (type, track, t, zone/line, extra)."""
    out = []
    for i, (t, seen) in enumerate(frames):
        for e in sc.step(t, 1_700_000_000 + t, i, seen, (W, H)):
            out.append(_key(e))
    if finish:
        t = frames[-1][0]
        out += [_key(e) for e in sc.finish(t, 1_700_000_000 + t, len(frames) - 1)]
    return out


def _key(e: Any) -> tuple[Any, ...]:
    where = e.zone or e.line
    extra = e.direction or e.reason or (round(e.dwell_s, 2) if e.dwell_s is not None else None)
    return (e.type, e.object.track_id, round(e.t, 2), where, extra)


def walk(track: int, xs: Sequence[float], t0: float = 0.0, dt: float = 0.1, cls: int = 0) -> list[list[Seen]]:
    return [[Seen(track, cls, NAMES[cls], 0.9, box_at(x))] for x in xs]


def frames_of(*tracks: list[list[Seen]], dt: float = 0.1) -> list[tuple[float, list[Seen]]]:
    n = max(len(t) for t in tracks)
    return [(round(i * dt, 3), [s for t in tracks if i < len(t) for s in t[i]]) for i in range(n)]


# ------------------------------------------------------------------------------------- the scene, tables

CASES: list[tuple[str, list[tuple[float, list[Seen]]], bool, list[tuple[Any, ...]]]] = [
    (
        "appears, stays 0.3 s outside every region, lost 1 s later",
        frames_of(walk(1, [400, 401, 402, 403]), [[]] * 15),
        False,
        # last seen at 0.3; the end is decided on the first frame more than lost_s later (t = 1.4)
        [("new", 1, 0.0, None, None), ("end", 1, 1.4, None, "lost")],
    ),
    (
        "walks into the zone and stays: entered once inside for min_dwell_s, exits at shutdown",
        frames_of(walk(1, [400, 360, 330, 300, 290, *[280] * 12])),
        True,
        # inside from t = 0.3 (x = 300); confirmed at t = 1.3
        [
            ("new", 1, 0.0, None, None),
            ("zone_enter", 1, 1.3, "left", None),
            ("zone_exit", 1, 1.6, "left", "shutdown"),
            ("end", 1, 1.6, None, "shutdown"),
        ],
    ),
    (
        "jitters across the zone border faster than min_dwell_s: nothing",
        frames_of(walk(1, [310, 330] * 15)),
        False,
        [("new", 1, 0.0, None, None)],
    ),
    (
        "loiters: one loiter event loiter_s after it stepped in, and its dwell on leaving",
        frames_of(walk(1, [100] * 70 + [400] * 12)),
        False,
        [
            ("new", 1, 0.0, None, None),
            ("zone_enter", 1, 1.0, "left", None),  # inside since t = 0, for min_dwell_s
            ("loiter", 1, 5.0, "left", 5.0),
            ("zone_exit", 1, 8.0, "left", 7.0),  # outside from t = 7.0, confirmed 1 s later
        ],
    ),
    (
        "crosses the line left to right (out), then back (in)",
        frames_of(walk(1, [440, 460, 475, 490, 520, 520, 470, 440])),
        False,
        # line from (480, 0) to (480, 400): looking from A down the image, its right is x < 480
        [
            ("new", 1, 0.0, None, None),
            ("line_cross", 1, 0.3, "gate", "out"),
            ("line_cross", 1, 0.6, "gate", "in"),
        ],
    ),
    (
        "wobbles on the line within the hysteresis: no crossing",
        frames_of(walk(1, [470, 478, 482, 478, 483, 477, 470])),
        False,
        [("new", 1, 0.0, None, None)],
    ),
    (
        "passes beyond the end of the line segment: no crossing",
        [(i / 10, [Seen(1, 0, "person", 0.9, box_at(x, y=450))]) for i, x in enumerate([440, 470, 500, 530])],
        False,
        [("new", 1, 0.0, None, None)],
    ),
    (
        "a car in a zone that counts only people, crossing a line for cars only",
        frames_of(walk(7, [100] * 15 + [470, 490], cls=2)),
        False,
        [("new", 7, 0.0, None, None), ("line_cross", 7, 1.6, "cars", "out")],
    ),
    (
        "two objects: one in the zone, one crossing; each its own events",
        frames_of(walk(1, [200] * 12), walk(2, [450, 470, 490, 510])),
        True,
        [
            ("new", 1, 0.0, None, None),
            ("new", 2, 0.0, None, None),
            ("line_cross", 2, 0.2, "gate", "out"),
            ("zone_enter", 1, 1.0, "left", None),
            ("zone_exit", 1, 1.1, "left", "shutdown"),
            ("end", 1, 1.1, None, "shutdown"),
            ("end", 2, 1.1, None, "shutdown"),
        ],
    ),
]


@pytest.mark.parametrize(("frames", "finish", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_scene_events(
    frames: list[tuple[float, list[Seen]]], finish: bool, expected: list[tuple[Any, ...]]
) -> None:
    people_zone = ZONE.model_copy(update={"labels": ["person"]})
    car_line = LineConfig(name="cars", points=((480, 0), (480, 400)), labels=["car"])
    lines = [LINE.model_copy(update={"labels": ["person"]}), car_line]
    got = run(scene([people_zone], lines), frames, finish)
    assert got == expected


def test_occupancy_counts_per_label_and_all() -> None:
    zone = ZONE.model_copy(update={"min_dwell_s": 0.0, "labels": ["person", "car"]})
    sc = scene([zone], [])
    assert sorted(sc.occupancy_changes()) == [("left", "all", 0), ("left", "car", 0), ("left", "person", 0)]
    sc.step(
        0.0, 0.0, 0, [Seen(1, 0, "person", 0.9, box_at(100)), Seen(2, 0, "person", 0.9, box_at(200))], (W, H)
    )
    assert sorted(sc.occupancy_changes()) == [("left", "all", 2), ("left", "person", 2)]
    sc.step(
        0.1, 0.1, 1, [Seen(3, 2, "car", 0.9, box_at(150)), Seen(1, 0, "person", 0.9, box_at(600))], (W, H)
    )
    assert sorted(sc.occupancy_changes()) == [("left", "car", 1), ("left", "person", 1)]  # all: 2 still
    assert sc.occupancy_changes() == []  # nothing changed: nothing to publish
    sc.finish(0.2, 0.2, 2)
    assert sorted(sc.occupancy_changes()) == [("left", "all", 0), ("left", "car", 0), ("left", "person", 0)]


def test_update_on_relabel_on_pace_and_on_move() -> None:
    sc = scene([], [], update_interval_s=1.0, update_move=0.05)  # 5 % of the 800 px diagonal: 40 px
    still = [
        e.type
        for i in range(30)
        for e in sc.step(i / 10, 0, i, [Seen(1, 0, "person", 0.5, box_at(100))], (W, H))
    ]
    assert still == ["new"]  # still, confidence flat: no update however long
    # seen as a car at 0.8: a better snapshot, an update as soon as paced (3 s after new); relabelled once
    # the car's summed confidence passes the person's 30 x 0.5 = 15 (19 x 0.8 = 15.2, at t = 4.8): at once
    ev = [
        (e.type, round(e.t, 1), e.object.label)
        for i in range(30, 50)
        for e in sc.step(i / 10, 0, i, [Seen(1, 2, "car", 0.8, box_at(100))], (W, H))
    ]
    assert ev == [("update", 3.0, "person"), ("update", 4.8, "car")]
    # moved 50 px: an update, but not within update_interval_s of the last one
    car = Seen(1, 2, "car", 0.8, box_at(150))
    assert [(e.type, round(e.t, 1)) for e in sc.step(5.0, 0, 50, [car], (W, H))] == []
    assert [(e.type, round(e.t, 1)) for e in sc.step(6.0, 0, 60, [car], (W, H))] == [("update", 6.0)]
    moved = Seen(1, 2, "car", 0.8, box_at(250))
    assert [e.type for e in sc.step(6.1, 0, 61, [moved], (W, H))] == []  # paced: 0.1 s since the last


def test_norm_units_scale_to_the_frame() -> None:
    zone = Zone.from_config(
        ZoneConfig(name="z", units="norm", polygon=[(0, 0), (0.5, 0), (0.5, 1), (0, 1)]), W, H
    )
    inside = zone.contains(np.asarray([[100.0, 100.0], [319.0, 479.0], [321.0, 10.0], [639.0, 1.0]]))
    assert inside.tolist() == [True, True, False, False]
    line = Line.from_config(LineConfig(name="l", units="norm", points=((0.5, 0), (0.5, 1))), W, H)
    assert (line.a, line.b) == ((320.0, 0.0), (320.0, 480.0))
    assert line.hysteresis == pytest.approx(4.0)  # 0.005 of the 800 px diagonal


# ---------------------------------------------------------------------------------------------- config


def _cam(**analytics: Any) -> dict[str, Any]:
    return {"type": "v4l2", "device": 0, "width": W, "height": H, **analytics}


@pytest.mark.parametrize(
    ("camera", "message"),
    [
        (
            _cam(zones=[{"name": "bow", "polygon": [[0, 0], [100, 100], [100, 0], [0, 60]]}]),
            "zone bow: the polygon is self-intersecting",
        ),
        (
            _cam(zones=[{"name": "flat", "polygon": [[0, 0], [50, 50], [100, 100]]}]),
            "zone flat: the polygon has no area",
        ),
        (
            _cam(zones=[{"name": "far", "polygon": [[0, 0], [700, 0], [10, 10]]}]),
            "zone far: point (700, 0) is off the 640x480 frame",
        ),
        (
            _cam(zones=[{"name": "n", "units": "norm", "polygon": [[0, 0], [1.2, 0], [0, 1]]}]),
            "n: point (1.2, 0) is off the frame",
        ),
        (_cam(lines=[{"name": "dot", "points": [[5, 5], [5, 5]]}]), "line dot: its two points are the same"),
        (
            _cam(lines=[{"name": "far", "points": [[0, 0], [10, 500]]}]),
            "line far: point (10, 500) is off the 640x480 frame",
        ),
        (
            _cam(
                zones=[
                    {"name": "a", "polygon": [[0, 0], [9, 0], [0, 9]]},
                    {"name": "a", "polygon": [[0, 0], [9, 0], [0, 9]]},
                ]
            ),
            "zone names must be unique per camera, repeated: a",
        ),
        (
            _cam(tracking={"enabled": False}, lines=[{"name": "l", "points": [[0, 0], [9, 9]]}]),
            "need tracking.enabled: true",
        ),
        (
            _cam(motion={"enabled": True, "mask": [[[0, 0], [9, 9], [9, 0], [0, 9]]]}),
            "motion mask 0: the polygon has no area",
        ),
        (
            _cam(zones=[{"name": "z", "polygon": [[0, 0], [9, 0], [0, 9]], "min_dwell_s": -1}]),
            "greater than or equal to 0",
        ),
    ],
    ids=[
        "self-intersecting",
        "no-area",
        "off-frame",
        "norm-above-1",
        "line-point",
        "line-off-frame",
        "duplicate",
        "no-tracking",
        "mask",
        "dwell",
    ],
)
def test_bad_regions_are_config_errors_naming_them(
    camera: dict[str, Any], message: str, tmp_path: Path
) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    with pytest.raises(ValidationError) as err:
        Settings(cameras=[camera], model={"path": str(model)})
    assert message in str(err.value)


def test_pixel_zone_off_a_frame_known_only_at_run_time_stops_the_camera(tmp_path: Path) -> None:
    cfg = CameraAnalytics(zones=[ZoneConfig(name="door", polygon=[(0, 0), (900, 0), (0, 300)])])
    analyzer = CameraAnalyzer("cam0", "0" * 16, cfg, AnalyticsConfig(), PublishConfig(), NAMES, None)
    frame = Frame("cam0", 0, np.zeros((H, W, 3), np.uint8), 0.0, 0.0)
    with pytest.raises(
        ConfigError, match="camera cam0: zone door: point \\(900, 0\\) is off the 640x480 frame"
    ):
        analyzer.process(frame, Detections.empty(), 0.0)


# --------------------------------------------------------------------------------------------- tracker


def dets(*rows: tuple[tuple[float, float, float, float], float, int]) -> Detections:
    return Detections(
        xyxy=np.asarray([r[0] for r in rows], np.float32).reshape(-1, 4),
        confidence=np.asarray([r[1] for r in rows], np.float32),
        class_id=np.asarray([r[2] for r in rows], np.int32),
    )


def test_bytetrack_keeps_ids_through_crossing_paths_and_short_gaps() -> None:
    tracker = Tracker(TrackingConfig(min_frames=2, lost_s=1.0), NAMES)
    ids_a, ids_b = [], []
    for i in range(40):
        a = box_at(100 + 10 * i, y=200)  # left to right
        b = box_at(500 - 10 * i, y=420)  # right to left, below: their paths cross at x = 300
        if 20 <= i < 25:  # b hidden for 0.5 s: it must come back under its id
            ids = tracker.update(dets((a, 0.9, 0)), i / 10)
            ids_a.append(int(ids[0]))
            continue
        ids = tracker.update(dets((a, 0.9, 0), (b, 0.8, 0)), i / 10)
        ids_a.append(int(ids[0]))
        ids_b.append(int(ids[1]))
    assert ids_a[0] == ids_b[0] == -1  # not confirmed on the first frame (min_frames 2)
    assert len(set(ids_a[1:])) == 1 and len(set(ids_b[1:])) == 1 and ids_a[1] != ids_b[1]


def test_tracker_ends_a_track_after_lost_s_and_tracks_only_its_labels() -> None:
    tracker = Tracker(TrackingConfig(min_frames=1, lost_s=0.5, labels=["person"]), NAMES)
    tracker.update(dets((box_at(100), 0.9, 0), (box_at(400), 0.9, 2)), 0.0)  # a track starts: no id yet
    first = tracker.update(dets((box_at(100), 0.9, 0), (box_at(400), 0.9, 2)), 0.1)
    assert first[0] >= 0 and first[1] == -1  # the car is not tracked
    assert tracker.update(dets(), 0.3).shape == (0,)
    tracker.update(dets((box_at(100), 0.9, 0)), 1.2)  # unseen 1.1 s > lost_s: a new object
    back = tracker.update(dets((box_at(100), 0.9, 0)), 1.3)
    assert back[0] >= 0 and back[0] != first[0]
    tracker.forget([int(back[0])])  # the scene ended it: the same box is a new object
    again = tracker.update(dets((box_at(100), 0.9, 0)), 1.4)
    assert again[0] == -1
    assert tracker.update(dets((box_at(100), 0.9, 0)), 1.5)[0] not in (-1, back[0])


# ---------------------------------------------------------------------------------------- the firehose


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("all", [True] * 6), ("off", [False] * 6), ("on_change", [True, False, True, True, False, True])],
)
def test_which_detections_messages_go_out(mode: str, expected: list[bool]) -> None:
    f = ChangeFilter(PublishConfig(detections=mode, on_change={"move": 0.05, "heartbeat_s": 2.0}))  # type: ignore[arg-type]
    tracked = [
        (0.0, [(1, 100)]),  # first frame
        (0.1, [(1, 110)]),  # moved 10 px < 40 px: same
        (0.2, [(1, 110), (2, 300)]),  # a new object
        (0.3, [(1, 160), (2, 300)]),  # moved 50 px
        (0.4, [(1, 160), (2, 301)]),  # nothing
        (2.4, [(1, 160), (2, 301)]),  # heartbeat
    ]
    got = []
    for t, objs in tracked:
        d = dets(*((box_at(x), 0.9, 0) for _, x in objs))
        d = Detections(d.xyxy, d.confidence, d.class_id, track_id=np.asarray([i for i, _ in objs], np.int32))
        got.append(f.due(t, d, (W, H)))
    assert got == expected


# ----------------------------------------------------------------------------------------------- motion


def test_motion_gate_skips_still_frames_and_masked_motion() -> None:
    gate = MotionGate(
        MotionConfig(enabled=True, max_skip_s=2.0, mask=[[(0, 0), (200, 0), (200, 200), (0, 200)]])
    )
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (H, W, 3), dtype=np.uint8)
    background = np.asarray(cv2.GaussianBlur(background, (31, 31), 0), np.uint8)

    def frame(square_x: int | None) -> np.ndarray:
        img = background.copy()
        if square_x is not None:
            cv2.rectangle(img, (square_x, 300), (square_x + 60, 360), (255, 255, 255), -1)
        return img

    seq = [
        (0.0, frame(None), True),  # the first frame is always inferred
        (0.1, frame(None), False),  # still
        (0.2, background.copy(), False),
        (0.3, frame(300), True),  # a square appeared
        (0.4, frame(300), False),  # and stays
        (0.5, frame(340), True),  # it moved
        (2.6, frame(340), True),  # max_skip_s since the last inferred frame
    ]
    assert [gate.moving(img, t) for t, img, _ in seq] == [want for _, _, want in seq]
    masked = frame(340)
    cv2.rectangle(masked, (20, 20), (150, 150), (255, 255, 255), -1)  # inside the mask
    assert gate.moving(masked, 2.7) is False
    assert gate.skipped == 4 and gate.passed == 4
    assert gate.still_s == pytest.approx(0.4)  # the four skipped frames' 0.1 s each: the tracker skips them


# -------------------------------------------------------------------------------------------- snapshots


def test_snapshot_store_bounds_size_and_age_and_counts_every_drop(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path / "snaps", max_bytes=1024 * 1024, max_age_s=3600)
    blob = b"x" * 300_000
    for i in range(5):
        assert store.save("cam0", f"run-{i}", blob) == f"cam0/run-{i}.jpg"
    files = sorted(p.name for p in (tmp_path / "snaps" / "cam0").iterdir())
    assert files == ["run-2.jpg", "run-3.jpg", "run-4.jpg"]  # 3 x 300 kB fit in 1 MiB; the oldest went
    assert store.dropped == 2 and store.size == 900_000
    store.save("cam0", "run-3", b"y" * 10)  # rewriting a file replaces its size
    assert store.size == 600_010
    old = tmp_path / "snaps" / "cam0" / "run-2.jpg"
    stamp = old.stat().st_mtime - 7200
    import os

    os.utime(old, (stamp, stamp))
    reopened = SnapshotStore(tmp_path / "snaps", max_bytes=1024 * 1024, max_age_s=3600)
    assert not old.exists() and reopened.dropped == 1  # older than max_age_s at start


def test_snapshot_store_counts_write_errors_and_goes_on(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SnapshotStore(blocker, max_bytes=1024 * 1024, max_age_s=3600)
    assert store.save("cam0", "x", b"jpeg") is None and store.write_errors == 1


@pytest.mark.parametrize("nv12", [False, True])
def test_render_draws_the_box_and_scales_down(nv12: bool) -> None:
    """From BGR, or from an NV12 picture (hardware decode), scaled before it is converted."""
    from edge_daemon.colour import Colour
    from edge_daemon.types import Nv12Picture

    image: Any = np.zeros((960, 1920, 3), np.uint8)
    if nv12:  # black in limited range: Y 16, chroma 128
        planes = np.concatenate([np.full((960, 1920), 16, np.uint8), np.full((480, 1920), 128, np.uint8)])
        image = Nv12Picture(1920, 960, Colour("bt709"), host=planes)
    jpeg = render(image, (400, 300, 800, 700), "person #3 0.91", max_width=960, quality=90)
    out = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert out is not None
    assert out.shape == (480, 960, 3)
    assert out[275:325, 199:201, 1].mean() > 120  # the box's left edge (green) at x = 200 after scaling
    assert out[400:420, 500:520].mean() < 10  # inside the box: untouched


# -------------------------------------------------------------------------------------- events as JSON


def test_every_event_type_is_valid_json_against_the_schema(tmp_path: Path) -> None:
    schema = load_schema()
    zone = ZONE.model_copy(update={"min_dwell_s": 0.0, "loiter_s": 0.3})
    cfg = CameraAnalytics(zones=[zone], lines=[LINE], tracking=TrackingConfig(min_frames=1))
    store = SnapshotStore(tmp_path, 10 * 1024 * 1024, 3600)
    pacing = AnalyticsConfig(update_interval_s=0.5)
    analyzer = CameraAnalyzer("cam0", "ab" * 8, cfg, pacing, PublishConfig(), NAMES, store)
    kinds: set[str] = set()
    path = [*([150] * 6), *range(175, 550, 25)]  # 25 px a frame: the tracker follows it
    for i, x in enumerate(path):
        frame = Frame("cam0", i, np.full((H, W, 3), 90, np.uint8), 1_700_000_000 + i / 10, i / 10)
        out = analyzer.process(frame, dets((box_at(x), 0.9, 0)), i / 10)
        for seq, (event, snap) in enumerate(out.events):
            body = json.loads(json.dumps(event_payload("dev", "ab" * 8, "cam0", seq, event, snap, (W, H))))
            jsonschema.validate(body, schema)
            kinds.add(body["type"])
            if body["type"] == "new":
                assert (
                    body["object"]["snapshot"]["file"] == "cam0/" + "ab" * 8 + f"-{event.object.track_id}.jpg"
                )
    for event, snap in analyzer.finish().events:
        jsonschema.validate(event_payload("dev", "ab" * 8, "cam0", 0, event, snap, (W, H)), schema)
        kinds.add(event.type)
    assert kinds == {"new", "update", "zone_enter", "loiter", "zone_exit", "line_cross", "end"}


# -------------------------------------------------------------------------------- review: edge cases


def test_no_loiter_while_leaving_and_dwell_until_it_left() -> None:
    zone = ZONE.model_copy(update={"min_dwell_s": 1.0, "loiter_s": 2.0})
    sc = scene([zone], [])
    # inside from t = 0 (entered at 1.0); steps out at t = 1.5; the loiter time (2.0) passes while it is
    # outside waiting for min_dwell: no loiter. It is then lost at t = 1.9 + lost_s: dwell until 1.5.
    frames = frames_of(walk(1, [100] * 15 + [400] * 5))
    frames += [(round(2.0 + i / 10, 3), []) for i in range(12)]
    got = run(sc, frames)
    assert got == [
        ("new", 1, 0.0, None, None),
        ("zone_enter", 1, 1.0, "left", None),
        ("zone_exit", 1, 3.0, "left", "lost"),
        ("end", 1, 3.0, None, "lost"),
    ]
    assert sc.finish(3.0, 0, 0) == []  # nothing left


def test_zone_exit_dwell_counts_to_when_it_left() -> None:
    sc = scene([ZONE.model_copy(update={"min_dwell_s": 1.0})], [])
    events = []
    for i, x in enumerate([100] * 15 + [400] * 3):
        events += sc.step(i / 10, 0, i, [Seen(1, 0, "person", 0.9, box_at(x))], (W, H))
    events += sc.finish(1.7, 0, 17)  # stops while the exit is pending: it left at t = 1.5
    [exit_] = [e for e in events if e.type == "zone_exit"]
    assert exit_.reason == "shutdown" and exit_.dwell_s == pytest.approx(1.5)


def test_a_relabelled_object_stops_counting_in_a_zone_for_another_label() -> None:
    sc = scene([ZONE.model_copy(update={"min_dwell_s": 0.0, "labels": ["person"]})], [])
    sc.occupancy_changes()
    sc.step(0.0, 0, 0, [Seen(1, 0, "person", 0.3, box_at(100))], (W, H))
    assert sorted(sc.occupancy_changes()) == [("left", "all", 1), ("left", "person", 1)]
    sc.step(0.1, 0, 1, [Seen(1, 2, "car", 0.9, box_at(100))], (W, H))  # now a car: it does not count here
    assert sorted(sc.occupancy_changes()) == [("left", "all", 0), ("left", "person", 0)]


def test_motion_gating_must_infer_more_often_than_objects_get_lost() -> None:
    """Under motion gating a still object is seen only every max_skip_s: at or above lost_s it would end
    between two inferred frames."""
    with pytest.raises(
        ValidationError, match=r"motion.max_skip_s \(2.0\) must be below tracking.lost_s \(1.5\)"
    ):
        CameraAnalytics(
            motion=MotionConfig(enabled=True, max_skip_s=2.0), tracking=TrackingConfig(lost_s=1.5)
        )
    assert CameraAnalytics(motion=MotionConfig(enabled=True)).motion.max_skip_s < TrackingConfig().lost_s


def test_unknown_labels_are_config_errors_and_a_missing_tracker_degrades(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bad = CameraAnalytics(zones=[ZoneConfig(name="door", polygon=[(0, 0), (9, 0), (0, 9)], labels=["persn"])])
    with pytest.raises(ConfigError, match="camera cam0: zone door: the model has no label persn"):
        CameraAnalyzer("cam0", "0" * 16, bad, AnalyticsConfig(), PublishConfig(), NAMES, None)
    with pytest.raises(ValidationError, match="activation_conf"):
        TrackingConfig(activation_conf=0.3, high_conf=0.5)
    import builtins

    real_import = builtins.__import__

    def no_trackers(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "trackers":
            raise ImportError("No module named 'trackers'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_trackers)
    plain = CameraAnalyzer(
        "cam0", "0" * 16, CameraAnalytics(), AnalyticsConfig(), PublishConfig(), NAMES, None
    )
    assert plain.tracker is None  # untracked, said in the log
    with pytest.raises(ConfigError, match="zones and lines need tracking"):
        CameraAnalyzer(
            "cam0", "0" * 16, CameraAnalytics(lines=[LINE]), AnalyticsConfig(), PublishConfig(), NAMES, None
        )


def test_an_idle_camera_ends_its_objects_and_empties_its_zones() -> None:
    cfg = CameraAnalytics(
        zones=[ZONE.model_copy(update={"min_dwell_s": 0.0})], tracking=TrackingConfig(lost_s=1.0)
    )
    analyzer = CameraAnalyzer("cam0", "0" * 16, cfg, AnalyticsConfig(), PublishConfig(), NAMES, None)
    for i in range(3):
        frame = Frame("cam0", i, np.zeros((H, W, 3), np.uint8), 100.0 + i / 10, 50.0 + i / 10)
        analyzer.process(frame, dets((box_at(100), 0.9, 0)), 50.0 + i / 10)
    assert analyzer.idle(50.5, 100.5).events == []  # not yet lost_s
    out = analyzer.idle(51.5, 101.5)
    assert [e.type for e, _ in out.events] == ["zone_exit", "end"]
    assert ("left", "all", 0) in out.occupancy


def test_snapshots_are_drawn_off_the_publish_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The analyzer hands the best frame to the drawer and returns at once: the event already names the
    file; the JPEG follows with a later frame of the camera, and the file then exists."""
    import threading

    from edge_daemon.analytics import drawer as drawer_module

    gate = threading.Event()
    real = drawer_module.render  # type: ignore[attr-defined]

    def held_render(*args: Any, **kwargs: Any) -> bytes:
        assert gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(drawer_module, "render", held_render)
    store = SnapshotStore(tmp_path, 10 * 1024 * 1024, 3600)
    cfg = CameraAnalytics(tracking=TrackingConfig(min_frames=1))
    analyzer = CameraAnalyzer("cam0", "ab" * 8, cfg, AnalyticsConfig(), PublishConfig(), NAMES, store)
    image = np.full((H, W, 3), 90, np.uint8)

    def step(i: int) -> Any:
        return analyzer.process(
            Frame("cam0", i, image, 1e9 + i / 10, i / 10), dets((box_at(150), 0.9, 0)), i / 10
        )

    new: list[Any] = []
    for i in range(10):  # the tracker confirms the object within a few frames
        out = step(i)
        new = [ref for e, ref in out.events if e.type == "new"]
        if new:
            break
    assert len(new) == 1 and new[0] is not None  # process() returned while the drawing is held
    file = tmp_path / new[0].file
    assert not file.exists() and out.snapshots == []
    gate.set()
    assert analyzer.drawer is not None and analyzer.drawer.flush(10)
    out = step(i + 1)
    assert [topic for topic, _ in out.snapshots] == ["cam0/person/snapshot"] and file.is_file()
    assert out.snapshots[0][1] == file.read_bytes()
    analyzer.close()


def test_the_drawer_keeps_the_newest_per_object_and_skips_the_oldest_when_full(tmp_path: Path) -> None:
    from edge_daemon.analytics import Job, SnapshotDrawer

    drawer = SnapshotDrawer(SnapshotStore(tmp_path, 10 * 1024 * 1024, 3600), 320, 80, depth=2)
    drawer._closed = True  # no thread: the queue is looked at as it is
    picture = np.zeros((48, 64, 3), np.uint8)
    job = Job("cam0", "r-1", "cam0/person/snapshot", picture, (1, 1, 9, 9), "a")
    assert drawer.submit(job) == "cam0/r-1.jpg"
    drawer.submit(dataclasses.replace(job, caption="newer"))  # same object: replaces the waiting one
    assert [j.caption for j in drawer._jobs.values()] == ["newer"] and drawer.skipped == 0
    drawer.submit(dataclasses.replace(job, name="r-2"))
    drawer.submit(dataclasses.replace(job, name="r-3"))  # a third waiting: the oldest is given up
    assert [j.name for j in drawer._jobs.values()] == ["r-2", "r-3"] and drawer.skipped == 1
    drawer._closed = False
    drawer.submit(dataclasses.replace(job, name="r-4", picture=np.zeros((0, 0, 3), np.uint8)))  # bad
    assert drawer.flush(10)
    assert sorted(p.name for p in (tmp_path / "cam0").iterdir()) == ["r-3.jpg"]
    assert drawer.errors == {"cam0": 1} and len(drawer.take("cam0")) == 1 and drawer.take("cam0") == []
    drawer.close()
    assert drawer._thread is not None and not drawer._thread.is_alive()


@pytest.mark.parametrize(("min_gain", "kept"), [(0.0, 10), (0.1, 2)])
def test_a_frame_is_kept_for_a_snapshot_only_when_it_is_enough_better(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, min_gain: float, kept: int
) -> None:
    """An object whose confidence creeps up 0.50, 0.51 ... 0.60 (tracked from 0.51): every frame is a new
    best. Each kept frame is a copy of the picture (a download from the GPU) and a picture to draw, so only
    one that scores ``min_gain`` more than the one kept replaces it (0.51, then 0.57 >= 1.1 x 0.51); 0
    keeps every better frame (0.51 ... 0.60)."""
    from edge_daemon.analytics import camera as camera_module

    copies: list[int] = []
    real_keep = camera_module._keep

    def counted(frame: Frame) -> Frame:
        copies.append(frame.seq)
        return real_keep(frame)

    monkeypatch.setattr(camera_module, "_keep", counted)
    store = SnapshotStore(tmp_path, 10 * 1024 * 1024, 3600)
    cfg = CameraAnalytics(tracking=TrackingConfig(min_frames=1, activation_conf=0.45, high_conf=0.45))
    pacing = AnalyticsConfig(update_interval_s=100.0, snapshots={"min_gain": min_gain})
    analyzer = CameraAnalyzer("cam0", "ab" * 8, cfg, pacing, PublishConfig(), NAMES, store)
    image = np.full((H, W, 3), 90, np.uint8)
    for i in range(11):
        frame = Frame("cam0", i, image, 1e9 + i / 10, i / 10)
        analyzer.process(frame, dets((box_at(150), 0.50 + i / 100, 0)), i / 10)
    out = analyzer.finish()
    ends = [ref for e, ref in out.events if e.type == "end"]
    assert len(ends) == 1 and ends[0] is not None
    assert len(copies) == kept, copies
    # The end's snapshot is the frame kept last: the best one, or the last one enough better.
    assert ends[0].confidence == pytest.approx(0.60 if min_gain == 0 else 0.57)
    analyzer.close()
