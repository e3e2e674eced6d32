"""The publish thread's work per frame on the CPU: decoding the head, then analytics and the messages
(tracking on, snapshots on, no zones), on the demo clip's real model outputs, to a null publisher. The
engine runs first (its outputs kept); then every frame is published twice (the second time profiled).

    .venv/bin/python scripts/profile_publish.py --frames 80
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import pstats
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_daemon.app import build_pipeline, load_model
from edge_daemon.config import load_settings
from edge_daemon.publish.base import NullPublisher
from edge_daemon.types import Frame


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", type=Path, default=Path("configs/demo.yaml"))
    ap.add_argument("--frames", type=int, default=80)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    settings = load_settings(args.config)
    cam = settings.cameras[0].model_copy(update={"zones": [], "lines": []})
    settings = settings.model_copy(update={"cameras": [cam]})
    model = load_model(settings)
    pipe: Any = build_pipeline(settings, model, publisher=NullPublisher())
    cap = cv2.VideoCapture(str(getattr(cam, "path", "")))  # the config's first camera: a file
    raw = []
    for i in range(args.frames):
        ok, image = cap.read()
        if not ok:
            break
        frame = Frame(cam.name, i, np.asarray(image, np.uint8), 1e9 + i / 10, time.monotonic())
        item = pipe.stage.prepare(frame)
        batch = pipe.stage.submit([item])
        outputs, _ = pipe.stage.outputs(batch)
        raw.append((frame, tuple(np.array(o[0]) for o in outputs), item.meta))
        pipe.stage.release(batch)
    pipe.publisher.start()

    def publish(rnd: int) -> np.ndarray:
        ms = []
        for frame, out, meta in raw:  # each round later on the camera's clock (the tracker wants that)
            shift = rnd * 100.0
            seq = frame.seq + rnd * len(raw)
            at, mono = frame.captured_at + shift, frame.captured_mono + shift
            f = dataclasses.replace(frame, seq=seq, captured_at=at, captured_mono=mono)
            t0 = time.perf_counter()
            dets = pipe._decode(out, meta)
            t1 = time.perf_counter()
            pipe._publish([(f, dets)], 1.0)
            ms.append(((t1 - t0) * 1000, (time.perf_counter() - t1) * 1000))
        return np.asarray(ms)

    publish(1)
    profile = cProfile.Profile()
    profile.enable()
    ms = publish(2)
    profile.disable()
    decode, rest = np.median(ms[:, 0]), np.median(ms[:, 1])
    print(f"decode median {decode:.3f} ms, analytics + messages median {rest:.3f} ms")
    pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    model.engine.close()


if __name__ == "__main__":
    main()
