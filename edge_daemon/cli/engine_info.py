"""``edge-daemon engine info``: inspect engine files: a plan's manifest or an Ultralytics engine's header."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_daemon.cli.common import EX_NOINPUT, EX_OK


def command(args: argparse.Namespace) -> int:
    from edge_daemon.files import read_manifest
    from edge_daemon.runtime.tensorrt.planfile import split_ultralytics_engine

    path: Path = args.path
    if not path.is_file():
        sys.stderr.write(f"engine info: {path}: no such file\n")
        return EX_NOINPUT
    manifest = read_manifest(path)
    with path.open("rb") as fh:
        head = fh.read(1 << 20)
    header, _ = split_ultralytics_engine(head)
    if manifest is not None:
        report = {"file": str(path), "format": "TensorRT plan + edge-daemon manifest", **manifest.data}
    elif header is not None:
        report = {"file": str(path), "format": "Ultralytics engine (int32 length + JSON + plan)", **header}
    else:
        report = {
            "file": str(path),
            "format": "plain TensorRT plan, no manifest",
            "bytes": path.stat().st_size,
        }
    sys.stdout.write(json.dumps(report, indent=2, default=str) + "\n")
    return EX_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("engine", help="inspect engine files")
    engine_sub = p.add_subparsers(dest="engine_command", required=True)
    pi = engine_sub.add_parser("info", help="print a plan's manifest or an Ultralytics engine's header")
    pi.add_argument("path", type=Path)
    pi.set_defaults(func=command)
