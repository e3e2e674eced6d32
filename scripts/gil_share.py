"""How busy each interpreter lock is while N paced cameras run: py-spy samples every process's threads at
100 Hz with ``--gil`` (only the thread holding the lock is recorded), so samples over (rate x seconds) is
the share of time that process's lock was held. One process (``--workers 1``) against worker processes.

    python scripts/gil_share.py -c configs/gpu-streams.yaml --cameras 16 --workers 1 --json gil-1.json
    python scripts/gil_share.py -c configs/gpu-streams.yaml --cameras 32 --workers 8 --json gil-8.json

Needs py-spy (``pip install py-spy``) and permission to read other processes (root, or ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

RATE = 100


def gil_shares(pids: list[int], seconds: float) -> list[dict[str, Any]]:
    """Per process: the share of ``seconds`` its interpreter lock was held, and by which threads."""
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for pid in pids:
            out = Path(tmp) / f"{pid}.txt"
            cmd = ["py-spy", "record", "--gil", "--threads", "--nonblocking", "-r", str(RATE), "-d",
                   str(int(seconds)), "-f", "raw", "-o", str(out), "-p", str(pid)]  # fmt: skip
            procs.append((pid, out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)))
        shares = []
        for pid, out, proc in procs:
            _, err = proc.communicate(timeout=seconds + 60)
            threads: dict[str, int] = {}
            for line in out.read_text().splitlines() if out.is_file() else []:
                stack, _, count = line.rpartition(" ")
                thread = stack.split(";", 1)[0]
                name = thread.split(": ", 1)[-1]  # 'thread (tid): name'
                threads[name] = threads.get(name, 0) + int(count)
            total = sum(threads.values())
            top = dict(sorted(threads.items(), key=lambda kv: -kv[1])[:6])
            shares.append({"pid": pid, "gil_share": round(total / (RATE * int(seconds)), 3), "threads": top,
                           "error": err.decode()[-300:] if proc.returncode else ""})  # fmt: skip
        return shares


def main() -> None:
    from edge_daemon.app import load_model
    from edge_daemon.config import load_settings
    from edge_daemon.logs import setup_logging
    from edge_daemon.tools.clips import lasting
    from edge_daemon.tools.streams import TRIAL_MARGIN_S, _cameras, stream_clip, trial

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-c", "--config", type=Path, required=True)
    ap.add_argument("--cameras", type=int, required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--codec", default="h264")
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    setup_logging("WARNING")
    settings = load_settings(args.config)
    service = settings.service.model_copy(update={"workers": args.workers})
    engine = settings.engine.model_copy(update={"max_batch": args.cameras})
    settings = settings.model_copy(update={"service": service, "engine": engine})
    clip = stream_clip(settings, args.codec, (1920, 1080), 30)
    clip = lasting(clip, 4.0 + args.seconds + TRIAL_MARGIN_S)  # no camera loops inside a trial
    model = load_model(_cameras(settings, clip, 1))
    seen: list[dict[str, Any]] = []
    t = trial(settings, model, clip, args.cameras, 30, 4.0, args.seconds, True,
              probe=lambda pids, s: seen.extend(gil_shares(pids, s)))  # fmt: skip
    model.engine.close()
    result = {"cameras": args.cameras, "workers": args.workers, "trial": asdict(t), "processes": seen}
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
