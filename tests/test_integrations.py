"""The integrations against the real things: Prometheus metrics scraped and parsed by prometheus_client,
health checks, the MJPEG live view (a real socket, a slow client), MQTT control and Home Assistant
discovery through a real mosquitto, discovery payloads checked against Home Assistant's schema."""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_daemon.app import run_daemon
from edge_daemon.config import Settings
from edge_daemon.pipeline.health import PipelineStats
from tests.conftest import Broker, free_port, start_mosquitto, subscribed

HA_SCHEMA = json.loads((Path(__file__).parent / "data" / "ha_discovery_schema.json").read_text())


@pytest.fixture(autouse=True)
def _http_from_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """conftest turns HTTP off through the environment (which wins over settings): here the settings say."""
    monkeypatch.delenv("EDGE_HTTP__ENABLED", raising=False)


def _settings(broker_port: int, clip: Path, model: Path, device: str, **extra: Any) -> Settings:
    camera = {"name": "cam0", "type": "file", "path": str(clip), "loop": True, "realtime": True}
    camera.update(extra.pop("camera", {}))
    data: dict[str, Any] = {
        "device_id": device,
        "cameras": [camera],
        "model": {"path": str(model)},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "connect_timeout_s": 5},
        "log": {"stats_interval_s": 0.5},
        "http": {"enabled": False},
        **extra,
    }
    return Settings(**data)


@contextlib.contextmanager
def running(settings: Settings, finish: bool = False) -> Iterator[dict[str, Any]]:
    """``run_daemon`` on a thread until the block ends (with ``finish``, until its cameras end); yields a
    dict that gets ``stats`` at the end."""
    stop, out = threading.Event(), dict[str, Any]()

    def target() -> None:
        try:
            out["stats"] = run_daemon(settings, stop)
        except BaseException as exc:  # surfaced by the test below
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    try:
        yield out
        if finish:
            thread.join(180)
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive(), "the daemon did not stop"
    if "error" in out:
        raise out["error"]


def _get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _wait_http(url: str, status: int = 200, timeout: float = 90.0) -> bytes:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            last = _get(url, 5)
            if last[0] == status:
                return last[1]
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}; last {last}")


def _metrics(port: int) -> dict[str, Any]:
    status, body = _get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return {f.name: f for f in text_string_to_metric_families(body.decode())}


def _sample(families: dict[str, Any], name: str, suffix: str = "", **labels: str) -> float:
    for sample in families[name].samples:
        if sample.name == name + suffix and all(sample.labels.get(k) == v for k, v in labels.items()):
            return float(sample.value)
    raise KeyError(f"{name}{suffix} {labels}")


def test_metrics_and_health_of_a_running_daemon(tmp_path: Path, clip: Path, world_onnx: Path) -> None:
    broker = start_mosquitto(tmp_path)
    port = free_port()
    settings = _settings(broker.port, clip, world_onnx, "metrics", http={"port": port})
    try:
        with running(settings):
            _wait_http(f"http://127.0.0.1:{port}/healthz/ready")
            time.sleep(2.0)
            m = _metrics(port)
            assert _sample(m, "edge_daemon_up") == 1.0
            assert _sample(m, "edge_daemon_engine_info", backend="onnxruntime", precision="fp32") == 1.0
            frames = _sample(m, "edge_camera_frames", "_total", camera="cam0")
            assert frames >= 5 and _sample(m, "edge_camera_connected", camera="cam0") == 1.0
            assert 3.0 <= _sample(m, "edge_camera_fps", camera="cam0") <= 15.0, "the clip plays at 10 fps"
            assert _sample(m, "edge_camera_dropped_by_policy", "_total", camera="cam0") >= 0
            assert _sample(m, "edge_mqtt_connected") == 1.0
            assert _sample(m, "edge_outbox_pending") >= 0 and _sample(m, "edge_outbox_dropped", "_total") == 0
            for hist in ("edge_inference_latency_seconds", "edge_end_to_end_latency_seconds"):
                count = _sample(m, hist, "_count")
                buckets = [s for s in m[hist].samples if s.name == hist + "_bucket"]
                assert [s.value for s in buckets] == sorted(s.value for s in buckets), "cumulative buckets"
                assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == count >= 5
                assert 0 < _sample(m, hist, "_sum") / count < 5.0, "seconds, not milliseconds"
            later = _metrics(port)
            assert _sample(later, "edge_camera_frames", "_total", camera="cam0") >= frames

            broker.proc.terminate()  # the broker goes away: still alive, no longer ready
            broker.proc.wait(10)
            body = json.loads(_wait_http(f"http://127.0.0.1:{port}/healthz/ready", 503, 30))
            assert body["ready"] is False and "not connected to the MQTT broker" in body["reasons"]
            status, live = _get(f"http://127.0.0.1:{port}/healthz")
            assert status == 200 and json.loads(live)["live"] is True
    finally:
        broker.proc.kill()
        broker.proc.wait(10)
    with pytest.raises(OSError):  # the server stops with the daemon
        _get(f"http://127.0.0.1:{port}/healthz", 2)


