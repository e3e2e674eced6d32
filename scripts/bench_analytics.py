"""What analytics cost and save, on the demo clip and the CPU default (ONNX Runtime, YOLO-World v8s):

1. End to end: the daemon with analytics off (no tracking, every detections message) and on
   (configs/demo.yaml: ByteTrack, a zone, a line, snapshots, ``on_change``), runs alternated, median FPS
   and their ratio (order off, on, on, off, ...: slow drift of the machine cancels).
2. Per frame: tracking + zones + lines + events + snapshot encoding (``CameraAnalyzer.process``) on the
   detections the "on" runs computed, median and p99 over the clip.
3. Messages: detections messages with ``all`` (one per frame) vs ``on_change``, and the events.
4. Tracks: how many ids, their lengths; ID switches on the hand-checked segment (tests/data).
5. Motion gating: frames skipped on the demo clip and on the synthetic walks clip, and the gate's cost.

    .venv/bin/python scripts/bench_analytics.py [--frames 400] [--repeats 2] [--json .cache/analytics.json]

Publishing goes to a counting publisher (no broker), so the figures are the pipeline's own.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_daemon.analytics import CameraAnalyzer, MotionGate, SnapshotStore  # noqa: E402
from edge_daemon.app.boot import load_model  # noqa: E402
from edge_daemon.app.daemon import build_pipeline  # noqa: E402
from edge_daemon.config import MotionConfig, Settings  # noqa: E402
from edge_daemon.publish.base import NullPublisher  # noqa: E402
from edge_daemon.tools.bench import machine_description  # noqa: E402
from edge_daemon.types import Detections, Frame  # noqa: E402


def _settings(frames: int, analytics: bool, snapshots: Path) -> Settings:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cam = data["cameras"][0]
    cam["max_frames"] = frames
    cam["path"] = str(ROOT / cam["path"])
    data["model"]["path"] = str(ROOT / data["model"]["path"])
    data["model"]["cache_dir"] = str(ROOT / data["model"]["cache_dir"])
    data["analytics"] = {"snapshots": {"dir": str(snapshots), "enabled": analytics}}
    if not analytics:
        cam.pop("zones", None)
        cam.pop("lines", None)
        cam["tracking"] = {"enabled": False}
        data["publish"] = {"detections": "all"}
    return Settings(**data)


def end_to_end(frames: int, repeats: int, work: Path) -> dict[str, Any]:
    """Alternating off/on runs; the 'on' runs' tracked detections are kept for the per-frame figures."""
    fps: dict[str, list[float]] = {"off": [], "on": []}
    out: dict[str, Any] = {}
    model = load_model(_settings(frames, False, work / "snaps"))
    try:
        for r in range(repeats):
            for mode in ("off", "on") if r % 2 == 0 else ("on", "off"):  # ABBA: drift cancels
                settings = _settings(frames, mode == "on", work / f"snaps-{r}")
                publisher = NullPublisher()
                kept: dict[int, Detections] = {}
                pipeline = build_pipeline(settings, model, publisher=publisher, on_result=_keeper(kept))
                stats = pipeline.run(threading.Event(), 30.0)
                fps[mode].append(stats.fps())
                print(f"  run {r} analytics {mode}: {stats.fps():.2f} fps, {publisher.messages} messages")
                if mode == "on":
                    out["on"] = {
                        "published": stats.published,
                        "suppressed": stats.suppressed,
                        "events": stats.events,
                        "detections_messages": stats.published - stats.suppressed,
                        "kept": kept,
                    }
        out["names"] = model.info.names
    finally:
        model.engine.close()
    off, on = statistics.median(fps["off"]), statistics.median(fps["on"])
    out.update(
        {"fps_off": fps["off"], "fps_on": fps["on"], "median_off": off, "median_on": on, "ratio": on / off}
    )
    return out


def _keeper(kept: dict[int, Detections]) -> Any:
    return lambda frame, dets: kept.__setitem__(frame.seq, dets)


