"""The TensorRT engine life cycle, run through the TensorRT test double (tests/doubles/tensorrt).

Over 400 lines on purpose: one table of life-cycle cases (keys, caches, quarantine, locks, calibration)
that share the same fixtures and the double's counters.

No real TensorRT runs here: the double executes networks with ONNX Runtime and checks what TensorRT
checks. These tests prove the daemon's side: keys, caching, calibration protocol, atomicity, locking,
quarantine and the named-tensor execution path.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import yaml

from tests.conftest import ROOT, run_cli

DOUBLES = ROOT / "tests" / "doubles"
if str(DOUBLES) not in sys.path:
    sys.path.insert(0, str(DOUBLES))

from edge_daemon.app import load_model  # noqa: E402
from edge_daemon.build.artifacts import build_lock  # noqa: E402
from edge_daemon.build.tensorrt.keys import read_l4t_release  # noqa: E402
from edge_daemon.config import Settings  # noqa: E402
from edge_daemon.errors import EngineError  # noqa: E402
from edge_daemon.files import atomic_write, read_manifest  # noqa: E402
from edge_daemon.model.preprocess import preprocess  # noqa: E402
from edge_daemon.model.tasks import DecodeParams  # noqa: E402
from edge_daemon.model.tasks.detect import decode_one  # noqa: E402
from edge_daemon.runtime.tensorrt.planfile import split_ultralytics_engine  # noqa: E402
from tests.doubles.hostmem import HostMemory  # noqa: E402

# The very module object the daemon imports as ``tensorrt``: the double (typed Any, not the real API stubs).
trt: Any = importlib.import_module("tensorrt")
assert hasattr(trt, "STATS"), "tests must run against the TensorRT double, never a real TensorRT"


@pytest.fixture(autouse=True)
def _fresh_double():
    trt.reset()
    yield
    trt.reset()


def _config(tmp_path: Path, model: Path, clip: Path, **engine: object) -> dict:
    eng: dict = {"backend": "tensorrt", "precision": "int8", "calibration": {"frames": 12}}
    eng.update(engine)
    return {
        "device_id": "jetson1",
        "cameras": [{"name": "cam0", "type": "file", "path": str(clip)}],
        "model": {"path": str(model), "cache_dir": str(tmp_path / "cache")},
        "engine": eng,
    }


def _boot(data: dict, memory: HostMemory | None = None):  # type: ignore[no-untyped-def]
    return load_model(Settings(**data), memory=memory or HostMemory())


def _calibration_images(tmp_path: Path, clip: Path, count: int) -> Path:
    """The clip's first ``count`` frames as JPEG files, for ``calibration.source: images``."""
    images = tmp_path / "calib"
    images.mkdir()
    cap = cv2.VideoCapture(str(clip))
    for i in range(count):
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(images / f"{i:03d}.jpg"), frame)
    cap.release()
    return images


def _plans(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "tensorrt" / "engines").glob("*.plan"))


def test_first_boot_builds_and_calibrates_then_later_boots_load(tmp_path, world_onnx, clip) -> None:
    data = _config(tmp_path, world_onnx, clip)
    first = _boot(data)
    assert first.engine.info.backend == "tensorrt" and first.engine.info.precision == "int8"
    assert first.tag.precision == "int8"
    first.engine.close()
    assert trt.STATS["builds"] == 1
    assert trt.STATS["calibration_batches"] == 12, "static batch-1 model: 12 frames = 12 batches of 1"
    root = tmp_path / "cache" / "tensorrt"
    [plan] = _plans(tmp_path)
    manifest = read_manifest(plan)
    assert manifest is not None and manifest.precision == "int8"
    assert manifest.data["key"]["device"]["compute_capability"] == "8.7"
    assert manifest.data["calibration"]["images"] == 12 and manifest.data["names"].startswith("{0: 'person'")
    assert len(list((root / "calibration-cache").glob("*.cache"))) == 1
    assert len(list((root / "timing-cache").glob("*.cache"))) == 1
    assert (
        json.loads(next((root.parent / "calibration").glob("cam0-12-*/set.json")).read_text())["source"]
        == "camera cam0"
    )
    assert plan.read_bytes().startswith(b"TRTDOUBLE1"), "a plain plan: no Ultralytics JSON header in front"

    for _ in range(2):  # every later boot: load only
        again = _boot(data)
        again.engine.close()
    assert trt.STATS["builds"] == 1 and trt.STATS["calibration_batches"] == 12
    assert trt.STATS["deserialized"] == 4, "3 boots, and the build's own look at its layers (inspector)"


