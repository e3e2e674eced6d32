"""service.workers: camera groups in worker processes around one MQTT connection, through a real
mosquitto, real ONNX Runtime and the demo clip."""

from __future__ import annotations

import itertools
import json
import os
import signal
import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from edge_daemon.app import run_daemon
from edge_daemon.app.workers import WorkerGroup, groups
from edge_daemon.config import Settings
from edge_daemon.errors import EngineError, ModelError
from edge_daemon.publish.mqtt import MqttPublisher
from tests.conftest import Broker, subscribed


def _settings(
    broker: Broker, clip: Path, model: Path, frames: dict[str, int | None], **service: object
) -> dict:
    cams = [
        {"name": name, "type": "file", "path": str(clip), "drop_policy": "block", "max_frames": n}
        if n is not None
        else {"name": name, "type": "file", "path": str(clip), "loop": True, "realtime": True}
        for name, n in frames.items()
    ]
    return {
        "device_id": "workers",
        "cameras": cams,
        "model": {"path": str(model)},
        "mqtt": {"host": broker.host, "port": broker.port, "connect_timeout_s": 5},
        "log": {"stats_interval_s": 1},
        "http": {"enabled": False},
        "service": {"workers": 2, **service},
    }


def _detections(messages: list[tuple[str, bytes, bool]]) -> dict[tuple[str, int], list[tuple[str, float]]]:
    out = {}
    for topic, payload, _ in messages:
        if topic.endswith("/detections"):
            m = json.loads(payload)
            out[(m["camera"], m["seq"])] = [(d["label"], round(d["confidence"], 3)) for d in m["detections"]]
    return out


def test_cameras_are_dealt_round_robin() -> None:
    assert groups(["a", "b", "c", "d", "e"], 2) == [["a", "c", "e"], ["b", "d"]]
    assert groups(["a", "b"], 8) == [["a"], ["b"]]
    assert groups(["a", "b"], 1) == [["a", "b"]]


def test_live_view_is_refused_with_workers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGE_HTTP__ENABLED")
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    cams = [{"name": "a", "type": "file", "path": str(model)}]
    with pytest.raises(ValidationError, match=r"live_view needs service\.workers: 1"):
        Settings(cameras=cams, model={"path": model}, http={"live_view": True}, service={"workers": 2})
    Settings(cameras=cams, model={"path": model}, http={"live_view": True}, service={"workers": 1})


def test_workers_publish_what_one_process_publishes(broker: Broker, clip: Path, world_onnx: Path) -> None:
    frames: dict[str, int | None] = {"cam0": 10, "cam1": 6, "cam2": 8}
    with subscribed(broker, "edge/workers/#") as sub:
        one = Settings(**_settings(broker, clip, world_onnx, frames, workers=1))
        alone = run_daemon(one, threading.Event())
        assert sub.wait_for(lambda msgs: (msgs[-1][0], msgs[-1][1]) == ("edge/workers/status", b"offline"))
        expected = _detections(sub.messages)
        runs_alone = {json.loads(p)["run"] for t, p, _ in sub.messages if t.endswith("/detections")}
    with subscribed(broker, "edge/workers/#") as sub:
        stats = run_daemon(Settings(**_settings(broker, clip, world_onnx, frames)), threading.Event())
        assert sub.wait_for(lambda msgs: (msgs[-1][0], msgs[-1][1]) == ("edge/workers/status", b"offline"))
    assert alone.published == stats.published == 24
    assert stats.captured == {"cam0": 10, "cam1": 6, "cam2": 8}
    got = _detections(sub.messages)
    assert set(got) == {(c, s) for c, n in frames.items() for s in range(n or 0)}
    assert got == expected, "the same detections, frame for frame, as one process"
    assert sum(len(v) for v in got.values()) > 20
    per_camera = [json.loads(p)["seq"] for t, p, _ in sub.messages if t == "edge/workers/cam0/detections"]
    assert per_camera == list(range(10)), "each camera's messages in order"
    # The last info: the retained one of the first run came first.
    info = [json.loads(p) for t, p, _ in sub.messages if t == "edge/workers/info"][-1]
    assert info["workers"] == 2 and info["cameras"] == ["cam0", "cam1", "cam2"]
    assert set(info["decode"]) == {"cam0", "cam1", "cam2"}
    runs = {json.loads(p)["run"] for t, p, _ in sub.messages if t.endswith("/detections")}
    assert runs == {info["run"]} and runs != runs_alone, "one run id over both workers"
    health = json.loads(sub.on("edge/workers/health")[-1])
    assert health["workers"] == 2 and health["published"] == 24
    assert {n: c["frames"] for n, c in health["cameras"].items()} == {"cam0": 10, "cam1": 6, "cam2": 8}
    # service.shared_engine: one engine in a process of its own runs both workers' frames, through the
    # shared memory each worker hands it: the same detections again.
    with subscribed(broker, "edge/workers/#") as sub:
        shared = Settings(**_settings(broker, clip, world_onnx, frames, shared_engine=True))
        stats = run_daemon(shared, threading.Event())
        assert sub.wait_for(lambda msgs: (msgs[-1][0], msgs[-1][1]) == ("edge/workers/status", b"offline"))
    assert stats.published == 24 and stats.captured == {"cam0": 10, "cam1": 6, "cam2": 8}
    assert _detections(sub.messages) == expected, "the same detections through the shared engine"
    info = [json.loads(p) for t, p, _ in sub.messages if t == "edge/workers/info"][-1]
    assert info["workers"] == 2 and info["shared_engine"] is True


