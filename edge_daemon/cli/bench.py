"""``edge-daemon bench``: measure end-to-end FPS and latency against Ultralytics and the bare engine."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge_daemon.cli.common import EX_OK, LOG_LEVELS
from edge_daemon.logs import setup_logging


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("expected WIDTHxHEIGHT, e.g. 1920x1080") from None
    if w < 16 or h < 16 or w % 2 or h % 2:
        raise argparse.ArgumentTypeError("width and height must be even and >= 16")
    return w, h


def command(args: argparse.Namespace) -> int:
    from edge_daemon.config import load_settings

    settings = load_settings(args.config)
    setup_logging(args.log_level or "WARNING")
    if args.cameras is not None or args.counts:
        from edge_daemon.tools.streams import run_streams_bench

        update: dict[str, object] = {"workers": args.workers} if args.workers is not None else {}
        if args.shared_engine:
            update["shared_engine"] = True
        if update:
            settings = settings.model_copy(update={"service": settings.service.model_copy(update=update)})
        streams = run_streams_bench(
            settings,
            args.cameras or 0,
            codec=args.codec,
            size=args.size,
            fps=args.fps,
            warmup_s=args.warmup,
            seconds=args.seconds,
            ultralytics=not args.no_ultralytics,
            mqtt=not args.no_mqtt,
            source=args.source,
            counts=args.counts,
        )
        sys.stdout.write(streams.table() + "\n")
        if args.json:
            Path(args.json).write_text(json.dumps(streams.as_dict(), indent=2) + "\n", encoding="utf-8")
        return EX_OK
    from edge_daemon.tools.bench import run_bench

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
    s = p.add_argument_group(
        "streams per device (--cameras)",
        "how many real-time streams the device holds, up to N (N paced, looped cameras made from "
        "cameras[0]'s clip), beside the decode-only and bare-engine limits and Ultralytics",
    )
    s.add_argument("--cameras", type=int, metavar="N", help="the most cameras to try")
    s.add_argument(
        "--counts", type=int, nargs="+", metavar="N", help="try exactly these camera counts (no search)"
    )
    s.add_argument("--codec", choices=["h264", "h265"], default="h264")
    s.add_argument(
        "--source",
        choices=["file", "rtsp"],
        default="file",
        help="the cameras: the looped clip, paced (file), or RTSP streams of it from a local gst-rtsp-server "
        "(rtsp; needs python3-gi and gir1.2-gst-rtsp-server-1.0)",
    )
    s.add_argument("--size", type=_size, default=(1920, 1080), help="stream size, WIDTHxHEIGHT (1920x1080)")
    s.add_argument("--fps", type=int, default=30, help="stream frame rate (30)")
    s.add_argument("--warmup", type=float, default=4.0, help="seconds before measuring each count (4)")
    s.add_argument("--seconds", type=float, default=8.0, help="seconds measured per count (8)")
    s.add_argument(
        "--workers", type=int, metavar="K", help="camera groups in K worker processes (service.workers)"
    )
    s.add_argument(
        "--shared-engine",
        action="store_true",
        help="the workers share one engine in a process of its own (service.shared_engine)",
    )
    p.set_defaults(func=command)
