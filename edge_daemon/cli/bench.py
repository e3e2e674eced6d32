"""``edge-daemon bench``: measure end-to-end FPS and latency against Ultralytics and the bare engine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_daemon.cli.common import EX_OK, LOG_LEVELS
from edge_daemon.logs import setup_logging


def command(args: argparse.Namespace) -> int:
    from edge_daemon.config import load_settings
    from edge_daemon.tools.bench import run_bench

    settings = load_settings(args.config)
    setup_logging(args.log_level or "WARNING")
    report = run_bench(
        settings,
        frames=args.frames,
        rounds=args.rounds,
        ultralytics=not args.no_ultralytics,
        mqtt=not args.no_mqtt,
        progress=sys.stderr.isatty(),
    )
    sys.stdout.write(report.table() + "\n")
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n", encoding="utf-8")
    return EX_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench", help="measure end-to-end FPS and latency against Ultralytics and the bare engine"
    )
    p.add_argument("--config", "-c", required=True, type=Path)
    p.add_argument("--frames", type=int, default=300, help="frames per measurement (default 300)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    p.add_argument("--no-ultralytics", action="store_true", help="skip the Ultralytics comparison")
    p.add_argument("--no-mqtt", action="store_true", help="encode payloads but do not send them")
    p.add_argument("--log-level", choices=LOG_LEVELS)
    p.set_defaults(func=command)