def test_a_control_reaches_the_camera_in_its_worker(broker: Broker, clip: Path, world_onnx: Path) -> None:
    import paho.mqtt.publish as publish

    settings = Settings(**_settings(broker, clip, world_onnx, {"cam0": None, "cam1": None}))
    stop = threading.Event()
    result: dict[str, object] = {}
    runner = threading.Thread(target=lambda: result.update(stats=run_daemon(settings, stop)))
    with subscribed(broker, "edge/workers/#") as sub:
        runner.start()
        try:
            assert sub.wait_for(lambda m: len(sub.on("cam1/detections")) >= 3, timeout=120)
            publish.single("edge/workers/cam1/detect/set", "OFF", hostname=broker.host, port=broker.port)
            assert sub.wait_for(lambda m: sub.on("cam1/detect/state")[-1:] == [b"OFF"])

            def cam1_skipped(_: object) -> bool:
                health = [json.loads(p) for p in sub.on("edge/workers/health")]
                return bool(health) and health[-1]["cameras"]["cam1"].get("detect_off_skipped", 0) >= 5

            assert sub.wait_for(cam1_skipped, timeout=30), "the worker running cam1 stopped inferring it"
            n0, n1 = len(sub.on("cam0/detections")), len(sub.on("cam1/detections"))
            assert sub.wait_for(lambda m: len(sub.on("cam0/detections")) >= n0 + 5, timeout=30)
            assert len(sub.on("cam1/detections")) <= n1 + 2, "cam1 is off (a frame or two were in flight)"
        finally:
            stop.set()
            runner.join(60)
        assert sub.wait_for(lambda msgs: (msgs[-1][0], msgs[-1][1]) == ("edge/workers/status", b"offline"))
    assert not runner.is_alive() and "stats" in result


def test_a_worker_that_dies_stops_the_group_with_an_error(
    broker: Broker, clip: Path, world_onnx: Path
) -> None:
    settings = Settings(**_settings(broker, clip, world_onnx, {"cam0": None, "cam1": None}))
    group = WorkerGroup(settings)
    stop = threading.Event()
    about = group.load(stop)
    assert about["names"][0] == "person"
    group.attach(MqttPublisher.from_config(settings.mqtt, settings.device_id))
    runner = threading.Thread(target=group.run, args=(stop, 5.0))
    with subscribed(broker, "edge/workers/#") as sub:
        runner.start()
        assert sub.wait_for(lambda m: len(sub.on("cam1/detections")) >= 2, timeout=120)
        pid = group._workers[1].process.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        runner.join(60)
        assert not runner.is_alive(), "the group stopped by itself"
        assert sub.wait_for(lambda msgs: (msgs[-1][0], msgs[-1][1]) == ("edge/workers/status", b"offline"))
    assert isinstance(group.error, EngineError) and "worker 1 (cam1) died" in str(group.error)
    assert not any(w.process.is_alive() for w in group._workers), "the other worker was stopped"


