"""Post-processing cost per head on the CPU: the daemon's decode of one frame's raw outputs (candidates,
NMS, masks -> outlines, rotated NMS, top-k), median over the clip's frames, for every head the daemon
decodes. The engine runs first and its outputs are kept, so only the decode is timed.

    .venv/bin/python scripts/bench_postprocess.py [--frames 300] [--json .cache/postprocess.json]

Models: tests/helpers/synthetic.py (YAML-built, random weights, heads raised so there is something to
decode; the confidence threshold is set per model so that each frame keeps a realistic handful)."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_daemon.config import OnnxRuntimeEngineConfig  # noqa: E402
from edge_daemon.model.info import model_info  # noqa: E402
from edge_daemon.model.preprocess import preprocess  # noqa: E402
from edge_daemon.model.tasks import DecodeParams, decoder, fit  # noqa: E402
from edge_daemon.runtime import load_engine  # noqa: E402
from edge_daemon.tools.bench import machine_description  # noqa: E402
from tests.helpers.synthetic import MODELS, task_model  # noqa: E402


def _frames(clip: Path, count: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(clip))
    out: list[np.ndarray] = []
    while len(out) < count:
        ok, frame = cap.read()
        if not ok:
            break
        out.append(frame)
    cap.release()
    return out


def _conf(outputs: list[tuple[np.ndarray, ...]], head: str, nc: int, per_frame: int = 10) -> float:
    """The threshold at which the median frame keeps about ``per_frame`` candidates before NMS x 4."""
    if head == "classify":
        return 0.0
    counts = []
    for outs in outputs[:20]:
        out = outs[0]
        scores = out[:, 4] if head.endswith("-e2e") else out[4 : 4 + nc].max(axis=0)
        counts.append(np.sort(scores)[-per_frame * (1 if head.endswith("-e2e") else 4)])
    return float(min(np.median(counts), 0.999))


def _models() -> list[tuple[str, Path]]:
    """The real checkpoints where they are here (raw detect, raw pose), then every synthetic head."""
    from edge_daemon.build.export import resolve_onnx
    from tests.helpers.synthetic import MODEL_CACHE

    real = []
    for weights, imgsz in (("yolov8s-world.pt", (480, 576)), ("yolo11n-pose.pt", (480, 640))):
        if (ROOT / ".assets" / weights).is_file():  # World traces at widths that are multiples of 96
            onnx_path, _ = resolve_onnx(ROOT / ".assets" / weights, imgsz, MODEL_CACHE)
            real.append((weights, onnx_path))
    return real + [(MODELS[name][0], task_model(name)) for name in MODELS]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--clip", type=Path, default=ROOT / ".assets" / "vtest.avi")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    frames = _frames(args.clip, args.frames)
    rows: list[dict[str, Any]] = []
    for name, path in _models():
        engine = load_engine(OnnxRuntimeEngineConfig(), path)
        shapes = engine.info.output_shapes
        info = model_info(engine.info.metadata, engine.info.input_hw, path, "0" * 64, shapes)
        outputs, metas = [], []
        for frame in frames:
            x, meta = preprocess(frame, engine.info.input_hw, fit(info.task))
            outputs.append(tuple(o[0] for o in engine.run(x)))
            metas.append(meta)
        engine.close()
        conf = _conf(outputs, info.head, info.num_classes)
        decode = decoder(info.head, DecodeParams(info.num_classes, conf=conf, keypoints=info.kpt_shape))
        for outs, meta in zip(outputs[:10], metas[:10], strict=True):  # warm-up
            decode(outs, meta)
        times, kept = [], []
        for outs, meta in zip(outputs, metas, strict=True):
            t0 = time.perf_counter()
            dets = decode(outs, meta)
            times.append((time.perf_counter() - t0) * 1000.0)
            kept.append(len(dets))
        row = {
            "head": info.head,
            "model": name,
            "input": list(engine.info.input_hw),
            "outputs": [list(s) for s in shapes],
            "conf": round(conf, 4),
            "detections_per_frame": round(statistics.mean(kept), 1),
            "median_ms": round(statistics.median(times), 3),
            "p90_ms": round(float(np.percentile(times, 90)), 3),
        }
        rows.append(row)
        print(json.dumps(row))
    report = {"machine": machine_description(), "frames": len(frames), "clip": args.clip.name, "heads": rows}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(f"\n{report['machine']}, {len(frames)} frames of {args.clip.name}\n")
    print("| head | model | outputs | detections/frame | decode median ms | p90 ms |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        shown = " + ".join("x".join(map(str, s)) for s in r["outputs"])
        cells = [r["head"], r["model"], shown, r["detections_per_frame"], r["median_ms"], r["p90_ms"]]
        print("| " + " | ".join(map(str, cells)) + " |")


if __name__ == "__main__":
    main()
