"""``edge-daemon watch``: subscribe and print one line per detections message."""

from __future__ import annotations

import argparse
import threading

from edge_daemon.cli.common import capture_signals


def command(args: argparse.Namespace) -> int:
    from edge_daemon.tools.watch import watch

    stop = threading.Event()
    with capture_signals(stop):
        return watch(args.host, args.port, args.topic, stop, count=args.count, timeout=args.timeout)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("watch", help="subscribe and print one line per detections message")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--topic", default="edge/#")
    p.add_argument("--count", type=int, help="exit after this many detections messages")
    p.add_argument("--timeout", type=float, help="exit after this many seconds")
    p.set_defaults(func=command)
