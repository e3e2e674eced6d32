"""``edge-daemon run``: serve the configured cameras until stopped."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from edge_daemon import __version__
from edge_daemon.cli.common import EX_OK, LOG_LEVELS, capture_signals, log
from edge_daemon.logs import setup_logging


def command(args: argparse.Namespace) -> int:
    from edge_daemon.app import run_daemon
    from edge_daemon.config import load_settings

    settings = load_settings(args.config)
    setup_logging(args.log_level or settings.log.level)
    log.info(
        "edge-daemon %s starting: device %s, %d camera(s)",
        __version__,
        settings.device_id,
        len(settings.cameras),
    )
    stop = threading.Event()
    with capture_signals(stop):
        stats = run_daemon(settings, stop)
    log.info("stopped: %d frames published, %d detections", stats.published, stats.detections)
    return EX_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("run", help="serve the configured cameras until stopped")
    p.add_argument("--config", "-c", required=True, type=Path)
    p.add_argument("--log-level", choices=LOG_LEVELS)
    p.set_defaults(func=command)
