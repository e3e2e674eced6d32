"""``edge-daemon build-engine``: build or load the engine now (systemd ExecStartPre), then exit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_daemon.cli.common import EX_OK, LOG_LEVELS
from edge_daemon.logs import setup_logging


def command(args: argparse.Namespace) -> int:
    from edge_daemon.app import load_model
    from edge_daemon.config import load_settings

    settings = load_settings(args.config)
    setup_logging(args.log_level or settings.log.level)
    model = load_model(settings)
    info = model.engine.info
    model.engine.close()
    sys.stdout.write(
        f"ready: {info.backend} {info.precision} engine for {model.info.model_id}, "
        f"input {info.input_hw[0]}x{info.input_hw[1]}, max batch {info.max_batch}\n"
    )
    return EX_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("build-engine", help="build or load the engine now (systemd ExecStartPre), then exit")
    p.add_argument("--config", "-c", required=True, type=Path)
    p.add_argument("--log-level", choices=LOG_LEVELS)
    p.set_defaults(func=command)
