"""Shared fixtures: the real assets, a real mosquitto broker on a free loopback port, a real subscriber."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.helpers.synthetic import synthetic_model

ROOT = Path(__file__).resolve().parent.parent
ASSETS = Path(os.environ.get("EDGE_ASSETS_DIR", ROOT / ".assets"))
MODEL_CACHE = ROOT / ".cache" / "edge-daemon"
WORLD_IMGSZ = (480, 576)


@pytest.fixture(autouse=True)
def _private_outbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test (and every daemon it starts) gets its own MQTT outbox file, snapshot store and Home
    Assistant discovery record. The tests
    written before ``publish.detections`` existed count one detections message per frame: they keep
    ``all``; the analytics tests (test_analytics*.py) take this variable away to get the default."""
    monkeypatch.setenv("EDGE_MQTT__OUTBOX__PATH", str(tmp_path / "outbox.sqlite"))
    monkeypatch.setenv("EDGE_ANALYTICS__SNAPSHOTS__DIR", str(tmp_path / "snapshots"))
    monkeypatch.setenv("EDGE_PUBLISH__DETECTIONS", "all")
    # The HTTP server binds a fixed port by default: off unless a test turns it on (on a free port).
    monkeypatch.setenv("EDGE_HTTP__ENABLED", "false")
    monkeypatch.setenv("EDGE_HOMEASSISTANT__STATE_FILE", str(tmp_path / "ha-discovery.json"))


def _asset(name: str) -> Path:
    path = ASSETS / name
    if not path.is_file():
        pytest.fail(f"missing test asset {path}: run `python3 scripts/fetch_assets.py` (make test does)")
    return path


@pytest.fixture(scope="session")
def clip() -> Path:
    """vtest.avi: 768x576, 795 frames of pedestrians (Debian opencv-doc)."""
    return _asset("vtest.avi")


@pytest.fixture(scope="session")
def world_pt() -> Path:
    return _asset("yolov8s-world.pt")


@pytest.fixture(scope="session")
def world_onnx(world_pt: Path) -> Path:
    """YOLO-World v8s exported to ONNX at 480x576 through the daemon's own export path (cached)."""
    from edge_daemon.build.export import resolve_onnx

    path, _ = resolve_onnx(world_pt, WORLD_IMGSZ, MODEL_CACHE)
    return path


@pytest.fixture(scope="session")
def frames(clip: Path) -> list[np.ndarray]:
    """A fixed set of real frames from the clip: every 40th of the first 400."""
    cap = cv2.VideoCapture(str(clip))
    out = []
    for i in range(400):
        ok, img = cap.read()
        assert ok, f"clip ended early at frame {i}"
        if i % 40 == 0:
            out.append(img)
    cap.release()
    return out


def run_cli(*args: str, timeout: float | None = None, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """``python -m edge_daemon ARGS`` from the repository root, output captured as text; never raises
    on the exit code (tests assert it). ``kwargs`` go to ``subprocess.run`` (env, preexec_fn, ...)."""
    return subprocess.run(
        [sys.executable, "-m", "edge_daemon", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


@dataclass
class Broker:
    host: str
    port: int
    proc: subprocess.Popen[bytes]
    conf: Path


def start_mosquitto(tmp: Path, extra: str = "", port: int | None = None) -> Broker:
    exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(exe).exists():
        pytest.fail("mosquitto is not installed: `apt-get install mosquitto` (make test does)")
    port = port or free_port()
    conf = tmp / f"mosquitto-{port}.conf"
    # mosquitto keeps the first "persistence" line it reads: only default it when ``extra`` does not set it.
    persistence = "" if "persistence " in extra else "persistence false\n"
    # Started as root, mosquitto switches to the user "mosquitto", which cannot write its persistence file
    # into the test's folder (it then loses every stored session at a restart): stay the same user.
    user = "user root\n" if os.geteuid() == 0 else ""
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\n{user}{persistence}{extra}", encoding="utf-8"
    )
    proc = subprocess.Popen([exe, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
    except RuntimeError:
        proc.kill()
        raise
    return Broker("127.0.0.1", port, proc, conf)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One real mosquitto per test session, on a free loopback port."""
    b = start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield b
    b.proc.terminate()
    b.proc.wait(10)


@dataclass
class Subscriber:
    """A real paho client that records every message it receives."""

    client: mqtt.Client
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cond.notify_all()

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:  # type: ignore[no-untyped-def]
        with self.cond:
            return self.cond.wait_for(lambda: predicate(self.messages), timeout=timeout)

    def on(self, topic_suffix: str) -> list[bytes]:
        with self.cond:
            return [p for t, p, _ in self.messages if t.endswith(topic_suffix)]


@contextlib.contextmanager
def subscribed(broker: Broker, topic: str) -> Iterator[Subscriber]:
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    sub = Subscriber(client)
    client.on_message = sub.on_message
    ready = threading.Event()
    client.on_subscribe = lambda *a: ready.set()
    client.connect(broker.host, broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    assert ready.wait(10), "subscription not acknowledged"
    try:
        yield sub
    finally:
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def subscriber_factory(broker: Broker):  # type: ignore[no-untyped-def]
    return lambda topic: subscribed(broker, topic)


@pytest.fixture(scope="session")
def yolo26_e2e_onnx() -> Path:
    """YOLO26n with its end-to-end head: output (1, 300, 6), metadata end2end True."""
    pytest.importorskip("ultralytics")
    return synthetic_model("yolo26n.yaml", (480, 640), nms=False)


@pytest.fixture(scope="session")
def pose_onnx() -> Path:
    """The real yolo11n-pose checkpoint exported to ONNX at 480x640 through the daemon's export path."""
    from edge_daemon.build.export import resolve_onnx

    path, _ = resolve_onnx(_asset("yolo11n-pose.pt"), (480, 640), MODEL_CACHE)
    return path