def test_when_the_shared_engine_dies_the_group_stops_with_an_error(
    broker: Broker, clip: Path, world_onnx: Path
) -> None:
    cams: dict[str, int | None] = {"cam0": None, "cam1": None}
    settings = Settings(**_settings(broker, clip, world_onnx, cams, shared_engine=True))
    group = WorkerGroup(settings)
    stop = threading.Event()
    group.load(stop)
    group.attach(MqttPublisher.from_config(settings.mqtt, settings.device_id))
    runner = threading.Thread(target=group.run, args=(stop, 5.0))
    with subscribed(broker, "edge/workers/#") as sub:
        runner.start()
        assert sub.wait_for(lambda m: len(sub.on("cam1/detections")) >= 2, timeout=120)
        assert group._engine is not None and group._engine.process.pid is not None
        comm = [Path(f"/proc/{pid}/comm").read_text().strip() for pid in group.pids()]
        assert comm == ["edge-worker-0", "edge-worker-1", "edge-engine"], "named for ps and top"
        os.kill(group._engine.process.pid, signal.SIGKILL)
        runner.join(60)
        assert not runner.is_alive(), "the group stopped by itself"
        assert sub.wait_for(lambda msgs: (msgs[-1][0], msgs[-1][1]) == ("edge/workers/status", b"offline"))
    # The relay hears the engine process's end at once (the workers would only on their next batch).
    assert isinstance(group.error, EngineError) and "the engine process died" in str(group.error)
    assert not any(w.process.is_alive() for w in group._workers), "every worker stopped"


@pytest.mark.parametrize("shared", [False, True])
def test_a_worker_that_cannot_load_fails_the_daemon_with_its_error(
    broker: Broker, clip: Path, tmp_path: Path, shared: bool
) -> None:
    """A model that cannot load: the first worker's error (or the engine process's, with a shared engine)
    stops the daemon with the model error's exit code."""
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    settings = Settings(**_settings(broker, clip, bad, {"cam0": 3, "cam1": 3}, shared_engine=shared))
    with pytest.raises(ModelError) as info:
        run_daemon(settings, threading.Event())
    assert info.value.exit_code == 65


def test_the_shared_block_layout_keeps_slots_and_outputs_apart_and_refuses_dynamic_outputs() -> None:
    from pathlib import Path as P

    from edge_daemon.app.engine_server import Bundle
    from edge_daemon.app.shared_memory import Layout
    from edge_daemon.errors import ConfigError as CE
    from edge_daemon.publish.payload import ModelTag
    from edge_daemon.runtime import Artifact, DeviceIO, EngineInfo
    from edge_daemon.types import ModelInfo

    info = EngineInfo("torch", "fp16", "images", (32, 64), 8, output_names=("a", "b"),
                      output_shapes=((84, 42), (32, 8, 16)))  # fmt: skip
    model = ModelInfo("m", "detect", {0: "person"}, 32, (32, 64), "0" * 64)
    tag = ModelTag("m", "fp16", "torch", (32, 64), "detect")
    io = DeviceIO("float16", ((8, 84, 42), (8, 32, 8, 16)))
    bundle = Bundle(info, io, model, tag, P("m.torchscript"), Artifact(P("m.torchscript")), None, 0)
    layout = Layout.of(bundle.info, bundle.io, 3, slots=2)
    assert layout.input_bytes == 3 * 32 * 64 * 2 and layout.output_bytes == [84 * 42 * 4, 32 * 8 * 16 * 4]
    regions = []
    for slot in range(2):
        regions.append((layout.input_offset(slot), 3 * layout.input_bytes))
        regions += [(layout.output_offset(slot, i), 3 * b) for i, b in enumerate(layout.output_bytes)]
    regions.sort()
    assert regions[0][0] == 0 and regions[-1][0] + regions[-1][1] == layout.nbytes
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(regions)), "no gap, no overlap"
    dynamic = Bundle(
        EngineInfo("onnxruntime", "fp32", "images", (32, 64), 1, output_shapes=((84, None),)),
        None, model, tag, P("m.onnx"), Artifact(P("m.onnx")), None, None,
    )  # fmt: skip
    with pytest.raises(CE, match=r"service\.shared_engine: output output0 has a dynamic shape"):
        Layout.of(dynamic.info, dynamic.io, 1)