def _mutate_model(src: Path, dst: Path) -> Path:
    import onnx

    model = onnx.load(str(src))
    entry = model.metadata_props.add()
    entry.key, entry.value = "retrained", "yes"
    onnx.save(model, str(dst))
    return dst


@pytest.mark.parametrize("change", ["device", "tensorrt", "model", "calibration-data", "precision"])
def test_what_changes_the_key_rebuilds(tmp_path, world_onnx, clip, change, caplog) -> None:
    images = _calibration_images(tmp_path, clip, 10)
    data = _config(tmp_path, world_onnx, clip, calibration={"source": "images", "images": str(images)})
    _boot(data).engine.close()
    assert trt.STATS["builds"] == 1
    memory = HostMemory()
    if change == "device":
        trt.DEVICE.update(name="NVIDIA Orin NX", compute_capability="8.8")
        memory = HostMemory("NVIDIA Orin NX", "8.8")
    elif change == "tensorrt":
        trt.__version__ = "10.14.1.2"  # a JetPack upgrade
    elif change == "model":
        data["model"]["path"] = str(_mutate_model(world_onnx, tmp_path / "retrained.onnx"))
    elif change == "calibration-data":
        frame = np.asarray(cv2.imread(str(images / "003.jpg")))
        cv2.imwrite(str(images / "003.jpg"), 255 - frame)
    else:
        data["engine"]["precision"] = "fp16"
    with caplog.at_level(logging.WARNING):
        _boot(data, memory).engine.close()
    assert trt.STATS["builds"] == 2
    if change in {"device", "tensorrt"}:
        # the stale plan was moved aside with one line saying why
        assert any(
            "moved" in r.getMessage() and "this device runs TensorRT" in r.getMessage()
            for r in caplog.records
        )
        bad = (tmp_path / "cache" / "tensorrt" / "engines").glob("*.plan.bad-*")
        assert len([p for p in bad if not p.name.endswith(".json")]) == 1
    _boot(data, memory).engine.close()
    assert trt.STATS["builds"] == 2, "and the new engine is then reused"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "manifest"])
