"""Command line: ``edge-daemon run|check-config|build-engine|engine info|bench|quant-report|watch``.

Exit codes follow sysexits(3) so that systemd can tell failures apart (``RestartPreventExitStatus=78``
stops restart loops on a bad config): 0 ok, 65 bad model data, 69 a camera or the broker is unavailable,
70 internal error, 78 bad configuration, 130 interrupted twice.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from edge_daemon import __version__
from edge_daemon.errors import ConfigError, EdgeError
from edge_daemon.logs import setup_logging

log = logging.getLogger("edge_daemon")

EX_OK = 0
EX_USAGE = 64
EX_SOFTWARE = 70
EX_INTERRUPTED = 130


@contextlib.contextmanager
def capture_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop`` (graceful drain); a second SIGINT exits at once. Restores old handlers."""
    seen: list[int] = []

    def handle(signum: int, frame: FrameType | None) -> None:
        if seen and signum == signal.SIGINT:
            log.warning("second interrupt: exiting without draining")
            os._exit(EX_INTERRUPTED)
        seen.append(signum)
        log.info("received %s; finishing in-flight frames and shutting down", signal.Signals(signum).name)
        stop.set()

    old = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _cmd_check_config(args: argparse.Namespace) -> int:
    import yaml

    from edge_daemon.settings import load_settings, redacted_dump

    settings = load_settings(args.config)
    sys.stdout.write(f"# {args.config}: valid\n")
    sys.stdout.write(yaml.safe_dump(redacted_dump(settings), sort_keys=False))
    return EX_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from edge_daemon.app import run_daemon
    from edge_daemon.settings import load_settings

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


def _cmd_bench(args: argparse.Namespace) -> int:
    from edge_daemon.bench import run_bench
    from edge_daemon.settings import load_settings

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


def _cmd_build_engine(args: argparse.Namespace) -> int:
    from edge_daemon.app import load_model
    from edge_daemon.settings import load_settings

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


def _cmd_engine_info(args: argparse.Namespace) -> int:
    from edge_daemon.artifacts import read_manifest, split_ultralytics_engine

    path: Path = args.path
    if not path.is_file():
        sys.stderr.write(f"engine info: {path}: no such file\n")
        return 66  # EX_NOINPUT
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


def _cmd_quant_report(args: argparse.Namespace) -> int:
    from edge_daemon.quant.report import run_report, write_json, write_png
    from edge_daemon.settings import load_settings

    settings = load_settings(args.config)
    setup_logging(args.log_level or "WARNING")
    report = run_report(settings, frames=args.frames, naive=not args.no_naive, end_to_end=not args.no_e2e)
    sys.stdout.write(report.table() + "\n")
    if args.json:
        write_json(report, args.json)
    if args.png:
        write_png(report, args.png)
    return EX_OK


def _cmd_watch(args: argparse.Namespace) -> int:
    from edge_daemon.watch import watch

    stop = threading.Event()
    with capture_signals(stop):
        return watch(args.host, args.port, args.topic, stop, count=args.count, timeout=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-daemon", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"edge-daemon {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="serve the configured cameras until stopped")
    p.add_argument("--config", "-c", required=True, type=Path)
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("check-config", help="validate a config file and print it resolved, secrets masked")
    p.add_argument("config", type=Path)
    p.set_defaults(func=_cmd_check_config)

    p = sub.add_parser(
        "bench", help="measure end-to-end FPS and latency against Ultralytics and the bare engine"
    )
    p.add_argument("--config", "-c", required=True, type=Path)
    p.add_argument("--frames", type=int, default=300, help="frames per measurement (default 300)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds; medians are reported")
    p.add_argument("--json", type=Path, help="also write the figures as JSON here")
    p.add_argument("--no-ultralytics", action="store_true", help="skip the Ultralytics comparison")
    p.add_argument("--no-mqtt", action="store_true", help="encode payloads but do not send them")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("build-engine", help="build or load the engine now (systemd ExecStartPre), then exit")
    p.add_argument("--config", "-c", required=True, type=Path)
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_cmd_build_engine)

    p = sub.add_parser("engine", help="inspect engine files")
    engine_sub = p.add_subparsers(dest="engine_command", required=True)
    pi = engine_sub.add_parser("info", help="print a plan's manifest or an Ultralytics engine's header")
    pi.add_argument("path", type=Path)
    pi.set_defaults(func=_cmd_engine_info)

    p = sub.add_parser("quant-report", help="INT8 vs FP32 agreement (mAP) and speed on the camera's frames")
    p.add_argument("--config", "-c", required=True, type=Path)
    p.add_argument("--frames", type=int, default=300, help="frames to evaluate on (default 300)")
    p.add_argument("--json", type=Path, help="write the figures as JSON here")
    p.add_argument("--png", type=Path, help="draw per-class agreement and speed into this PNG")
    p.add_argument("--no-naive", action="store_true", help="skip the naive all-layers INT8 baseline")
    p.add_argument("--no-e2e", action="store_true", help="skip the end-to-end throughput runs")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.set_defaults(func=_cmd_quant_report)

    p = sub.add_parser("watch", help="subscribe and print one line per detections message")
    p.add_argument("--host", default="localhost")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--topic", default="edge/#")
    p.add_argument("--count", type=int, help="exit after this many detections messages")
    p.add_argument("--timeout", type=float, help="exit after this many seconds")
    p.set_defaults(func=_cmd_watch)
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
