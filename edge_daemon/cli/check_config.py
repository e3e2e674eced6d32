"""``edge-daemon check-config``: validate a config file (and that this machine's OpenCV can open its cameras)
and print it resolved, secrets masked."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge_daemon.cli.common import EX_OK


def command(args: argparse.Namespace) -> int:
    import yaml

    from edge_daemon.camera import check_gstreamer
    from edge_daemon.config import load_settings, redacted_dump

    settings = load_settings(args.config)
    check_gstreamer(settings.cameras)  # what this machine cannot run is a config error here too
    sys.stdout.write(f"# {args.config}: valid\n")
    sys.stdout.write(yaml.safe_dump(redacted_dump(settings), sort_keys=False))
    return EX_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("check-config", help="validate a config file and print it resolved, secrets masked")
    p.add_argument("config", type=Path)
    p.set_defaults(func=command)