def per_frame(frames: int, kept: dict[int, Detections], names: dict[int, str], work: Path) -> dict[str, Any]:
    """CameraAnalyzer.process on every frame, timed; track statistics."""
    settings = _settings(frames, True, work / "snaps-per-frame")
    cam = settings.cameras[0]
    snaps = settings.analytics.snapshots
    store = SnapshotStore(snaps.dir, snaps.max_bytes, snaps.max_age_s)
    analyzer = CameraAnalyzer("cam0", "0" * 16, cam, settings.analytics, settings.publish, names, store)
    cap = cv2.VideoCapture(str(cam.path))  # type: ignore[union-attr]
    times: list[float] = []
    lengths: dict[int, int] = {}
    for seq in range(frames):
        ok, image = cap.read()
        if not ok or seq not in kept:
            break
        frame = Frame("cam0", seq, np.asarray(image, np.uint8), time.time(), time.monotonic())
        dets = Detections(kept[seq].xyxy, kept[seq].confidence, kept[seq].class_id)
        t0 = time.perf_counter()
        out = analyzer.process(frame, dets, seq / 10.0)
        times.append((time.perf_counter() - t0) * 1000)
        assert out.detections.track_id is not None
        for tid in out.detections.track_id.tolist():
            if tid >= 0:
                lengths[tid] = lengths.get(tid, 0) + 1
    cap.release()
    ordered = sorted(lengths.values())
    return {
        "frames": len(times),
        "median_ms": statistics.median(times),
        "mean_ms": statistics.fmean(times),
        "p99_ms": float(np.percentile(times, 99)),
        "tracks": len(lengths),
        "track_length_median": statistics.median(ordered) if ordered else 0,
        "snapshots_written": store.written,
    }


def id_switches(kept: dict[int, Detections]) -> dict[str, Any]:
    from tests.helpers.identities import checked_people, ids_along

    people = checked_people()
    switches, checked = 0, 0
    for boxes in people.values():
        ids = [-2 if i is None else i for i in ids_along(boxes, kept)]  # -2: no detection over the box
        checked += len(ids)
        switches += sum(1 for a, b in itertools.pairwise(ids) if a != b)
    return {"people": len(people), "checked_boxes": checked, "id_switches": switches}


def motion(clip: Path, frames: int) -> dict[str, Any]:
    gate = MotionGate(MotionConfig(enabled=True))
    cap = cv2.VideoCapture(str(clip))
    fps = cap.get(cv2.CAP_PROP_FPS) or 10.0
    times = []
    for seq in range(frames):
        ok, image = cap.read()
        if not ok:
            break
        t0 = time.perf_counter()
        gate.moving(np.asarray(image, np.uint8), seq / fps)
        times.append((time.perf_counter() - t0) * 1000)
    cap.release()
    total = gate.skipped + gate.passed
    return {
        "frames": total,
        "skipped": gate.skipped,
        "saved": gate.skipped / max(1, total),
        "gate_ms": statistics.median(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=400)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print(machine_description())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        e2e = end_to_end(args.frames, args.repeats, work)
        kept = e2e["on"].pop("kept")
        frame_cost = per_frame(args.frames, kept, e2e.pop("names"), work)
        ids = id_switches(kept) if args.frames > 110 else {}
    from tests.helpers import sprites

    walks = sprites.make_video(ROOT / ".cache" / "walks.avi", _bus())
    report = {
        "machine": machine_description(),
        "end_to_end": e2e,
        "per_frame": frame_cost,
        "ids": ids,
        "motion_demo": motion(ROOT / ".assets" / "vtest.avi", 10_000),
        "motion_walks": motion(walks, 10_000),
    }
    on = e2e["on"]
    print(json.dumps(report, indent=1))
    print(
        f"analytics on/off end to end: {e2e['median_on']:.2f} / {e2e['median_off']:.2f} fps "
        f"= {e2e['ratio']:.3f}; "
        f"per frame {frame_cost['median_ms']:.2f} ms median, {frame_cost['p99_ms']:.2f} ms p99; "
        f"detections messages {on['detections_messages']} of {on['published']} frames with on_change"
    )
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


def _bus() -> Path:
    import ultralytics

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"


if __name__ == "__main__":
    main()