def test_corrupt_plan_is_quarantined_and_rebuilt(tmp_path, world_onnx, clip, damage, caplog) -> None:
    data = _config(tmp_path, world_onnx, clip, precision="fp16")
    _boot(data).engine.close()
    [plan] = _plans(tmp_path)
    if damage == "truncate":
        plan.write_bytes(plan.read_bytes()[:1000])
    elif damage == "garbage":
        plan.write_bytes(b"\0" * 4096)
    else:
        plan.with_name(plan.name + ".json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        engine = _boot(data).engine
    engine.close()
    assert trt.STATS["builds"] == 2
    reasons = " ".join(r.getMessage() for r in caplog.records)
    assert (
        ("checksum does not match" in reasons)
        if damage != "manifest"
        else ("no readable manifest" in reasons)
    )
    assert len(list(plan.parent.glob("*.bad-*"))) >= 1


def test_plan_from_another_version_that_keeps_its_name_is_refused_and_rebuilt(
    tmp_path, world_onnx, clip
) -> None:
    """TensorRT itself refuses a plan (deserialize returns None): quarantine and rebuild, no crash."""
    data = _config(tmp_path, world_onnx, clip, precision="fp32")
    _boot(data).engine.close()
    [plan] = _plans(tmp_path)
    blob = plan.read_bytes().replace(b'"version": "10.13.0.35"', b'"version": "10.13.0.99"')
    plan.write_bytes(blob)  # same size, refused by the runtime; fix the checksum so only TensorRT objects
    manifest = json.loads(plan.with_name(plan.name + ".json").read_text())
    import hashlib

    manifest["plan_sha256"] = hashlib.sha256(blob).hexdigest()
    plan.with_name(plan.name + ".json").write_text(json.dumps(manifest))
    _boot(data).engine.close()
    assert trt.STATS["builds"] == 2


def test_corrupt_calibration_cache_is_quarantined_and_recalibrated(tmp_path, world_onnx, clip) -> None:
    data = _config(tmp_path, world_onnx, clip)
    _boot(data).engine.close()
    [cache] = list((tmp_path / "cache" / "tensorrt" / "calibration-cache").glob("*.cache"))
    cache.write_bytes(b"TRT-0000-garbage\nnothing useful\n")
    for plan in _plans(tmp_path):
        plan.unlink()  # force a rebuild, which reads the cache first
    _boot(data).engine.close()
    assert trt.STATS["builds"] == 2 and trt.STATS["calibration_batches"] == 24
    assert len(list(cache.parent.glob("*.bad-*"))) == 1
    assert cache.read_bytes().startswith(b"TRT-1013-EntropyCalibration2")


def test_calibration_cache_reused_when_only_the_plan_is_gone(tmp_path, world_onnx, clip) -> None:
    data = _config(tmp_path, world_onnx, clip)
    _boot(data).engine.close()
    for plan in _plans(tmp_path):
        plan.unlink()
    _boot(data).engine.close()
    assert trt.STATS["builds"] == 2 and trt.STATS["calibration_batches"] == 12, "no second calibration"


def test_no_fast_int8_never_downgrades_silently(tmp_path, world_onnx, clip, caplog) -> None:
    trt.FAST_INT8 = False
    data = _config(tmp_path, world_onnx, clip)
    with pytest.raises(EngineError, match="no fast INT8; refusing"):
        _boot(data)
    data["engine"]["allow_fp16_fallback"] = True
    with caplog.at_level(logging.WARNING):
        model = _boot(data)
    model.engine.close()
    assert model.engine.info.precision == "fp16" and model.tag.precision == "fp16"
    assert any("NO FAST INT8" in r.getMessage() for r in caplog.records)
    [plan] = _plans(tmp_path)
    assert read_manifest(plan).data["precision_requested"] == "int8"  # type: ignore[union-attr]


def test_tensorrt_11_builds_int8_explicitly_from_qdq(tmp_path, world_onnx, clip, frames) -> None:
    """TensorRT 11 has no calibrators: INT8 is a strongly typed network from the Q/DQ model."""
    trt.__version__ = "11.4.0.106"
    with pytest.raises(EngineError, match=r"removed implicit FP16"):
        _boot(_config(tmp_path, world_onnx, clip, precision="fp16"))
    data = _config(tmp_path, world_onnx, clip, calibration={"frames": 8, "algorithm": "minmax"})
    model = _boot(data)
    try:
        assert model.engine.info.precision == "int8"
        assert trt.STATS["calibration_batches"] == 0, (
            "no implicit calibration: the scales are in the Q/DQ model"
        )
        [plan] = _plans(tmp_path)
        manifest = read_manifest(plan)
        assert manifest is not None and manifest.data["qdq_model"].startswith(world_onnx.stem + "-tensorrt-")
        assert manifest.data["key"]["calib_algorithm"] == "qdq-minmax"
        x, meta = preprocess(frames[1], model.engine.info.input_hw)
        dets = decode_one(model.engine.infer(x)[0], meta, DecodeParams(80))
        assert len(dets) >= 3 and 0 in dets.class_id.tolist(), "real INT8 execution still finds the people"
    finally:
        model.engine.close()
    # 8.6 builds Q/DQ models too (weakly typed): tests/test_tensorrt_faithful.py


def test_tensorrt_8_6_builds_with_explicit_batch(tmp_path, world_onnx, clip) -> None:
    trt.__version__ = "8.6.2.3"  # JetPack 6.0; the double refuses networks without EXPLICIT_BATCH
    model = _boot(_config(tmp_path, world_onnx, clip, precision="fp16"))
    model.engine.close()
    assert trt.STATS["builds"] == 1


def test_detections_through_the_double_match_onnxruntime(tmp_path, world_onnx, clip, frames) -> None:
    from edge_daemon.config import OnnxRuntimeEngineConfig
    from edge_daemon.runtime import load_engine

    ort_engine = load_engine(OnnxRuntimeEngineConfig(), world_onnx)
    trt_model = _boot(_config(tmp_path, world_onnx, clip, precision="fp16"))
    params = DecodeParams(80)
    try:
        for frame in frames[:4]:
            x, meta = preprocess(frame, ort_engine.info.input_hw)
            ref = decode_one(ort_engine.infer(x)[0], meta, params)
            got = decode_one(trt_model.engine.infer(x)[0], meta, params)
            assert len(got) == len(ref) > 0
            assert got.class_id.tolist() == ref.class_id.tolist()
            np.testing.assert_allclose(got.xyxy, ref.xyxy, atol=1.0)
            np.testing.assert_allclose(got.confidence, ref.confidence, atol=2e-3)
    finally:
        ort_engine.close()
        trt_model.engine.close()


def test_engine_refuses_bad_inputs_like_tensorrt(tmp_path, world_onnx, clip) -> None:
    model = _boot(_config(tmp_path, world_onnx, clip, precision="fp32"))
    engine = model.engine
    with pytest.raises(ValueError, match=r"input must be \(1\.\.1, 3, 480, 576\)"):
        engine.infer(np.zeros((2, 3, 480, 576), np.float32))
    ctx = engine._context  # type: ignore[attr-defined]
    assert not ctx.set_input_shape("images", (2, 3, 480, 576)), "outside the optimization profile"
    assert not ctx.set_input_shape("not-a-tensor", (1, 3, 480, 576))
    assert not ctx.set_tensor_address("not-a-tensor", 1234)
    engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.infer(np.zeros((1, 3, 480, 576), np.float32))


def test_ultralytics_engine_files_load(tmp_path, world_onnx, clip) -> None:
    data = _config(tmp_path, world_onnx, clip, precision="fp16")
    _boot(data).engine.close()
    [plan] = _plans(tmp_path)
    header = {
        "names": {"0": "person", "1": "bicycle", **{str(i): f"class{i}" for i in range(2, 80)}},
        "imgsz": [480, 576],
        "stride": 32,
        "task": "detect",
        "args": {"half": True, "int8": False},
    }
    meta = json.dumps(header).encode()
    ul = tmp_path / "yolov8s-world.engine"
    ul.write_bytes(len(meta).to_bytes(4, "little") + meta + plan.read_bytes())
    got_meta, got_plan = split_ultralytics_engine(ul.read_bytes())
    assert got_meta == header and got_plan == plan.read_bytes()
    data["engine"]["plan"] = str(ul)
    model = _boot(data)
    assert model.engine.info.precision == "fp16" and model.info.names[1] == "bicycle"
    assert len(model.info.names) == 80, "the header's names, checked against the plan's 84-channel output"
    model.engine.close()
    res = run_cli("engine", "info", str(ul))
    assert res.returncode == 0, res.stderr
    assert "Ultralytics engine" in res.stdout and '"imgsz"' in res.stdout
    res = run_cli("engine", "info", str(plan))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["precision"] == "fp16"


def _child(config: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.doubles.provision_child", str(config)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )


def test_sigkill_during_build_leaves_nothing_a_later_boot_loads(tmp_path, world_onnx, clip) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path, world_onnx, clip, precision="fp16")))
    counter = tmp_path / "builds.txt"
    proc = _child(config, TRT_DOUBLE_BUILD_DELAY="60", TRT_DOUBLE_COUNTER=str(counter))
    try:
        lockdir = tmp_path / "cache" / "tensorrt" / "locks"
        deadline = time.monotonic() + 60
        while not (lockdir.is_dir() and any(lockdir.iterdir())) and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.5)  # inside build_serialized_network now
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        proc.kill()
    assert _plans(tmp_path) == [], "no plan may exist after a killed build"
    stale = tmp_path / "cache" / "tensorrt" / "engines" / ".left-by-a-killed-writer.plan.abc.tmp"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"partial")
    proc = _child(config, TRT_DOUBLE_COUNTER=str(counter))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "ready fp16" in out, out
    assert len(_plans(tmp_path)) == 1 and counter.read_text().count("build") == 1
    assert not stale.exists(), "the next boot sweeps temporary files of interrupted builds"


