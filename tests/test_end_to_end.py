"""Frames in, MQTT messages out, through a real mosquitto: schema, availability, shutdown, outages."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from edge_daemon.app import run_daemon
from edge_daemon.config import MqttConfig, Settings
from edge_daemon.publish.mqtt import MqttPublisher
from edge_daemon.publish.payload import load_schema
from tests.conftest import ROOT, Broker, free_port, start_mosquitto, subscribed

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def _settings(broker_port: int, clip: Path, model: Path, **camera: object) -> dict:
    cam = {"name": "cam0", "type": "file", "path": str(clip), "drop_policy": "block", "max_frames": 12}
    cam.update(camera)
    return {
        "device_id": "testdev",
        "cameras": [cam],
        "model": {"path": str(model)},
        "mqtt": {"host": "127.0.0.1", "port": broker_port, "connect_timeout_s": 5},
        "log": {"stats_interval_s": 1},
    }


def test_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(load_schema())


def test_pipeline_publishes_schema_valid_messages(broker: Broker, clip: Path, world_onnx: Path) -> None:
    data = _settings(broker.port, clip, world_onnx)
    data["cameras"].append({**data["cameras"][0], "name": "cam1", "max_frames": 6})
    settings = Settings(**data)
    seen: list[tuple[str, int, int]] = []
    with subscribed(broker, "edge/testdev/#") as sub:
        stats = run_daemon(
            settings, threading.Event(), on_result=lambda f, d: seen.append((f.camera, f.seq, len(d)))
        )
        assert sub.wait_for(lambda msgs: len([m for m in msgs if m[0].endswith("/detections")]) >= 18)
        assert sub.wait_for(lambda msgs: (msgs[-1][0], msgs[-1][1]) == ("edge/testdev/status", b"offline"))

    assert stats.published == 18 and stats.captured == {"cam0": 12, "cam1": 6}
    by_cam: dict[str, list[dict]] = {"cam0": [], "cam1": []}
    for topic, payload, _ in sub.messages:
        if topic.endswith("/detections"):
            msg = json.loads(payload)
            VALIDATOR.validate(msg)
            assert topic == f"edge/testdev/{msg['camera']}/detections"
            by_cam[msg["camera"]].append(msg)
    assert [m["seq"] for m in by_cam["cam0"]] == list(range(12))
    assert [m["seq"] for m in by_cam["cam1"]] == list(range(6))
    first = by_cam["cam0"][0]
    runs = {m["run"] for c in by_cam.values() for m in c}
    [info] = [json.loads(p) for t, p, _ in sub.messages if t == "edge/testdev/info"]
    assert runs == {info["run"]} and len(info["run"]) == 16, "one run id, in every message and in info"
    assert first["image"] == {"width": 768, "height": 576}
    assert first["model"]["precision"] == "fp32" and first["model"]["input"] == {"height": 480, "width": 576}
    assert first["model"]["id"].startswith("yolov8s-world-")
    assert {d["label"] for m in by_cam["cam0"] for d in m["detections"]} >= {"person"}
    # What was published is what the pipeline computed, message for message.
    published = {(m["camera"], m["seq"]): len(m["detections"]) for c in by_cam.values() for m in c}
    assert published == {(cam, seq): n for cam, seq, n in seen}
    for m in by_cam["cam0"]:
        for d in m["detections"]:
            b, n = d["box"], d["box_norm"]
            assert 0 <= b["x1"] < b["x2"] <= 768 and 0 <= b["y1"] < b["y2"] <= 576
            assert n["x2"] == pytest.approx(b["x2"] / 768, abs=1e-4)
        assert m["latency_ms"]["end_to_end"] >= m["latency_ms"]["inference"] > 0


def test_status_online_is_retained_and_offline_on_close(broker: Broker) -> None:
    pub = MqttPublisher.from_config(
        MqttConfig(host="127.0.0.1", port=broker.port, client_id="retain-test"), "rt"
    )
    with subscribed(broker, "edge/rt/status") as early:
        pub.start()
        assert pub.connected
        assert early.wait_for(lambda msgs: any(p == b"online" for _, p, _ in msgs), 10)
    # A subscriber arriving later still learns the state: the message is retained.
    with subscribed(broker, "edge/rt/status") as late:
        assert late.wait_for(lambda msgs: any(p == b"online" and retained for _, p, retained in msgs), 10)
        pub.close()
        assert late.wait_for(lambda msgs: msgs[-1][1] == b"offline", 10)
    with subscribed(broker, "edge/rt/status") as later:
        assert later.wait_for(lambda msgs: msgs and msgs[-1][1] == b"offline" and msgs[-1][2], 10)


def _write_config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def _daemon(config: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "edge_daemon", "run", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
    )


def test_sigterm_drains_and_publishes_offline(
    tmp_path: Path, broker: Broker, clip: Path, world_onnx: Path
) -> None:
    data = _settings(
        broker.port, clip, world_onnx, loop=True, realtime=True, max_frames=None, drop_policy="latest"
    )
    data["device_id"] = "termdev"
    config = _write_config(tmp_path, data)
    with subscribed(broker, "edge/termdev/#") as sub:
        proc = _daemon(config)
        try:
            assert sub.wait_for(lambda msgs: len(msgs) >= 6, 120), "no detections arrived"
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
        assert proc.returncode == 0, out
        assert sub.wait_for(lambda msgs: msgs[-1][1] == b"offline", 10)
    assert "received SIGTERM" in out and "Traceback" not in out
    published = int(out.split("stopped: ")[1].split(" frames published")[0])
    received = len(sub.on("/detections"))
    assert published == received, "every frame the daemon published before exiting reached the broker"


def test_last_will_when_killed(tmp_path: Path, broker: Broker, clip: Path, world_onnx: Path) -> None:
    data = _settings(broker.port, clip, world_onnx, loop=True, realtime=True, max_frames=None)
    data["device_id"] = "killdev"
    config = _write_config(tmp_path, data)
    with subscribed(broker, "edge/killdev/status") as sub:
        proc = _daemon(config)
        try:
            assert sub.wait_for(lambda msgs: any(p == b"online" for _, p, _ in msgs), 120), "never online"
            proc.kill()
            proc.wait(10)
        finally:
            proc.kill()
        assert sub.wait_for(lambda msgs: msgs[-1][1] == b"offline", 15), (
            "broker did not publish the Last Will"
        )


def test_broker_down_at_start_loses_nothing(tmp_path: Path, clip: Path, world_onnx: Path) -> None:
    port = free_port()
    data = _settings(port, clip, world_onnx, max_frames=8)
    data["mqtt"]["connect_timeout_s"] = 0.5
    data["device_id"] = "latedev"
    settings = Settings(**data)
    stop = threading.Event()
    result: dict = {}
    runner = threading.Thread(target=lambda: result.setdefault("stats", run_daemon(settings, stop)))
    runner.start()
    time.sleep(2.0)  # the daemon is processing frames while no broker exists
    broker = start_mosquitto(tmp_path, port=port)
    try:
        with subscribed(broker, "edge/latedev/+/detections") as sub:
            runner.join(120)
            assert not runner.is_alive()
            assert sub.wait_for(lambda msgs: len(msgs) >= 8, 30), f"only {len(sub.messages)} of 8 arrived"
        assert sorted(json.loads(p)["seq"] for _, p, _ in sub.messages) == list(range(8))
        assert result["stats"].published == 8
    finally:
        broker.proc.terminate()
        broker.proc.wait(10)


def test_a_slow_frame_is_kept_with_where_it_waited(tmp_path: Path, clip: Path) -> None:
    """A frame slower than 100 ms capture -> publish is kept in ``stats.slow`` with its parts: waiting for
    the inference thread to take it into a batch, from then until its outputs were in the publish thread's
    hands, and publishing. Here the publisher is held once for 0.3 s: that frame's time is in publishing;
    the frames behind it, inferred meanwhile, waited for the publish thread."""
    from edge_daemon.app import build_pipeline, load_model
    from edge_daemon.publish.base import NullPublisher
    from tests.helpers.synthetic import synthetic_model

    class HeldOnce(NullPublisher):
        calls = 0

        def publish_many(self, messages: Any) -> None:
            HeldOnce.calls += 1
            if HeldOnce.calls == 5:
                time.sleep(0.3)
            super().publish_many(messages)

    model_path = synthetic_model("yolov8n.yaml", (192, 256))
    cam = {"name": "cam0", "type": "file", "path": str(clip), "realtime": True, "max_frames": 30,
           "drop_policy": "block"}  # fmt: skip
    settings = Settings(cameras=[cam], model={"path": str(model_path), "cache_dir": str(tmp_path)},
                        publish={"detections": "all"}, http={"enabled": False})  # fmt: skip
    model = load_model(settings)
    try:
        pipeline = build_pipeline(settings, model, HeldOnce())
        stats = pipeline.run(threading.Event())
    finally:
        model.engine.close()
    assert stats.published == 30
    held = [e for e in stats.slow if e[4] >= 290]
    assert len(held) == 1, list(stats.slow)
    _at, e2e, before, engine, after = held[0]
    assert e2e >= 300 and abs(e2e - (before + engine + after)) < 1.0 and before < 200
    # The frames behind it had their outputs early but waited for the publish thread to come back.
    assert any(e[3] >= 100 for e in stats.slow if e is not held[0]), list(stats.slow)
