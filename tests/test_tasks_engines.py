"""Engines with several outputs: a segmentation model's detections and mask prototypes come out of every
backend by name and in order (ONNX Runtime, the TensorRT double, the torch executor), and decode alike."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from edge_daemon.config import OnnxRuntimeEngineConfig, Settings
from edge_daemon.model.info import model_info
from edge_daemon.model.preprocess import preprocess
from edge_daemon.model.tasks import DecodeParams, decoder
from edge_daemon.runtime import load_engine
from tests.conftest import ROOT
from tests.helpers.synthetic import MODELS, synthetic_model
from tests.test_tasks import _fill, _iou, _to_input

pytest.importorskip("ultralytics")
DOUBLES = ROOT / "tests" / "doubles"
if str(DOUBLES) not in sys.path:
    sys.path.insert(0, str(DOUBLES))
from tests.doubles.hostmem import HostMemory  # noqa: E402

trt: Any = importlib.import_module("tensorrt")


def _decode_all(engine, path: Path, frames, conf: float):
    info = model_info(engine.info.metadata, engine.info.input_hw, path, "0" * 64, engine.info.output_shapes)
    decode = decoder(info.head, DecodeParams(num_classes=info.num_classes, conf=conf))
    out = []
    for frame in frames:
        x, meta = preprocess(frame, engine.info.input_hw)
        out.append((decode(tuple(o[0] for o in engine.run(x)), meta), meta))
    return out


def _same(got, ref) -> None:
    for (a, meta), (b, _) in zip(got, ref, strict=True):
        assert len(a) == len(b) > 0
        assert a.class_id.tolist() == b.class_id.tolist()
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=1.0)
        np.testing.assert_allclose(a.confidence, b.confidence, atol=5e-3)
        hw = (meta.dst_h, meta.dst_w)
        ious = [
            _iou(_fill(_to_input(pa, meta), hw), _fill(_to_input(pb, meta), hw))
            for pa, pb in zip(a.polygons, b.polygons, strict=True)
        ]
        assert np.median(ious) >= 0.95 and min(ious) >= 0.5, ious


@pytest.mark.parametrize("name", ["segment", "segment-e2e"])
def test_segmentation_through_the_tensorrt_double_matches_onnxruntime(name, tmp_path, clip, frames) -> None:
    """Two outputs bound by name (``set_tensor_address`` each), downloaded and returned in order."""
    from edge_daemon.app import load_model

    trt.reset()
    yaml, hw, export, _, _ = MODELS[name]
    path = synthetic_model(yaml, hw, **export)
    ref_engine = load_engine(OnnxRuntimeEngineConfig(), path)
    settings = Settings(
        cameras=[{"name": "cam0", "type": "file", "path": str(clip)}],
        model={"path": str(path), "cache_dir": str(tmp_path / "cache")},
        engine={"backend": "tensorrt", "precision": "fp32"},
    )
    model = load_model(settings, memory=HostMemory())
    try:
        assert model.info.head == MODELS[name][4]
        assert model.engine.info.output_names == ref_engine.info.output_names
        assert model.engine.info.output_shapes == ref_engine.info.output_shapes
        conf = 0.5
        got = _decode_all(model.engine, path, frames[:3], conf)
        _same(got, _decode_all(ref_engine, path, frames[:3], conf))
        # the pipeline's device path: every output written to the caller's buffers
        x, _ = preprocess(frames[0], model.engine.info.input_hw)
        want = model.engine.run(x)
        mine = [np.zeros_like(w) for w in want]
        model.engine.enqueue(np.ascontiguousarray(x).ctypes.data, [m.ctypes.data for m in mine], 1, 0)
        for m, w in zip(mine, want, strict=True):
            np.testing.assert_array_equal(m, w)
    finally:
        ref_engine.close()
        model.engine.close()
        trt.reset()


def test_segmentation_through_the_torch_executor_matches_onnxruntime(frames) -> None:
    """A TorchScript export returns (detections, prototypes): both kept, in order (before, the executor
    kept the first alone and a segmentation model could not run)."""
    from edge_daemon.runtime.torchscript import TorchEngine

    yaml, hw, export, _, _ = MODELS["segment"]
    onnx_path = synthetic_model(yaml, hw, **export)
    ts_path = synthetic_model(yaml, hw, fmt="torchscript", **export)
    ref_engine = load_engine(OnnxRuntimeEngineConfig(), onnx_path)
    engine = TorchEngine.load(ts_path, None, half=False)
    try:
        assert [len(s) for s in engine.info.output_shapes] == [2, 3]
        assert engine.info.output_shapes == ref_engine.info.output_shapes
        got = _decode_all(engine, ts_path, frames[:3], 0.5)
        _same(got, _decode_all(ref_engine, onnx_path, frames[:3], 0.5))
    finally:
        engine.close()
        ref_engine.close()


def _int8_settings(path: Path, tmp_path: Path, clip: Path, **engine: object) -> Settings:
    return Settings(
        cameras=[{"name": "cam0", "type": "file", "path": str(clip)}],
        model={"path": str(path), "cache_dir": str(tmp_path / "cache")},
        engine={"backend": "tensorrt", "precision": "int8", "calibration": {"frames": 8}, **engine},
    )


def test_end_to_end_int8_on_tensorrt_10_3_is_refused_with_the_way_out(tmp_path, clip, yolo26_e2e_onnx):
    """TensorRT 10.3 (JetPack 6.1/6.2) dies building implicit INT8 for YOLO26's top-k (ultralytics#23841):
    the daemon says so before calibrating, and names what works; the explicit route builds."""
    from edge_daemon.app import load_model
    from edge_daemon.errors import EngineError

    trt.reset()
    trt.__version__ = "10.3.0.30"
    try:
        with pytest.raises(EngineError, match=r"10\.3.*end-to-end head.*int8_mode: explicit.*fp16.*10\.7"):
            load_model(_int8_settings(yolo26_e2e_onnx, tmp_path, clip), memory=HostMemory())
        assert not list((tmp_path / "cache").rglob("*.plan"))
        explicit = _int8_settings(yolo26_e2e_onnx, tmp_path, clip, int8_mode="explicit")
        model = load_model(explicit, memory=HostMemory())
        assert model.engine.info.precision == "int8" and model.info.head == "detect-e2e"
        model.engine.close()
    finally:
        trt.reset()


def test_end_to_end_int8_keeps_the_top_k_in_float(tmp_path, clip, yolo26_e2e_onnx) -> None:
    """On 10.13 implicit INT8 builds: the head's top-k and its float work are pinned to FP16, its index
    arithmetic is left to TensorRT (an FP16 constraint on integer work has nothing to obey), its stems
    are quantized; the engine inspector shows the top-k ran in FP16."""
    from edge_daemon.app import load_model
    from edge_daemon.build.tensorrt.inspect import precision_of
    from edge_daemon.build.tensorrt.plan import keep_in_float

    trt.reset()
    network = trt.Builder(trt.Logger()).create_network(0)
    assert trt.OnnxParser(network, trt.Logger()).parse(yolo26_e2e_onnx.read_bytes())
    assert keep_in_float(network, "head-final") > 0
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    pinned = {la.name for la in layers if la.precision_is_set}
    names = [la.name for la in layers]
    assert any(n.endswith("/TopK") for n in pinned)
    assert not any(n.split("/")[-1].startswith(("Mod", "Div_1")) for n in pinned)  # top-k index arithmetic
    assert not any("one2one_cv2.0.0/" in n for n in pinned) and any("one2one_cv2.0.0/" in n for n in names)

    model = load_model(_int8_settings(yolo26_e2e_onnx, tmp_path, clip), memory=HostMemory())
    try:
        assert model.engine.info.precision == "int8"
        inspector = cast(Any, model.engine)._engine.create_engine_inspector()
        info = json.loads(inspector.get_engine_information(trt.LayerInformationFormat.JSON))
        ran = {la["Name"]: precision_of(la["Outputs"][0]["Format/Datatype"]) for la in info["Layers"]}
        assert [p for n, p in ran.items() if n.endswith("/TopK")] == ["fp16"]
        assert "int8" in {p for n, p in ran.items() if "one2one_cv2.0.0/" in n}
    finally:
        model.engine.close()
        trt.reset()