def test_two_daemons_started_together_build_once(tmp_path, world_onnx, clip) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path, world_onnx, clip, precision="fp16")))
    counter = tmp_path / "builds.txt"
    procs = [_child(config, TRT_DOUBLE_BUILD_DELAY="2", TRT_DOUBLE_COUNTER=str(counter)) for _ in range(2)]
    outs = [p.communicate(timeout=180)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all("ready fp16" in o for o in outs)
    assert counter.read_text().count("build") == 1, "exactly one build; the other waited and loaded it"
    assert any("another process is building" in o for o in outs)


def test_build_lock_reports_waiting(tmp_path) -> None:
    lock = tmp_path / "x.lock"
    with build_lock(lock) as free:
        assert free
        child = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from pathlib import Path\n"
                "from edge_daemon.build.artifacts import build_lock\n"
                "try:\n    with build_lock(Path(sys.argv[1]), timeout_s=0.5, poll_s=0.1): pass\n"
                "except TimeoutError as e: print('timeout', e)",
                str(lock),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        assert "timeout" in child.stdout


def test_atomic_write_leaves_old_or_new(tmp_path) -> None:
    target = tmp_path / "a.plan"
    atomic_write(target, b"old")

    class Boom(bytes):
        pass

    with pytest.raises(TypeError):
        atomic_write(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.plan"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "# R36 (release), REVISION: 4.0, GCID: 37537400, BOARD: generic, EABI: aarch64, DATE: ...",
            "R36.4.0",
        ),
        ("# R35 (release), REVISION: 5.0, GCID: 1, BOARD: t186ref", "R35.5.0"),
        ("garbage", ""),
    ],
)
def test_l4t_release_parsing(tmp_path, text, expected) -> None:
    f = tmp_path / "nv_tegra_release"
    f.write_text(text)
    assert read_l4t_release(f) == expected
    assert read_l4t_release(tmp_path / "missing") == ""


