"""``edge-daemon quant-report``: iNT8 vs FP32 agreement (mAP) and speed on the camera's frames."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_daemon.cli.common import EX_OK, LOG_LEVELS
from edge_daemon.logs import setup_logging


def command(args: argparse.Namespace) -> int:
    from edge_daemon.config import load_settings
    from edge_daemon.tools.quant_report import run_report, write_json, write_png

    settings = load_settings(args.config)
    setup_logging(args.log_level or "WARNING")
    report = run_report(settings, frames=args.frames, naive=not args.no_naive, end_to_end=not args.no_e2e)
    sys.stdout.write(report.table() + "\n")
    if args.json:
        write_json(report, args.json)
    if args.png:
        write_png(report, args.png)
    return EX_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("quant-report", help="INT8 vs FP32 agreement (mAP) and speed on the camera's frames")
    p.add_argument("--config", "-c", required=True, type=Path)
    p.add_argument("--frames", type=int, default=300, help="frames to evaluate on (default 300)")
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    p.add_argument("--png", type=Path, help="draw per-class agreement and speed into this PNG")
    p.add_argument("--no-naive", action="store_true", help="skip the naive all-layers INT8 baseline")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end throughput runs")
    p.add_argument("--log-level", choices=LOG_LEVELS)
    p.set_defaults(func=command)
