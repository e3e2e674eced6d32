#!/usr/bin/env python3
"""Fault-injection suite: the figures of docs/reliability.md, from real processes and real faults.

One script over 400 lines on purpose: each scenario is a short function and they share the process and
broker helpers; it is one command with one report.

    .venv/bin/python scripts/fault_injection.py all            # everything below except the soak
    .venv/bin/python scripts/fault_injection.py outage --seconds 30
    .venv/bin/python scripts/fault_injection.py rtsp --kills 5
    .venv/bin/python scripts/fault_injection.py crash-outbox --kills 5
    .venv/bin/python scripts/fault_injection.py crash-build
    .venv/bin/python scripts/fault_injection.py wrap --kills 3   # ids wrap past 65,535 under SIGKILLs
    .venv/bin/python scripts/fault_injection.py soak --frames 50000      # long; writes docs/img/soak.png

Each scenario runs the daemon as its own process (``python -m edge_daemon run``) against a real mosquitto,
the real clip or a real RTSP server, and prints one JSON line of figures; ``--out FILE`` appends them.
Needs the dev install (``make``): it reuses the test suite's broker and RTSP helpers.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from edge_daemon.build.export import resolve_onnx  # noqa: E402
from tests.conftest import free_port, start_mosquitto  # noqa: E402
from tests.helpers import rtsp  # noqa: E402
from tests.helpers.ackfaults import kill_rounds  # noqa: E402
from tests.helpers.collector import Collector  # noqa: E402

CLIP = ROOT / ".assets" / "vtest.avi"
CACHE = ROOT / ".cache" / "edge-daemon"


def world_onnx() -> Path:
    return resolve_onnx(ROOT / ".assets" / "yolov8s-world.pt", (480, 576), CACHE)[0]


def write_config(tmp: Path, name: str, port: int, camera: dict[str, Any], model: Path, **extra: Any) -> Path:
    cfg = {
        "device_id": name,
        "cameras": [{"name": "cam0", **camera}],
        "model": {"path": str(model), "cache_dir": str(extra.pop("cache_dir", CACHE))},
        "mqtt": {
            "host": "127.0.0.1",
            "port": port,
            "connect_timeout_s": 2,
            "outbox": {"path": str(tmp / f"{name}-outbox.sqlite")},
        },
        "log": {"stats_interval_s": 2},
        **extra,
    }
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def start_daemon(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    with log.open("ab") as fh:
        return subprocess.Popen(
            [sys.executable, "-m", "edge_daemon", "run", "-c", str(config)],
            cwd=ROOT,
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )


def published(log: Path) -> int:
    text = log.read_text(errors="replace")
    return int(text.rsplit("stopped: ", 1)[1].split(" frames published", 1)[0])


def wait(pred: Any, timeout: float, step: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


# ------------------------------------------------------------------------------------------- scenarios


def outage(tmp: Path, seconds: float) -> dict[str, Any]:
    """Broker SIGKILLed mid-stream for ``seconds``; a persistent subscriber checks sequence numbers."""
    port = free_port()
    persist = f"persistence true\npersistence_location {tmp}/\nautosave_interval 1\n"
    broker = start_mosquitto(tmp, extra=persist, port=port)
    collector = Collector(port, "edge/outage/+/detections", client_id="outage-collector")
    camera = {"type": "file", "path": str(CLIP), "loop": True, "realtime": True, "drop_policy": "block"}
    log = tmp / "outage.log"
    proc = start_daemon(write_config(tmp, "outage", port, camera, world_onnx()), log)
    try:
        assert wait(lambda: collector.count() >= 20, 120), "nothing arrived before the outage"
        time.sleep(2)  # let the broker autosave the subscriber's session
        broker.proc.send_signal(signal.SIGKILL)
        broker.proc.wait(10)
        down = time.monotonic()
        time.sleep(seconds)
        broker = start_mosquitto(tmp, extra=persist, port=port)
        up = time.monotonic()
        time.sleep(10)
        proc.send_signal(signal.SIGTERM)
        proc.wait(120)
        produced = published(log)
        wait(lambda: len(set(collector.seqs)) >= produced, 60)
        received = collector.seqs[:]
        lost = sorted(set(range(produced)) - set(received))
        return {
            "scenario": "broker killed mid-stream",
            "outage_s": round(up - down, 1),
            "produced": produced,
            "received": len(received),
            "unique_received": len(set(received)),
            "lost": len(lost),
            "duplicates": len(received) - len(set(received)),
            "in_order": received == sorted(received),
        }
    finally:
        proc.kill()
        collector.stop()
        broker.proc.kill()


def rtsp_kills(tmp: Path, kills: int) -> dict[str, Any]:
    """RTSP server SIGKILLed ``kills`` times (down 2 s each): from its restart to the next publication."""
    why = rtsp.available()
    if why:
        raise SystemExit(f"rtsp: {why}")
    server = rtsp.RtspServer(free_port())
    server.start()
    port = free_port()
    broker = start_mosquitto(tmp, port=port)
    collector = Collector(port, "edge/rtsp/+/detections", client_id="rtsp-collector")
    arrivals: list[float] = []
    stop = threading.Event()

    def watch() -> None:
        seen = 0
        while not stop.is_set():
            n = collector.count()
            arrivals.extend([time.monotonic()] * (n - seen))
            seen = n
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    camera = {
        "type": "url",
        "url": server.url,
        "read_timeout_s": 2,
        "reconnect_initial_s": 0.2,
        "reconnect_max_s": 2,
    }
    log = tmp / "rtsp.log"
    proc = start_daemon(write_config(tmp, "rtsp", port, camera, world_onnx()), log)
    fds: list[int] = []
    threads: list[int] = []
    resumes: list[float] = []
    try:
        assert wait(lambda: len(arrivals) >= 10, 120), "no frames from the RTSP camera"
        for _ in range(kills):
            fds.append(len(os.listdir(f"/proc/{proc.pid}/fd")))
            threads.append(len(os.listdir(f"/proc/{proc.pid}/task")))
            server.kill()
            time.sleep(2.0)
            server.start()
            restarted = time.monotonic()
            assert wait(lambda r=restarted: any(t > r for t in arrivals), 60), "did not resume"
            resumes.append(min(t for t in arrivals if t > restarted) - restarted)
            time.sleep(2.0)
        fds.append(len(os.listdir(f"/proc/{proc.pid}/fd")))
        threads.append(len(os.listdir(f"/proc/{proc.pid}/task")))
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        resumes_sorted = sorted(resumes)
        return {
            "scenario": "RTSP server killed",
            "kills": kills,
            "resume_s": [round(r, 2) for r in resumes],
            "resume_p50_s": round(resumes_sorted[len(resumes_sorted) // 2], 2),
            "resume_max_s": round(max(resumes), 2),
            "open_fds_before_each_kill_and_after": fds,
            "threads_before_each_kill_and_after": threads,
            "exit_code": proc.returncode,
        }
    finally:
        stop.set()
        proc.kill()
        server.kill()
        collector.stop()
        broker.proc.kill()


def crash_outbox(tmp: Path, kills: int) -> dict[str, Any]:
    """SIGKILL the daemon at random moments while it writes its outbox (no broker), then deliver."""
    port = free_port()
    camera = {"type": "file", "path": str(CLIP), "loop": True, "realtime": False, "drop_policy": "block"}
    config = write_config(tmp, "crash", port, camera, world_onnx())
    db = tmp / "crash-outbox.sqlite"
    rng = random.Random(0)
    checks = []
    for i in range(kills):
        proc = start_daemon(config, tmp / "crash.log")
        time.sleep(8 + rng.random() * 4)  # model loaded, frames flowing into the outbox
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with sqlite3.connect(db) as con:
            integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
            rows = con.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
        checks.append({"kill": i + 1, "integrity": integrity, "rows": rows})
    stored = checks[-1]["rows"]
    broker = start_mosquitto(tmp, port=port)
    collector = Collector(port, "edge/crash/+/detections", client_id="crash-collector")
    started = time.time()
    proc = start_daemon(config, tmp / "crash.log")
    try:
        wait(lambda: collector.count() >= stored, 120)
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        from datetime import datetime

        before = [m for m in collector.messages if datetime.fromisoformat(m[2]).timestamp() < started]
        return {
            "scenario": "SIGKILL during outbox writes",
            "kills": kills,
            "after_each_kill": checks,
            "stored_at_restart": stored,
            "delivered_of_those": len(before),
            "duplicates_of_those": len(before) - len(set(before)),
        }
    finally:
        proc.kill()
        collector.stop()
        broker.proc.kill()


def crash_build(tmp: Path) -> dict[str, Any]:
    """SIGKILL while the INT8 (Q/DQ) model is being calibrated on first boot; what does the next boot do?"""
    port = free_port()
    broker = start_mosquitto(tmp, port=port)
    cache = tmp / "cache"
    camera = {"type": "file", "path": str(CLIP), "realtime": False, "drop_policy": "block", "max_frames": 30}
    model = resolve_onnx(ROOT / ".assets" / "yolo11n-pose.pt", (320, 416), cache)[0]
    engine = {"backend": "onnxruntime", "precision": "int8", "calibration": {"frames": 40}}
    config = write_config(tmp, "build", port, camera, model, cache_dir=cache, engine=engine)
    log = tmp / "build.log"
    proc = start_daemon(config, log)
    try:
        # Kill while the quantizer writes the INT8 model (its temporary file exists): mid-build.
        assert wait(lambda: any((cache / "qdq").glob(".*.tmp")), 300), "the INT8 build never started"
        time.sleep(1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

        def temp_files() -> list[str]:
            return sorted(
                str(p.relative_to(cache))
                for p in (cache / "qdq").rglob("*")
                if p.is_file() and (p.name.endswith(".tmp") or "/.qdq-" in str(p))
            )

        left = temp_files()
        calib = sorted((cache / "calibration").rglob("*.jpg"))
        t0 = time.monotonic()
        proc = start_daemon(config, log)
        proc.wait(600)
        second = time.monotonic() - t0
        after = temp_files()
        models = sorted(p.name for p in (cache / "qdq").glob("*.onnx"))
        t0 = time.monotonic()
        proc = start_daemon(config, log)
        proc.wait(600)
        third = time.monotonic() - t0
        text = log.read_text(errors="replace")
        return {
            "scenario": "SIGKILL during the INT8 build (calibration)",
            "temp_files_left_by_the_killed_boot": left,
            "calibration_frames_kept": len(calib),
            "temp_files_after_the_next_boot": after,
            "int8_models_after_the_next_boot": models,
            "next_boot_exit_code": 0 if "stopped: 30 frames published" in text else "see log",
            "next_boot_s (rebuilds, then runs 30 frames)": round(second, 1),
            "boot_after_that_s (loads the cache)": round(third, 1),
            "log_lines": [
                ln for ln in text.splitlines() if "stale" in ln or "quarantin" in ln or "INT8 model" in ln
            ][:5],
        }
    finally:
        proc.kill()
        broker.proc.kill()


def wrap(tmp: Path, messages: int, kills: int) -> dict[str, Any]:
    """More than 65,535 QoS 1 messages through the real publisher and outbox with paho's own 16-bit ids,
    health between them and status/info at every connect; the publisher SIGKILLed at random points while
    the broker withholds acknowledgements (SIGSTOP); an independent subscriber counts."""
    started = time.monotonic()
    # Each life starts its ids just below 65,535 and lives long enough for them to come round again (more
    # than 65,535 publications): the second time, ids that acknowledged health messages are reused.
    produced, received, wraps = kill_rounds(
        tmp, rounds=kills, wrap=0, rate=3000, seed=11, min_messages=messages, life_s=(25.0, 35.0)
    )
    return {
        "scenario": "wrap",
        "messages": len(produced),
        "id_wraps": wraps,
        "received": len(produced & received),
        "lost": len(produced - received),
        "seconds": round(time.monotonic() - started, 1),
    }


def soak(tmp: Path, frames: int, png: Path) -> dict[str, Any]:
    """``frames`` frames of the looping clip as fast as they go; RSS and open fds sampled over time."""
    port = free_port()
    broker = start_mosquitto(tmp, port=port)
    collector = Collector(port, "edge/soak/+/detections", client_id="soak-collector")
    model = resolve_onnx(ROOT / ".assets" / "yolo11n-pose.pt", (256, 320), CACHE)[0]
    camera = {
        "type": "file",
        "path": str(CLIP),
        "loop": True,
        "realtime": False,
        "drop_policy": "block",
        "max_frames": frames,
    }
    log = tmp / "soak.log"
    proc = start_daemon(write_config(tmp, "soak", port, camera, model), log)
    samples: list[tuple[float, int, float, int]] = []
    t0 = time.monotonic()
    try:
        while proc.poll() is None:
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
                rss = int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1]) / 1024
                fds = len(os.listdir(f"/proc/{proc.pid}/fd"))
            except (OSError, StopIteration):
                break
            samples.append((time.monotonic() - t0, collector.count(), rss, fds))
            time.sleep(2)
        proc.wait(60)
        wait(lambda: collector.count() >= frames, 60)
    finally:
        proc.kill()
        collector.stop()
        broker.proc.kill()
    warm = [s for s in samples if s[1] >= frames * 0.1]
    result = {
        "scenario": "accelerated soak",
        "frames": frames,
        "received": collector.count(),
        "lost": frames - len(set(collector.seqs)),
        "duration_s": round(samples[-1][0], 1) if samples else None,
        "rss_mb_after_warmup_first_last_max": [
            round(warm[0][2], 1),
            round(warm[-1][2], 1),
            round(max(s[2] for s in warm), 1),
        ]
        if warm
        else None,
        "fds_after_warmup_min_max": [min(s[3] for s in warm), max(s[3] for s in warm)] if warm else None,
    }
    _plot(samples, png, frames)
    result["png"] = str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png)
    return result


def _plot(samples: list[tuple[float, int, float, int]], png: Path, frames: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [s[1] for s in samples]
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    a.plot(x, [s[2] for s in samples], color="tab:blue")
    a.set_ylabel("RSS (MiB)")
    a.set_ylim(bottom=0)
    a.set_title(f"edge-daemon soak: {frames} frames of the looping clip (yolo11n-pose 256x320, CPU)")
    b.plot(x, [s[3] for s in samples], color="tab:orange")
    b.set_ylabel("open file descriptors")
    b.set_ylim(bottom=0)
    b.set_xlabel("frames published")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "scenario", choices=["all", "outage", "rtsp", "crash-outbox", "crash-build", "wrap", "soak"]
    )
    parser.add_argument("--seconds", type=float, default=30.0, help="broker outage length")
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--frames", type=int, default=50_000)
    parser.add_argument("--messages", type=int, default=70_000, help="wrap: messages to publish at least")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "soak.png")
    parser.add_argument("--out", type=Path, help="append the JSON lines here")
    args = parser.parse_args()
    runs: dict[str, Callable[[Path], dict[str, Any]]] = {
        "outage": lambda t: outage(t, args.seconds),
        "rtsp": lambda t: rtsp_kills(t, args.kills),
        "crash-outbox": lambda t: crash_outbox(t, args.kills),
        "crash-build": crash_build,
        "wrap": lambda t: wrap(t, args.messages, args.kills),
        "soak": lambda t: soak(t, args.frames, args.png),
    }
    names = [n for n in runs if n != "soak"] if args.scenario == "all" else [args.scenario]
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
            result = runs[name](Path(tmp))
        line = json.dumps(result)
        print(line, flush=True)
        if args.out:
            with args.out.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