@pytest.mark.parametrize(
    ("frame_hw", "expected"),
    [
        ((1080, 1920), (384, 640)),
        ((576, 768), (480, 640)),
        ((720, 1280), (384, 640)),
        ((1920, 1080), (640, 384)),
        ((480, 640), (480, 640)),
        ((100, 2000), (32, 640)),
    ],
)
def test_auto_input_size_follows_the_camera_aspect(frame_hw, expected) -> None:
    from edge_daemon.model.info import auto_imgsz

    assert auto_imgsz(frame_hw) == expected


def test_camera_input_size_is_chosen_once_and_remembered(tmp_path, world_pt, clip, monkeypatch) -> None:
    import edge_daemon.app.boot as app

    settings = Settings(**_config(tmp_path, world_pt, clip))
    assert app.camera_imgsz(settings) == (480, 640)
    memo = tmp_path / "cache" / "auto-imgsz" / "cam0.json"
    assert json.loads(memo.read_text())["frame_hw"] == [576, 768]

    def camera_down(cfg):  # later boots must not need the camera to answer first
        raise AssertionError("camera opened again")

    monkeypatch.setattr(app, "open_source", camera_down)
    assert app.camera_imgsz(settings) == (480, 640)


def test_mqtt_info_reports_the_precision_actually_running(tmp_path, world_onnx, clip, broker) -> None:
    import threading

    from edge_daemon.app import run_daemon
    from tests.conftest import subscribed

    trt.FAST_INT8 = False
    data = _config(tmp_path, world_onnx, clip, allow_fp16_fallback=True)
    data["cameras"][0].update(max_frames=3, drop_policy="block")
    data["mqtt"] = {"host": "127.0.0.1", "port": broker.port}
    with subscribed(broker, "edge/jetson1/#") as sub:
        stats = run_daemon(Settings(**data), threading.Event(), memory=HostMemory())
        assert sub.wait_for(lambda msgs: len([m for m in msgs if m[0].endswith("/detections")]) >= 3, 30)
    assert stats.published == 3
    [info] = [json.loads(p) for t, p, _ in sub.messages if t == "edge/jetson1/info"]
    assert info["backend"] == "tensorrt" and info["precision"] == "fp16", "int8 was asked, fp16 runs"
    msgs = [json.loads(p) for t, p, _ in sub.messages if t.endswith("/detections")]
    assert {m["model"]["precision"] for m in msgs} == {"fp16"}


def test_first_boot_progress_reaches_systemd_status(tmp_path, world_onnx, clip, monkeypatch) -> None:
    import socket

    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    got: list[str] = []
    done = threading.Event()

    def listen() -> None:  # as systemd does, while the boot runs (a datagram queue holds only ~10)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                got.append(sock.recv(4096).decode())

    listener = threading.Thread(target=listen)
    listener.start()
    try:
        _boot(_config(tmp_path, world_onnx, clip)).engine.close()
        time.sleep(0.3)
    finally:
        done.set()
        listener.join()
    sock.close()
    text = "\n".join(got)
    assert "STATUS=capturing calibration frames 12/12" in text
    assert "STATUS=calibrating INT8, batch 12/12" in text and "ETA" in text
    assert "STATUS=building int8 TensorRT engine" in text


