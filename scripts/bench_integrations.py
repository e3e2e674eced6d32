"""What the integrations cost and gain, on the demo clip (YOLO-World v8s, 480x576):

``openvino``: the daemon end to end on OpenVINO (precision auto: bf16 where the CPU has it; the LATENCY
hint, and THROUGHPUT with its requests in flight) against the
same daemon on ONNX Runtime FP32 and against Ultralytics' own OpenVINO export ``predict(stream=True)`` at the
same shape; the bare engines too. Rounds alternate (ORT, OpenVINO, Ultralytics, ...), medians and ratios.

``http``: the daemon (the CPU default) with the HTTP server and live view off, and on with one viewer
reading the MJPEG stream all along; rounds alternate off/on/on/off, medians and their ratio.

    .venv/bin/python scripts/bench_integrations.py openvino [--frames 300] [--rounds 3]
    .venv/bin/python scripts/bench_integrations.py http [--frames 300] [--rounds 3]

Daemon runs publish to a counting publisher (openvino) or to a private mosquitto (http).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_daemon.app import load_model, run_daemon  # noqa: E402
from edge_daemon.config import Settings  # noqa: E402
from edge_daemon.model.preprocess import preprocess  # noqa: E402
from edge_daemon.tools.bench import (  # noqa: E402
    _bare,
    _bench_settings,
    _daemon,
    _first_frame,
    _ultralytics,
    machine_description,
)


def _demo(frames: int, **override: Any) -> Settings:
    data = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cam = data["cameras"][0]
    cam.update(max_frames=frames, path=str(ROOT / cam["path"]))
    data["model"]["path"] = str(ROOT / data["model"]["path"])
    data["model"]["cache_dir"] = str(ROOT / data["model"]["cache_dir"])
    data["analytics"] = {"snapshots": {"dir": tempfile.mkdtemp(prefix="bench-snaps-")}}
    data.update(override)
    return Settings(**data)


def _med(values: list[float]) -> float:
    return statistics.median(values)


def bench_openvino(frames: int, rounds: int) -> dict[str, Any]:
    ort_settings, clip = _bench_settings(_demo(frames), frames)
    ov_settings, _ = _bench_settings(_demo(frames, engine={"backend": "openvino"}), frames)
    tp = {"backend": "openvino", "performance_hint": "THROUGHPUT"}
    tp_settings, _ = _bench_settings(_demo(frames, engine=tp), frames)
    ort, ov, ov_tp = load_model(ort_settings), load_model(ov_settings), load_model(tp_settings)
    tensor, _ = preprocess(_first_frame(clip), ov.engine.info.input_hw)
    runs: dict[str, list[float]] = {
        k: [] for k in ("ort", "openvino", "openvino_throughput", "ultralytics", "ort_bare", "ov_bare")
    }
    for r in range(rounds):
        print(f"round {r + 1}/{rounds}", file=sys.stderr)
        runs["ort_bare"].append(_bare(ort.engine, tensor, 50))
        runs["ov_bare"].append(_bare(ov.engine, tensor, 50))
        runs["ort"].append(_daemon(ort_settings, ort, mqtt=False)[0])
        runs["openvino"].append(_daemon(ov_settings, ov, mqtt=False)[0])
        runs["openvino_throughput"].append(_daemon(tp_settings, ov_tp, mqtt=False)[0])
        runs["ultralytics"].append(_ultralytics(ov.onnx_path, clip, ov_settings, frames, ov))
    for model in (ort, ov, ov_tp):
        model.engine.close()
    med = {k: _med(v) for k, v in runs.items()}
    return {
        "machine": machine_description(),
        "openvino_precision": ov.engine.info.precision,
        "frames": frames,
        "rounds": rounds,
        "per_round_fps": runs,
        "median_fps": med,
        "ratios": {
            "openvino_daemon_vs_ort_daemon": med["openvino"] / med["ort"],
            "openvino_daemon_vs_ultralytics_openvino": med["openvino"] / med["ultralytics"],
            "openvino_throughput_daemon_vs_ultralytics_openvino": med["openvino_throughput"]
            / med["ultralytics"],
            "openvino_throughput_daemon_vs_ort_daemon": med["openvino_throughput"] / med["ort"],
            "openvino_bare_vs_ort_bare": med["ov_bare"] / med["ort_bare"],
        },
    }


def _viewer(port: int, stop: threading.Event, counts: list[int]) -> None:
    """One viewer reading the live stream as fast as it comes, counting JPEGs; it connects again while the
    daemon is still loading (503) or not yet listening."""
    while not stop.is_set():
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
        except OSError:
            time.sleep(0.1)
            continue
        with sock:
            sock.sendall(b"GET /cameras/cam0/stream.mjpeg HTTP/1.0\r\n\r\n")
            sock.settimeout(1.0)
            while not stop.is_set():
                try:
                    chunk = sock.recv(1 << 16)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not chunk:
                    break
                counts[0] += chunk.count(b"Content-Type: image/jpeg")
        time.sleep(0.1)


def _http_run(frames: int, broker_port: int, on: bool) -> tuple[float, int]:
    port = _free_port()
    http = {"enabled": on, "port": port, "live_view": on}
    settings = _demo(frames, http=http, mqtt={"port": broker_port, "host": "127.0.0.1"})
    stop, counts = threading.Event(), [0]
    viewer = threading.Thread(target=_viewer, args=(port, stop, counts), daemon=True)
    if on:
        viewer.start()
    stats = run_daemon(settings, threading.Event())
    stop.set()
    if on:
        viewer.join(5)
    return stats.fps(), counts[0]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_http(frames: int, rounds: int) -> dict[str, Any]:
    os.environ.pop("EDGE_HTTP__ENABLED", None)
    work = Path(tempfile.mkdtemp(prefix="bench-http-"))
    port = _free_port()
    (work / "m.conf").write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    broker = subprocess.Popen([exe, "-c", str(work / "m.conf")], stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    off: list[float] = []
    on: list[float] = []
    viewed: list[int] = []
    try:
        for r in range(rounds):
            for state in (False, True) if r % 2 == 0 else (True, False):
                print(f"round {r + 1}/{rounds}: http {'on' if state else 'off'}", file=sys.stderr)
                fps, jpegs = _http_run(frames, port, state)
                (on if state else off).append(fps)
                if state:
                    viewed.append(jpegs)
    finally:
        broker.terminate()
        broker.wait(10)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "machine": machine_description(),
        "frames": frames,
        "rounds": rounds,
        "per_round_fps": {"off": off, "on_one_viewer": on},
        "jpegs_received_per_on_round": viewed,
        "median_fps": {"off": _med(off), "on_one_viewer": _med(on)},
        "ratio_on_vs_off": _med(on) / _med(off),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["openvino", "http"])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    np.random.seed(0)
    result = (bench_openvino if args.what == "openvino" else bench_http)(args.frames, args.rounds)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
