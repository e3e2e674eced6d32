"""What splitting the cameras over worker processes costs the engine: the bare batched rate (``enqueue``
on device buffers, back to back, as ``edge-daemon bench`` measures its engine limit) of one engine at each
batch size, against P engines, each in its own process (its own CUDA context, as ``service.workers``
runs them), all enqueuing batches of b at once on the same GPU: their rates added up.

    python scripts/engine_batches.py -c configs/gpu-streams.yaml --batches 1 2 4 8 16 32 64 \\
        --processes 8 --split 4 8 --json engine-batches.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
from pathlib import Path
from typing import Any


def _settings(config: Path, batch: int) -> Any:
    from edge_daemon.config import load_settings

    s = load_settings(config)
    return s.model_copy(update={"engine": s.engine.model_copy(update={"max_batch": batch})})


def _one(config: Path, batch: int, seconds: float, ready: Any, rates: Any) -> None:
    from edge_daemon.app import load_model
    from edge_daemon.tools.limits import engine_limit

    model = load_model(_settings(config, batch))
    try:
        engine_limit(model.engine, 0.5, batch)  # warm, before the others start together
        ready.wait()
        rates.put(engine_limit(model.engine, seconds, batch)[1])
    finally:
        model.engine.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", type=Path, required=True)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--split", type=int, nargs="*", default=[4, 8], help="batch of each of the processes")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    from edge_daemon.app import load_model
    from edge_daemon.tools.limits import engine_limit

    report: dict[str, Any] = {"one_engine": {}, "processes": args.processes, "split": {}}
    model = load_model(_settings(args.config, max(args.batches)))
    try:
        for b in args.batches:
            rate = engine_limit(model.engine, args.seconds, b)[1]
            report["one_engine"][b] = round(rate, 1)
            print(f"one engine, batch {b}: {rate:.0f} images/s", flush=True)
    finally:
        model.engine.close()
    ctx = mp.get_context("spawn")
    for b in args.split:
        ready, rates = ctx.Barrier(args.processes), ctx.Queue()
        procs = [ctx.Process(target=_one, args=(args.config, b, args.seconds, ready, rates))
                 for _ in range(args.processes)]  # fmt: skip
        for p in procs:
            p.start()
        total = sum(rates.get(timeout=600) for _ in procs)
        for p in procs:
            p.join()
        report["split"][b] = round(total, 1)
        print(f"{args.processes} engines in {args.processes} processes, batch {b} each: {total:.0f} images/s "
              f"in all ({report['one_engine'].get(b * args.processes, '?')} for one engine at batch "
              f"{b * args.processes})", flush=True)  # fmt: skip
        if args.json:
            args.json.write_text(json.dumps(report, indent=2) + "\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