def test_health_while_loading_and_a_taken_port(caplog: pytest.LogCaptureFixture) -> None:
    from edge_daemon.config import HttpConfig
    from edge_daemon.web import DaemonState, WebServer

    port = free_port()
    server = WebServer(HttpConfig(port=port), DaemonState(cameras=["cam0"]))
    assert server.start()
    try:
        status, body = _get(f"http://127.0.0.1:{port}/healthz")
        assert status == 200 and json.loads(body)["phase"] == "loading", "alive while the engine builds"
        status, body = _get(f"http://127.0.0.1:{port}/healthz/ready")
        assert status == 503 and json.loads(body)["reasons"] == ["daemon is loading"]
        assert _get(f"http://127.0.0.1:{port}/cameras/cam0/stream.mjpeg")[0] == 404, "live view is off"
        families = _metrics(port)
        assert _sample(families, "edge_daemon_up") == 0.0
        second = WebServer(HttpConfig(port=port), DaemonState(cameras=["cam0"]))
        with caplog.at_level(logging.ERROR):
            assert not second.start(), "the port is taken: the daemon runs on without HTTP"
        assert "cannot serve on" in caplog.text
        second.stop()
    finally:
        server.stop()


def _mjpeg_frames(port: int, camera: str, count: int) -> list[np.ndarray]:
    """Read ``count`` JPEG parts of the camera's multipart stream, over a plain socket."""
    frames: list[np.ndarray] = []
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET /cameras/{camera}/stream.mjpeg HTTP/1.0\r\n\r\n".encode())  # not chunked
        data = b""
        while len(frames) < count:
            chunk = sock.recv(65536)
            assert chunk, f"the stream ended: {data[:300]!r}"
            data += chunk
            while True:
                head = data.find(b"Content-Length: ")
                if head < 0:
                    break
                end = data.find(b"\r\n\r\n", head)
                size = int(data[head + 16 : data.find(b"\r\n", head)])
                if end < 0 or len(data) < end + 4 + size:
                    break
                jpeg = data[end + 4 : end + 4 + size]
                frames.append(np.asarray(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)))
                data = data[end + 4 + size :]
    return frames


