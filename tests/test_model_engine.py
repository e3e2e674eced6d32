"""Model resolution (.pt export cache), metadata, the engine interface and lazy backend imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_daemon.build.export import exported_onnx_path, resolve_onnx
from edge_daemon.config import OnnxRuntimeEngineConfig
from edge_daemon.errors import EngineError, ModelError
from edge_daemon.model.info import model_info, sha256_file
from edge_daemon.runtime import BACKENDS, backend_class, load_engine
from tests.conftest import MODEL_CACHE, WORLD_IMGSZ

ORT = OnnxRuntimeEngineConfig()


def test_pt_export_is_cached_by_content_and_size(world_pt: Path, world_onnx: Path, monkeypatch) -> None:
    sha = sha256_file(world_pt)
    assert world_onnx == exported_onnx_path(world_pt, sha, WORLD_IMGSZ, MODEL_CACHE)
    assert world_onnx.name == f"yolov8s-world-{sha[:16]}-480x576.onnx"
    # Second resolution must not export again: make any export attempt fail loudly.
    import edge_daemon.build.export as model_mod

    def no_export(*args: object) -> None:
        raise AssertionError("exported again although the cache holds this model")

    monkeypatch.setattr(model_mod, "export_pt", no_export)
    assert resolve_onnx(world_pt, WORLD_IMGSZ, MODEL_CACHE) == (world_onnx, sha)
    with pytest.raises(AssertionError, match="exported again"):
        resolve_onnx(world_pt, (384, 576), MODEL_CACHE)  # another size is another key


def test_changed_weights_change_the_key(world_pt: Path, tmp_path: Path) -> None:
    other = tmp_path / world_pt.name
    other.write_bytes(world_pt.read_bytes() + b"\0")
    a = exported_onnx_path(world_pt, sha256_file(world_pt), WORLD_IMGSZ, tmp_path)
    b = exported_onnx_path(other, sha256_file(other), WORLD_IMGSZ, tmp_path)
    assert a != b


def test_failed_export_leaves_no_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ModelError, match="ONNX export at imgsz"):
        resolve_onnx(bad, (320, 320), tmp_path / "cache")
    assert list((tmp_path / "cache" / "onnx").iterdir()) == []


def test_onnx_engine_reads_metadata_and_runs(world_onnx: Path) -> None:
    engine = load_engine(ORT, world_onnx)
    try:
        assert engine.info.input_hw == (480, 576) and engine.info.precision == "fp32"
        info = model_info(engine.info.metadata, engine.info.input_hw, world_onnx, "ab" * 32)
        assert info.num_classes == 80 and info.names[0] == "person" and info.names[2] == "car"
        assert info.task == "detect" and info.stride == 32
        out = engine.infer(np.zeros((1, 3, 480, 576), np.float32))
        assert out.shape == (1, 84, 5670) and out.dtype == np.float32
        with pytest.raises(ValueError, match=r"input must be \(1\.\.1, 3, 480, 576\)"):
            engine.infer(np.zeros((1, 3, 480, 640), np.float32))
    finally:
        engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.infer(np.zeros((1, 3, 480, 576), np.float32))


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, None])
def test_corrupt_or_truncated_model_is_a_model_error(tmp_path: Path, world_onnx: Path, content) -> None:
    path = tmp_path / "bad.onnx"
    path.write_bytes(world_onnx.read_bytes()[:4096] if content is None else content)
    with pytest.raises(ModelError, match="ONNX Runtime cannot load this model"):
        load_engine(ORT, path)


def test_model_without_names_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no class names"):
        model_info({}, (640, 640), tmp_path / "m.onnx", "0" * 64)
    with pytest.raises(ModelError, match="task 'depth' is not supported"):
        model_info({"names": "{0: 'a'}", "task": "depth"}, (640, 640), tmp_path / "m.onnx", "0" * 64)


def test_unknown_backend() -> None:
    assert set(BACKENDS) >= {"onnxruntime"}
    with pytest.raises(EngineError, match="unknown engine backend 'tflite'"):
        backend_class("tflite")


def test_backends_are_imported_lazily() -> None:
    code = (
        "import sys, edge_daemon.runtime, edge_daemon.build, edge_daemon.pipeline, edge_daemon.app\n"
        "import edge_daemon.cli\n"
        "heavy = [m for m in ('onnxruntime', 'tensorrt', 'torch', 'ultralytics') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert res.stdout.strip() == "", f"imported before any backend was chosen: {res.stdout}"