def test_enqueue_runs_on_the_callers_buffers_and_infer_rebinds_its_own(
    tmp_path, world_onnx, clip, frames
) -> None:
    """The CUDA stage's path: ``enqueue`` binds the pipeline's input/output addresses and stream; a later
    ``infer`` must bind the engine's own buffers again (the double's addresses are host pointers)."""
    model = _boot(_config(tmp_path, world_onnx, clip, precision="fp32"))
    engine = model.engine
    try:
        x, _ = preprocess(frames[0], engine.info.input_hw)
        want = engine.infer(x)
        assert engine.device_io() is None  # host memory (the double): the pipeline keeps its CPU stage
        mine_in = np.ascontiguousarray(x)
        mine_out = np.zeros_like(want)
        engine.enqueue(mine_in.ctypes.data, [mine_out.ctypes.data], 1, 0)
        np.testing.assert_array_equal(mine_out, want)
        again = engine.infer(preprocess(frames[1], engine.info.input_hw)[0])
        assert not np.array_equal(again, want)
        np.testing.assert_array_equal(mine_out, want)  # infer wrote to its own buffers, not the caller's
        with pytest.raises(ValueError, match=r"batch must be 1\.\.1"):
            engine.enqueue(mine_in.ctypes.data, [mine_out.ctypes.data], 2, 0)
    finally:
        engine.close()


def test_tensorrt_11_starts_although_it_has_no_calibrators(tmp_path, world_onnx, clip) -> None:
    """TensorRT 11 removed the calibrator classes: importing the daemon's TensorRT modules must not touch
    them, or every backend: tensorrt config dies at import, before the explicit-INT8 route can run. A fresh
    process, whose double is TensorRT 11 from the start (as on a real device)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config(tmp_path, world_onnx, clip)))
    proc = _child(config, TRT_DOUBLE_VERSION="11.4.0.106")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "ready int8" in out, out[-3000:]


def test_calibration_that_stops_early_fails_and_caches_nothing(tmp_path, world_onnx, clip, caplog) -> None:
    """TensorRT's bindings treat an exception raised in get_batch as "no more data": calibration ends early
    and a half-calibrated plan would be cached under the full-data key. It must fail loudly instead."""
    images = _calibration_images(tmp_path, clip, 12)
    (images / "006.jpg").write_bytes(b"not a JPEG")  # get_batch raises on the seventh image
    data = _config(tmp_path, world_onnx, clip, calibration={"source": "images", "images": str(images)})
    with pytest.raises(EngineError, match=r"calibration used 6 of 12 batches"):
        _boot(data)
    assert trt.STATS["calibration_batches"] == 6, "the double ended calibration where TensorRT would"
    assert _plans(tmp_path) == []
    assert not list((tmp_path / "cache" / "tensorrt" / "calibration-cache").glob("*.cache"))


def test_a_new_exclusion_set_rebuilds_the_explicit_int8_plan(tmp_path, world_onnx, clip) -> None:
    """The explicit-INT8 plan is built from a Q/DQ model whose float-kept nodes are configurable: they are
    part of the key, so changing them cannot load the plan built from the other set."""
    data = _config(tmp_path, world_onnx, clip, int8_mode="explicit", calibration={"frames": 8})
    _boot(data).engine.close()
    data["engine"]["quantize_exclude"] = "head"
    _boot(data).engine.close()
    assert trt.STATS["builds"] == 2, "the plan of the other exclusion set was loaded"
    keys = [read_manifest(p).data["key"]["quantization"] for p in _plans(tmp_path)]  # type: ignore[union-attr]
    assert sorted(json.loads(k)["exclude"] for k in keys) == ["head", "head-final+attn"]
    assert {json.loads(k)["int8_mode"] for k in keys} == {"explicit"}


def test_no_calibration_cache_is_none_as_tensorrt_documents(tmp_path) -> None:
    """IInt8Calibrator.read_calibration_cache: "a cache object or None if there is no data"."""
    from edge_daemon.build.tensorrt.calibrator import calibrator_class

    cal = calibrator_class("entropy")(iter(()), 1, (1, 3, 32, 32), tmp_path / "none.cache", HostMemory())
    try:
        assert cal.read_calibration_cache() is None
        (tmp_path / "none.cache").write_bytes(b"")
        assert cal.read_calibration_cache() is None and not cal.cache_read
    finally:
        cal.close()