def _head(port: int, path: str) -> bytes:
    """The response's status line and headers."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.0\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(4096)
        return data.split(b"\r\n\r\n")[0]


def test_live_view_streams_annotated_frames_and_a_stalled_viewer_costs_nothing(
    tmp_path: Path, broker: Broker, clip: Path, world_onnx: Path
) -> None:
    port = free_port()
    http = {"port": port, "live_view": True, "live_fps": 10, "max_width": 640, "max_viewers": 2}
    camera = {"loop": False, "realtime": False, "drop_policy": "block", "max_frames": 200}
    settings = _settings(broker.port, clip, world_onnx, "live", http=http, camera=camera)
    # A viewer that never reads: its socket buffer fills, the server must skip frames for it.
    stalled, second = socket.socket(), socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    request = b"GET /cameras/cam0/stream.mjpeg HTTP/1.0\r\n\r\n"
    try:
        with running(settings, finish=True) as out:
            _wait_http(f"http://127.0.0.1:{port}/healthz/ready")
            for viewer in (stalled, second):
                viewer.connect(("127.0.0.1", port))
                viewer.sendall(request)
            time.sleep(0.5)
            assert b" 503 " in _head(port, "/cameras/cam0/stream.mjpeg"), "max_viewers (2) are watching"
            second.close()  # a viewer leaves: its place is free again once the server notices (<= 2 s)
            deadline = time.monotonic() + 10
            while b"multipart/x-mixed-replace" not in _head(port, "/cameras/cam0/stream.mjpeg"):
                assert time.monotonic() < deadline, "the place of a viewer who left stays taken"
                time.sleep(0.2)
            time.sleep(2.5)  # the probe above left too
            frames = _mjpeg_frames(port, "cam0", 3)
            assert all(f is not None and f.shape == (480, 640, 3) for f in frames), "scaled to max_width"
            assert _get(f"http://127.0.0.1:{port}/cameras/nope/stream.mjpeg")[0] == 404
            status, jpeg = _get(f"http://127.0.0.1:{port}/cameras/cam0/latest.jpg")
            assert status == 200 and jpeg[:2] == b"\xff\xd8"
    finally:
        stalled.close()
        second.close()
    stats: PipelineStats = out["stats"]
    assert stats.published == 200, "every frame published although one viewer never read a byte"


def _control(broker: Broker, topic: str, payload: bytes) -> None:
    import paho.mqtt.publish as publish

    publish.single(topic, payload, qos=1, hostname=broker.host, port=broker.port)


def test_mqtt_control_switches_detection_and_threshold(
    broker: Broker, clip: Path, world_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(broker.port, clip, world_onnx, "ctl")
    base = "edge/ctl/cam0"
    with subscribed(broker, "edge/ctl/#") as sub, running(settings), caplog.at_level(logging.INFO):
        assert sub.wait_for(lambda m: bool(sub.on("/detect/state") and sub.on("/threshold/state")), 60)
        assert sub.on("/detect/state")[-1] == b"ON" and sub.on("/threshold/state")[-1] == b"0.25"
        assert sub.wait_for(lambda m: len(sub.on("/detections")) >= 3, 60)

        _control(broker, f"{base}/detect/set", b"off")
        assert sub.wait_for(lambda m: sub.on("/detect/state")[-1] == b"OFF", 10)
        time.sleep(1.5)  # frames inferred before the switch drain (a few in the queues, ~0.2 s each)
        before = len(sub.on("/detections"))
        time.sleep(2.0)
        assert len(sub.on("/detections")) == before, "no detections while detection is off"
        health = json.loads(sub.on("/health")[-1])["cameras"]["cam0"]
        assert health["detect"] is False and health["detect_off_skipped"] > 0

        _control(broker, f"{base}/detect/set", b"ON")
        _control(broker, f"{base}/threshold/set", b"0.6")
        assert sub.wait_for(lambda m: sub.on("/threshold/state")[-1] == b"0.6", 10)
        mark = len(sub.on("/detections"))
        assert sub.wait_for(lambda m: len(sub.on("/detections")) >= mark + 10, 30), "detection is back on"
        later = [json.loads(p) for p in sub.on("/detections")[mark + 2 :]]
        scores = [d["confidence"] for msg in later for d in msg["detections"]]
        assert scores and min(scores) >= 0.6, "nothing below the threshold set over MQTT"

        for topic, bad in (
            ("detect/set", b"maybe"),
            ("threshold/set", b"abc"),
            ("threshold/set", b"1.5"),
            ("threshold/set", b"0.1"),  # below detect.conf: those were never decoded
            ("threshold/set", b"nan"),
            ("threshold/set", b"0." + b"5" * 100),
        ):
            _control(broker, f"{base}/{topic}", bad)
        deadline = time.monotonic() + 10
        while caplog.text.count("mqtt control: ignored") < 6 and time.monotonic() < deadline:
            time.sleep(0.1)
    assert caplog.text.count("mqtt control: ignored") == 6, "one line per bad payload"
    assert sub.on("/threshold/state")[-1] == b"0.6" and sub.on("/detect/state")[-1] == b"ON"


def _retained(broker: Broker, topic: str, settle: float = 1.5) -> dict[str, bytes]:
    """What the broker holds retained under ``topic`` now (a fresh subscriber)."""
    with subscribed(broker, topic) as sub:
        time.sleep(settle)
        return {t: p for t, p, retained in sub.messages if retained and p}


def _validate(topic: str, payload: bytes) -> dict[str, Any]:
    component = topic.split("/")[1]
    config = json.loads(payload)
    jsonschema.Draft202012Validator({"$ref": f"#/$defs/{component}", "$defs": HA_SCHEMA["$defs"]}).validate(
        config
    )
    assert jsonschema.Draft202012Validator({"$ref": "#/$defs/topic", "$defs": HA_SCHEMA["$defs"]}).is_valid(
        topic
    )
    return config


def test_home_assistant_discovery_valid_and_removed_cleanly(
    tmp_path: Path, broker: Broker, clip: Path, world_onnx: Path
) -> None:
    jinja2 = pytest.importorskip("jinja2")  # Home Assistant renders value templates with Jinja2
    zones = [
        {"name": "west", "units": "norm", "polygon": [[0, 0.25], [0.42, 0.25], [0.42, 0.75], [0, 0.75]]},
        {"name": "east", "units": "norm", "polygon": [[0.6, 0.2], [1, 0.2], [1, 0.8], [0.6, 0.8]]},
    ]
    zones[0]["labels"] = ["person"]
    first = _settings(
        broker.port,
        clip,
        world_onnx,
        "hadev",
        camera={"zones": zones, "max_frames": 30},
        homeassistant={"state_file": str(tmp_path / "ha.json")},
    )
    node = "homeassistant/+/edge_daemon_hadev/+/config"
    with running(first):
        time.sleep(4.0)
    configs = _retained(broker, node)
    checked = {topic: _validate(topic, payload) for topic, payload in configs.items()}
    names = {c["name"] for c in checked.values()}
    assert {
        "cam0 fps",
        "cam0 detection",
        "cam0 confidence threshold",
        "cam0 person snapshot",
        "cam0 west person count",
        "cam0 west all occupancy",
        "cam0 east all count",
    } <= names
    assert len({c["unique_id"] for c in checked.values()}) == len(checked), "unique ids"
    # Every entity's state topic holds what its template expects.
    state = _retained(broker, "edge/hadev/#")
    for config in checked.values():
        topic = config.get("state_topic") or config.get("image_topic")
        assert topic in state, f"{config['name']}: nothing retained on {topic}"
        template = config.get("value_template")
        if template:
            raw = state[topic].decode()
            value_json = json.loads(raw) if raw.startswith("{") else None
            rendered = jinja2.Environment().from_string(template).render(value=raw, value_json=value_json)
            assert rendered in ("ON", "OFF") or float(rendered) >= 0, f"{config['name']}: {rendered!r}"
    assert state["edge/hadev/status"] == b"offline", "availability: offline after the run"

    # The east zone goes: its entities are removed (empty retained config), the others stay.
    second = first.model_copy(
        update={"cameras": [first.cameras[0].model_copy(update={"zones": first.cameras[0].zones[:1]})]}
    )
    with running(second):
        time.sleep(3.0)
    after = _retained(broker, node)
    removed = {t for t in configs if "_east_" in t}
    assert len(removed) == 2 and not removed & set(after), "east's count and occupancy are gone"
    assert set(after) == set(configs) - removed
