"""How a host thread waits for the GPU (``gpu.wait``), measured on paced streams: the same N cameras with
each policy in turn (alternating, so drift hits both), through the whole pipeline to MQTT as
``edge-daemon bench --cameras`` runs them (:func:`edge_daemon.tools.streams.trial`).

    python scripts/bench_wait.py -c configs/gpu-streams.yaml --cameras 24 32 40 --workers 8 --json wait.json

Prints one line per trial (held, FPS, dropped, p99, host cores per stream); --json keeps every trial.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path


def main() -> None:
    from edge_daemon.app import load_model
    from edge_daemon.config import load_settings
    from edge_daemon.logs import setup_logging
    from edge_daemon.tools.clips import lasting
    from edge_daemon.tools.streams import TRIAL_MARGIN_S, _cameras, stream_clip, trial

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", type=Path, required=True)
    ap.add_argument("--cameras", type=int, nargs="+", required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--policies", nargs="+", default=["spin", "block"])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--codec", default="h264")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--no-mqtt", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    setup_logging("WARNING")
    base = load_settings(args.config)
    service = base.service.model_copy(update={"workers": args.workers})
    engine = base.engine.model_copy(update={"max_batch": max(args.cameras)})
    base = base.model_copy(update={"service": service, "engine": engine})
    clip = stream_clip(base, args.codec, (1920, 1080), 30)
    clip = lasting(clip, 4.0 + args.seconds + TRIAL_MARGIN_S)  # no camera loops inside a trial
    rows = []
    for r in range(args.rounds):
        for n in args.cameras:
            order = args.policies if r % 2 == 0 else list(reversed(args.policies))
            for policy in order:
                gpu = base.gpu.model_copy(update={"wait": policy})
                settings = base.model_copy(update={"gpu": gpu})
                model = load_model(_cameras(settings, clip, 1)) if min(n, args.workers) == 1 else None
                try:
                    t = trial(settings, model, clip, n, 30, 4.0, args.seconds, not args.no_mqtt)
                finally:
                    if model is not None:
                        model.engine.close()
                rows.append({"policy": policy, "round": r, **asdict(t)})
                print(
                    f"{policy:>6} {n:>3} cameras {t.workers} workers: held {t.held}, {t.fps:.0f} FPS, "
                    f"{t.dropped} dropped, p99 {t.p99_ms:.0f} ms, {t.cores_per_stream:.3f} cores/stream "
                    f"{t.why}",
                    flush=True,
                )
                if args.json:  # after every trial: a run cut short by a time limit keeps what it measured
                    report = {"workers": args.workers, "trials": rows}
                    args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
