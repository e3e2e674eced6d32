"""Streams per GPU, first figures: the whole pipeline on N copies of a 1080p clip, CPU decode vs NVDEC.

For each decode path and camera count: N file cameras on the same 1080p30 clip (scripts/make_stream_clips.py),
not paced (``block`` policy: the pipeline's ceiling, not a real-time hold), YOLO-World v8s fp16 on the
torch executor with ``max_batch`` = N, to a NullPublisher; total frames per second end to end. Beside it,
in the same run, NVDEC alone (N decoders on threads, frames copied into device buffers as the source does).

    python scripts/bench_streams.py --cameras 1 8 16 --frames 150 [--clip .gpuassets/streams-1080p-h264.mp4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from pathlib import Path
from typing import Any


def pipeline_fps(
    clip: Path, model: Path, cache: Path, cameras: int, frames: int, decode: str
) -> dict[str, Any]:
    from edge_daemon.app import build_pipeline, load_model
    from edge_daemon.config import Settings
    from edge_daemon.publish.base import NullPublisher

    settings = Settings(
        device_id="bench",
        cameras=[
            {
                "type": "file",
                "name": f"cam{i}",
                "path": str(clip),
                "drop_policy": "block",
                "max_frames": frames,
                "decode": decode,
            }
            for i in range(cameras)
        ],
        model={"path": str(model), "imgsz": [384, 672], "cache_dir": str(cache)},
        engine={"backend": "torch", "precision": "fp16", "max_batch": cameras},
        gpu={"preprocess": "gpu"},
        analytics={"snapshots": {"dir": str(cache / "snapshots")}},
    )
    model_ = load_model(settings)
    try:
        pipeline = build_pipeline(settings, model_, NullPublisher())
        started = time.perf_counter()
        stats = pipeline.run(threading.Event())
        seconds = time.perf_counter() - started
        if pipeline.error is not None:
            raise pipeline.error
    finally:
        model_.engine.close()
    return {
        "decode": decode,
        "cameras": cameras,
        "fps": round((stats.published + stats.suppressed) / seconds, 1),
        "frames": stats.published + stats.suppressed,
        "decoders": (pipeline.publisher.info or {}).get("decode"),
    }


def nvdec_only(clip: Path, streams: int, frames: int) -> float:
    """N NVDEC sources on threads, each reading ``frames`` pictures (and handing the buffer back)."""
    from edge_daemon.tools.decode_limit import decode_limit

    return decode_limit(clip, True, streams, frames=frames)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", type=Path, default=Path(".gpuassets/streams-1080p-h264.mp4"))
    ap.add_argument("--model", type=Path, default=Path(".gpuassets/yolov8s-world.pt"))
    ap.add_argument("--cache", type=Path, default=Path("/tmp/bench-streams"))
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 8, 16])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    for n in args.cameras:
        row: dict[str, Any] = {
            "cameras": n,
            "nvdec_only_fps": round(nvdec_only(args.clip, n, args.frames), 1),
        }
        for decode in ("cpu", "nvdec"):
            runs = [pipeline_fps(args.clip, args.model, args.cache, n, args.frames, decode) for _ in range(1)]
            row[f"{decode}_fps"] = statistics.median(r["fps"] for r in runs)
            row[f"{decode}_decoders"] = runs[0]["decoders"]
        row["ratio"] = round(row["nvdec_fps"] / row["cpu_fps"], 2)
        print(json.dumps(row), flush=True)
        rows.append(row)
    print(f"{'cameras':>8}{'NVDEC only':>12}{'CPU decode':>12}{'NVDEC':>10}{'ratio':>8}")
    for r in rows:
        print(
            f"{r['cameras']:>8}{r['nvdec_only_fps']:>12}{r['cpu_fps']:>12}{r['nvdec_fps']:>10}{r['ratio']:>8}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
