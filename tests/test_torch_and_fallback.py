"""The torch executor on the CPU (its GPU path: test_gpu_pipeline.py), batching several cameras into one
engine call, and the clean CPU fallback when a GPU engine is configured on a machine without a GPU."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_daemon.app import run_daemon
from edge_daemon.build.export import resolve_onnx, resolve_torchscript
from edge_daemon.config import Settings
from edge_daemon.errors import EngineError, ModelError
from edge_daemon.model.preprocess import preprocess
from edge_daemon.runtime.torchscript import TorchEngine
from tests.conftest import ROOT, Broker, subscribed

torch = pytest.importorskip("torch")
IMGSZ = (480, 576)


def _gpu_here() -> bool:
    from edge_daemon.gpu import probe

    return probe("torch") is None


@pytest.fixture(scope="module")
def pose_pt() -> Path:
    path = ROOT / ".assets" / "yolo11n-pose.pt"
    if not path.is_file():
        pytest.skip("run scripts/fetch_assets.py")
    return path


@pytest.fixture(scope="module")
def world_ts(world_pt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path, _ = resolve_torchscript(world_pt, IMGSZ, tmp_path_factory.mktemp("ts"))
    return path


def test_torchscript_export_is_cached_and_keyed(pose_pt: Path, tmp_path: Path) -> None:
    first, sha = resolve_torchscript(pose_pt, (320, 320), tmp_path)
    stamp = first.stat().st_mtime_ns
    again, _ = resolve_torchscript(pose_pt, (320, 320), tmp_path)
    assert again == first and first.stat().st_mtime_ns == stamp and sha[:16] in first.name
    other, _ = resolve_torchscript(pose_pt, (320, 416), tmp_path)
    assert other != first and "320x416" in other.name
    with pytest.raises(ModelError, match=r"TorchScript file runs only with engine\.backend 'torch'"):
        resolve_onnx(first, None, tmp_path)


def test_torch_executor_equals_onnxruntime_on_the_same_weights(
    world_pt: Path, world_ts: Path, frames: list[np.ndarray], tmp_path: Path
) -> None:
    import onnxruntime as ort

    onnx, _ = resolve_onnx(world_pt, IMGSZ, tmp_path)
    session = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    engine = TorchEngine.load(world_ts, device_index=None, half=False, max_batch=2)
    try:
        assert engine.info.input_hw == IMGSZ and engine.info.backend == "torch"
        assert "person" in engine.info.metadata["names"] and engine.device_io() is None  # CPU: host only
        x = np.concatenate([preprocess(f, IMGSZ)[0] for f in frames[:2]])
        got = engine.infer(x)
        name = session.get_inputs()[0].name  # the ONNX export has a fixed batch of 1
        want = np.concatenate([session.run(None, {name: x[i : i + 1]})[0] for i in range(2)])
        assert got.shape == want.shape == (2, 84, want.shape[2])
        # boxes in input pixels, scores in [0, 1]: float32 round-off only
        np.testing.assert_allclose(got[:, :4], want[:, :4], atol=0.05)
        np.testing.assert_allclose(got[:, 4:], want[:, 4:], atol=1e-3)
        with pytest.raises(ValueError, match=r"input must be \(1..2, 3, 480, 576\)"):
            engine.infer(np.zeros((3, 3, *IMGSZ), np.float32))
    finally:
        engine.close()


def test_torch_executor_refuses_bad_files_and_fp16_on_cpu(world_ts: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.torchscript"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(ModelError, match="not a loadable TorchScript file"):
        TorchEngine.load(bad, device_index=None, half=False)
    with pytest.raises(EngineError, match="fp16 needs a CUDA device"):
        TorchEngine.load(world_ts, device_index=None, half=True)


def _settings(broker: Broker, clip: Path, model: Path, cameras: int = 1, **extra: object) -> Settings:
    return Settings(
        device_id="fallback",
        cameras=[
            {"name": f"cam{i}", "type": "file", "path": str(clip), "drop_policy": "block", "max_frames": 8}
            for i in range(cameras)
        ],
        model={"path": str(model), "imgsz": list(IMGSZ)},
        mqtt={"host": "127.0.0.1", "port": broker.port, "connect_timeout_s": 5},
        **extra,  # type: ignore[arg-type]
    )


def test_two_cameras_share_engine_calls(broker: Broker, clip: Path, world_ts: Path) -> None:
    """With max_batch 2, the frames waiting at both cameras go to the engine as one batch; each camera's
    detections are the ones it gets alone."""
    seen: dict[tuple[str, int], np.ndarray] = {}

    def keep(frame, dets) -> None:  # type: ignore[no-untyped-def]
        seen[(frame.camera, frame.seq)] = dets.xyxy

    engine = {"backend": "torch", "precision": "fp32", "device_index": None}
    alone = run_daemon(_settings(broker, clip, world_ts, engine=engine), threading.Event(), on_result=keep)
    single = dict(seen)
    seen.clear()
    both = run_daemon(
        _settings(broker, clip, world_ts, cameras=2, engine={**engine, "max_batch": 2}),
        threading.Event(),
        on_result=keep,
    )
    assert alone.batches == alone.inferred == 8
    assert both.inferred == 16 and both.batches < 16, "no engine call carried two cameras"
    for (_cam, seq), boxes in seen.items():
        np.testing.assert_allclose(boxes, single[("cam0", seq)], atol=0.05)


@pytest.mark.skipif(_gpu_here(), reason="this machine has a GPU: nothing to fall back from")
@pytest.mark.parametrize("backend", ["torch", "tensorrt"])
def test_gpu_engine_without_a_gpu_falls_back_to_the_cpu_once(
    backend: str, broker: Broker, clip: Path, world_onnx: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = {"backend": backend, "precision": "fp16"}
    settings = _settings(broker, clip, world_onnx, engine=engine)
    with subscribed(broker, "edge/fallback/#") as sub, caplog.at_level(logging.INFO):
        stats = run_daemon(settings, threading.Event())
        assert sub.wait_for(lambda m: any(t.endswith("/info") for t, _, _ in m))
        assert sub.wait_for(lambda m: len([1 for t, _, _ in m if t.endswith("/detections")]) >= 8)
    assert stats.published == 8
    warnings = [r.getMessage() for r in caplog.records if "falling back to the CPU path" in r.getMessage()]
    assert len(warnings) == 1 and f"engine {backend} cannot run here" in warnings[0]
    info = json.loads(sub.on("/info")[-1])
    assert info["backend"] == "onnxruntime" and info["pipeline"] == "cpu" and info["fallback"]
    first = json.loads(sub.on("/detections")[0])
    assert first["model"]["backend"] == "onnxruntime" and first["model"]["precision"] == "fp32"


@pytest.mark.skipif(_gpu_here(), reason="this machine has a GPU")
def test_fallback_can_be_refused(broker: Broker, clip: Path, world_onnx: Path) -> None:
    settings = _settings(broker, clip, world_onnx, engine={"backend": "torch"}, gpu={"cpu_fallback": False})
    with pytest.raises(EngineError, match=r"engine torch: no usable GPU here: .*cpu_fallback is off"):
        run_daemon(settings, threading.Event())
