"""Command line: ``edge-daemon run|check-config|build-engine|engine info|bench|quant-report|watch``.

One module per command, each with ``add_parser`` and ``command``; this module only assembles the parser
and maps errors to exit codes. Exit codes follow sysexits(3) so that systemd can tell failures apart
(``RestartPreventExitStatus=78`` stops restart loops on a bad config): 0 ok, 65 bad model data, 69 a
camera or the broker is unavailable, 70 internal error, 78 bad configuration, 130 interrupted twice.
"""

from __future__ import annotations

import argparse
import logging
import sys

from edge_daemon import __version__
from edge_daemon.cli import bench, build_engine, check_config, engine_info, quant_report, run, watch
from edge_daemon.cli.common import EX_INTERRUPTED, EX_UNAVAILABLE, log
from edge_daemon.errors import ConfigError, EdgeError
from edge_daemon.logs import setup_logging

COMMANDS = (run, check_config, bench, build_engine, engine_info, quant_report, watch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-daemon", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edge-daemon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        setup_logging("INFO")
    try:
        code: int = args.func(args)
        return code
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"config error: {problem}\n")
        return exc.exit_code
    except EdgeError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except ModuleNotFoundError as exc:
        if exc.name != "cv2":
            raise
        sys.stderr.write(
            "edge-daemon needs OpenCV: pip install 'edge-daemon[opencv]' (on a Jetson: JetPack's OpenCV, "
            "which has GStreamer)\n"
        )
        return EX_UNAVAILABLE
