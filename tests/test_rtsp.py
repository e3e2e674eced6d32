"""Camera drop-outs against a real RTSP server (GStreamer's gst-rtsp-server): killed, restarted, resumed.

The daemon must reconnect by itself, show the outage in the retained ``health`` topic while it lasts,
and leak no thread or file descriptor over repeated outages.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from edge_daemon.app import run_daemon
from edge_daemon.config import Settings
from tests.conftest import Broker, free_port, subscribed
from tests.helpers import rtsp

CYCLES = 3


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def server():  # type: ignore[no-untyped-def]
    why = rtsp.available()
    if why is not None:
        pytest.fail(f"the RTSP server cannot run: {why}")
    srv = rtsp.RtspServer(free_port())
    srv.start()
    yield srv
    srv.kill()


def test_rtsp_server_killed_and_restarted_the_daemon_resumes(
    server: rtsp.RtspServer, broker: Broker, world_onnx: Path
) -> None:
    settings = Settings(
        device_id="rtspdev",
        cameras=[
            {
                "type": "url",
                "name": "door",
                "url": server.url,
                "read_timeout_s": 2,
                "reconnect_initial_s": 0.2,
                "reconnect_max_s": 1.0,
            }
        ],
        model={"path": str(world_onnx)},
        mqtt={"host": "127.0.0.1", "port": broker.port, "connect_timeout_s": 5},
        log={"stats_interval_s": 1},
    )
    results: list[float] = []
    stop = threading.Event()
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["stats"] = run_daemon(settings, stop, on_result=lambda f, d: results.append(time.monotonic()))
        except BaseException as exc:  # surfaced by the assertions below
            box["error"] = exc

    def health(sub) -> list[dict]:  # type: ignore[no-untyped-def]
        return [json.loads(p)["cameras"]["door"] for p in sub.on("/health")]

    with subscribed(broker, "edge/rtspdev/#") as sub:
        daemon = threading.Thread(target=run, name="daemon-under-test")
        daemon.start()
        try:
            deadline = time.monotonic() + 60
            while len(results) < 5 and time.monotonic() < deadline and daemon.is_alive():
                time.sleep(0.05)
            assert len(results) >= 5, f"no frames from the RTSP camera: {box.get('error')}"
            baseline_threads, baseline_fds = threading.active_count(), _open_fds()
            resumes = []
            for cycle in range(CYCLES):
                server.kill()
                assert sub.wait_for(lambda m: any(not h["connected"] for h in health(sub)[-1:]), 20), (
                    f"cycle {cycle}: the outage never showed in the health topic"
                )
                time.sleep(1.0)  # frames captured before the kill may still be finishing
                outage_seen = len(results)
                time.sleep(1.0)
                assert len(results) == outage_seen, "frames kept coming from a dead server"
                server.start()
                restarted = time.monotonic()
                deadline = restarted + 30
                while not [t for t in results if t > restarted] and time.monotonic() < deadline:
                    time.sleep(0.02)
                resumed = [t for t in results if t > restarted]
                assert resumed, f"cycle {cycle}: no frame within 30 s of the server's restart"
                resumes.append(resumed[0] - restarted)
                assert sub.wait_for(lambda m: health(sub)[-1]["connected"], 10)
            # Repeated outages leak nothing: same threads, same descriptors (small slack for sockets
            # that the broker connection or FFmpeg may hold for a moment).
            assert threading.active_count() == baseline_threads
            assert _open_fds() <= baseline_fds + 3
            last = health(sub)[-1]
            assert last["reconnects"] >= CYCLES and last["last_error"]
            assert "rtsp://" not in last["last_error"] or "@" not in last["last_error"]
            print(f"resume after restart: {[round(r, 2) for r in resumes]} s")
            assert max(resumes) < 10
        finally:
            stop.set()
            daemon.join(60)
    assert not daemon.is_alive() and "error" not in box, box.get("error")
