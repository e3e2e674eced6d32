"""What real TensorRT refuses or does differently, per version, through the version-faithful double.

Each test here failed on the code before #11 was worked on (the double then forgave it). No real TensorRT
runs: tests/doubles/tensorrt/README.md cites the documented behaviour each rule of the double follows.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
from pathlib import Path
from typing import Any, cast

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from tests.conftest import ROOT

DOUBLES = ROOT / "tests" / "doubles"
if str(DOUBLES) not in sys.path:
    sys.path.insert(0, str(DOUBLES))

from edge_daemon.build.tensorrt.keys import BatchProfile  # noqa: E402
from edge_daemon.build.tensorrt.plan import BuildOptions, build_plan  # noqa: E402
from edge_daemon.config import Settings, TensorRTEngineConfig  # noqa: E402
from edge_daemon.errors import ConfigError, EngineError  # noqa: E402
from edge_daemon.files import read_manifest  # noqa: E402
from edge_daemon.model.preprocess import preprocess  # noqa: E402
from edge_daemon.model.tasks import DecodeParams  # noqa: E402
from edge_daemon.model.tasks.detect import decode_one  # noqa: E402
from edge_daemon.runtime.base import Artifact  # noqa: E402
from edge_daemon.runtime.tensorrt.engine import TensorRTEngine  # noqa: E402
from edge_daemon.runtime.tensorrt.logger import TrtLogger  # noqa: E402
from tests.doubles.hostmem import HostMemory  # noqa: E402
from tests.test_tensorrt import _boot, _config, _plans  # noqa: E402

trt: Any = importlib.import_module("tensorrt")
assert hasattr(trt, "STATS"), "tests must run against the TensorRT double, never a real TensorRT"

VERSIONS = ["8.6.1.6", "10.3.0.26", "10.13.0.35", "11.1.0.4"]  # JetPack 6.0, 6.1/6.2, x86/JP7, 11


@pytest.fixture(autouse=True)
def _fresh_double():
    trt.reset()
    yield
    trt.reset()


def _tiny(path: Path, batch: int | str = 1, hw: int | str = 32, extra: str = "") -> Path:
    """A one-convolution ONNX model (input N x 3 x H x W), optionally ending in a RoiAlign or a MatMul."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["images", "w"], ["y"], name="/model.0/conv/Conv", pads=[1, 1, 1, 1])]
    inits = [w]
    out, out_shape = "y", [batch, 4, hw, hw]
    if extra == "roialign":
        inits += [
            numpy_helper.from_array(np.array([[0, 0, 8, 8]], np.float32), "rois"),
            numpy_helper.from_array(np.array([0], np.int64), "idx"),
        ]
        nodes.append(helper.make_node("RoiAlign", ["y", "rois", "idx"], ["r"], name="/model.1/RoiAlign"))
        out, out_shape = "r", [1, 4, 1, 1]
    if extra == "matmul":
        inits = [numpy_helper.from_array(rng.standard_normal((int(hw), 3)).astype(np.float32), "m")]
        nodes = [helper.make_node("MatMul", ["images", "m"], ["y"], name="/model.0/MatMul")]
        out_shape = [batch, 3, hw, 3]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, hw, hw])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def _agreement(engine: Any, reference: Any, frames: list[np.ndarray]) -> tuple[float, float, float]:
    """(recall of the reference's detections at IoU 0.5, mean |confidence difference| of the matches,
    detections found / reference detections)."""
    params = DecodeParams(80)
    found = total = count = 0
    diffs: list[float] = []
    for frame in frames:
        x, meta = preprocess(frame, reference.info.input_hw)
        ref = decode_one(reference.infer(x)[0], meta, params)
        got = decode_one(engine.infer(x)[0], meta, params)
        total += len(ref)
        count += len(got)
        for box, cls, conf in zip(ref.xyxy, ref.class_id, ref.confidence, strict=True):
            same = got.class_id == cls
            if not same.any():
                continue
            g = got.xyxy[same]
            ix = np.clip(np.minimum(g[:, 2:], box[2:]) - np.maximum(g[:, :2], box[:2]), 0, None).prod(1)
            union = (g[:, 2:] - g[:, :2]).prod(1) + (box[2:] - box[:2]).prod() - ix
            iou = ix / union
            if iou.max() >= 0.5:
                found += 1
                diffs.append(abs(float(got.confidence[same][iou.argmax()]) - float(conf)))
    return found / max(total, 1), float(np.mean(diffs)) if diffs else 1.0, count / max(total, 1)


@pytest.fixture(scope="module")
def fp32_reference(world_onnx):  # type: ignore[no-untyped-def]
    from edge_daemon.config import OnnxRuntimeEngineConfig
    from edge_daemon.runtime import load_engine

    engine = load_engine(OnnxRuntimeEngineConfig(), world_onnx)
    yield engine
    engine.close()


def test_implicit_int8_keeps_the_head_in_float(tmp_path, world_onnx, clip, frames, fp32_reference) -> None:
    """TensorRT quantizes every layer it can unless constrained; a quantized head ruins the class scores.
    The daemon pins the float set to FP16 under OBEY_PRECISION_CONSTRAINTS; the manifest shows it."""
    model = _boot(_config(tmp_path, world_onnx, clip))
    recall, conf_err, ratio = _agreement(model.engine, fp32_reference, frames[:5])
    model.engine.close()
    assert recall >= 0.85 and conf_err <= 0.1 and ratio <= 1.3, (recall, conf_err, ratio)
    [plan] = _plans(tmp_path)
    manifest = read_manifest(plan)
    assert manifest is not None
    blocks = manifest.data["layers"]["blocks"]
    assert blocks["/model.23/"].get("fp16", 0) > 0 and blocks["/model.2/"].get("int8", 0) > 0, blocks
    assert manifest.data["float_set"] == "head-final+attn"

    naive = _boot(_config(tmp_path / "naive", world_onnx, clip, quantize_exclude="none"))
    recall, conf_err, ratio = _agreement(naive.engine, fp32_reference, frames[:5])
    naive.engine.close()
    # The quantized logits collapse every score to a few levels: twice the boxes, all alike.
    assert ratio >= 1.6, ("the double's INT8 must show what a quantized head does", recall, conf_err, ratio)


def _calibrator(shape: tuple[int, int, int, int], tmp_path: Path, batches: int = 2) -> Any:
    from edge_daemon.build.tensorrt.calibrator import calibrator_class

    data = iter([np.random.default_rng(i).random(shape, dtype=np.float32) for i in range(batches)])
    return calibrator_class("entropy")(data, batches, shape, tmp_path / "c.cache", HostMemory())


def test_precision_constraints_bind_only_under_a_constraint_flag(tmp_path) -> None:
    """The double: without OBEY/PREFER a layer precision is a no-op; under OBEY it binds."""
    path = _tiny(tmp_path / "t.onnx")
    got = {}
    for flag in (None, "OBEY_PRECISION_CONSTRAINTS"):
        logger = trt.Logger()
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        assert trt.OnnxParser(network, logger).parse(path.read_bytes())
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        config.int8_calibrator = _calibrator((1, 3, 32, 32), tmp_path)
        network.get_layer(0).precision = trt.float16
        if flag:
            config.set_flag(getattr(trt.BuilderFlag, flag))
        plan = builder.build_serialized_network(network, config)
        engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        got[flag] = engine.header["layers"][0]["precision"]
    assert got == {None: "int8", "OBEY_PRECISION_CONSTRAINTS": "fp16"}


def test_a_static_batch_of_n_builds_with_a_fixed_profile(tmp_path) -> None:
    """A static batch dimension N: the profile's min, opt and max must all be N (it was min 1)."""
    path = _tiny(tmp_path / "b2.onnx", batch=2)
    opts = BuildOptions("int8", 1.0, BatchProfile(2, 2), None, calibration_batch=4)
    result = build_plan(path, opts, TrtLogger(), _calibrator((2, 3, 32, 32), tmp_path))
    assert result.batch_min == 2
    engine = TensorRTEngine.from_plan(result.plan, cast(Any, HostMemory()), TrtLogger(), "int8", {})
    out = engine.infer(np.ones((1, 3, 32, 32), np.float32))  # one frame, run padded to the fixed batch
    assert out.shape == (1, 4, 32, 32)
    engine.close()


def test_a_dynamic_engine_runs_at_its_export_size_not_the_profile_max(tmp_path) -> None:
    """TensorRT reports -1 for dynamic dimensions; an Ultralytics ``dynamic=True`` engine's profile goes to
    twice the export size. The engine must run at ``imgsz`` from its header."""
    path = _tiny(tmp_path / "dyn.onnx", batch="batch", hw="hw")
    logger = trt.Logger()
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    assert trt.OnnxParser(network, logger).parse(path.read_bytes())
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("images", (1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 128, 128))  # as Ultralytics does
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    header = json.dumps({"imgsz": [96, 96], "names": {"0": "a"}, "stride": 32, "task": "detect"}).encode()
    ul = tmp_path / "dyn.engine"
    ul.write_bytes(len(header).to_bytes(4, "little") + header + plan)
    config = TensorRTEngineConfig(backend="tensorrt", plan=ul)
    engine = TensorRTEngine.from_config(config, Artifact(ul, metadata={}, memory=HostMemory()))
    assert engine.info.input_hw == (96, 96)
    engine.close()


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ({"precision": "fp32", "dla_core": 0}, "FP16 and INT8 networks only"),
        ({"dla_core": 0, "calibration": {"algorithm": "minmax"}}, "entropy calibrator"),
        ({"dla_core": 0, "int8_mode": "explicit"}, "implicit INT8 only"),
    ],
)
def test_dla_configs_that_tensorrt_refuses_are_config_errors(tmp_path, engine, message) -> None:
    data: dict[str, Any] = {
        "cameras": [{"name": "c", "type": "file", "path": str(tmp_path)}],
        "model": {"path": str(tmp_path)},
        "engine": {"backend": "tensorrt", **engine},
    }
    with pytest.raises((ConfigError, ValueError), match=message):
        Settings(**data)


def test_dla_build_is_fixed_batch_and_records_where_layers_ran(tmp_path, world_onnx, clip) -> None:
    trt.NUM_DLA_CORES = 2
    model = _boot(_config(tmp_path, world_onnx, clip, precision="fp16", dla_core=1))
    model.engine.close()
    [plan] = _plans(tmp_path)
    assert "-dla1-" in plan.name
    manifest = read_manifest(plan)
    assert manifest is not None and manifest.data["batch"]["min"] == manifest.data["batch"]["max"] == 1
    assert manifest.data["layers"]["dla_layers"] > 0


def test_a_model_no_dla_layer_can_run_is_refused_not_named_dla(tmp_path) -> None:
    trt.NUM_DLA_CORES = 1
    path = _tiny(tmp_path / "mm.onnx", extra="matmul")
    with pytest.raises(EngineError, match="can run on DLA core 0"):
        build_plan(path, BuildOptions("fp16", 1.0, BatchProfile(1, 1), None, dla_core=0), TrtLogger())


@pytest.mark.parametrize("version", ["10.3.0.26", "11.1.0.4"])
def test_plugin_backed_onnx_ops_parse_once_plugins_are_registered(tmp_path, version) -> None:
    """From 10.0 the ONNX parser no longer registers TensorRT's plugins itself (RoiAlign -> ROIAlign_TRT)."""
    trt.__version__ = version
    path = _tiny(tmp_path / "roi.onnx", extra="roialign")
    result = build_plan(path, BuildOptions("fp32", 1.0, BatchProfile(1, 1), None), TrtLogger())
    assert result.plan and trt.PLUGINS["initialised"]
    trt.PLUGINS["initialised"] = False  # a later boot: a fresh process that only loads the plan
    engine = TensorRTEngine.from_plan(result.plan, cast(Any, HostMemory()), TrtLogger(), "fp32", {})
    assert engine.infer(np.ones((1, 3, 32, 32), np.float32)).shape == (1, 4, 1, 1)
    engine.close()


def test_the_engine_lives_on_its_configured_gpu_from_every_thread(tmp_path, world_onnx, clip) -> None:
    """device_index: TensorRT binds engines to the device current when they are deserialized, and CUDA's
    current device is per thread; the pipeline's worker threads must select it too."""
    memory = HostMemory(device_index=1)
    model = _boot(_config(tmp_path, world_onnx, clip, precision="fp16", device_index=1), memory)
    assert model.engine._engine.device == 1  # type: ignore[attr-defined]
    out: list[Any] = []
    worker = threading.Thread(
        target=lambda: out.append(model.engine.infer(np.zeros((1, 3, 480, 576), np.float32)))
    )
    worker.start()
    worker.join()
    assert len(out) == 1 and out[0].shape[0] == 1
    model.engine.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_int8_life_cycle_on_every_version(
    tmp_path, world_onnx, clip, frames, fp32_reference, version
) -> None:
    """First boot builds INT8 the way this version can (implicit before 11, Q/DQ strongly typed on 11),
    later boots load it, and the detections agree with FP32."""
    trt.__version__ = version
    model = _boot(_config(tmp_path, world_onnx, clip, calibration={"frames": 8}))
    recall, conf_err, ratio = _agreement(model.engine, fp32_reference, frames[:4])
    model.engine.close()
    assert recall >= 0.85 and conf_err <= 0.1 and ratio <= 1.3, (version, recall, conf_err, ratio)
    again = _boot(_config(tmp_path, world_onnx, clip, calibration={"frames": 8}))
    again.engine.close()
    assert trt.STATS["builds"] == 1
    [plan] = _plans(tmp_path)
    manifest = read_manifest(plan)
    assert manifest is not None
    route = json.loads(manifest.data["key"]["quantization"])["int8_mode"]
    assert route == ("explicit" if version.startswith("11") else "implicit")
    precisions = manifest.data["layers"]["precision"]
    assert precisions.get("int8", 0) > 0 and precisions.get("fp16", 0) > 0, precisions


@pytest.mark.parametrize("version", ["8.6.1.6", "10.13.0.35"])
def test_explicit_int8_runs_the_float_part_in_fp16_before_11(tmp_path, world_onnx, clip, version) -> None:
    """Q/DQ models build on 8.6 too (weakly typed, INT8 + FP16 flags), and the layers outside Q/DQ run in
    FP16 rather than FP32 (a strongly typed build forbids the FP16 flag)."""
    trt.__version__ = version
    _boot(_config(tmp_path, world_onnx, clip, int8_mode="explicit", calibration={"frames": 8})).engine.close()
    [plan] = _plans(tmp_path)
    manifest = read_manifest(plan)
    assert manifest is not None
    precisions = manifest.data["layers"]["precision"]
    assert precisions.get("int8", 0) > 0 and precisions.get("fp16", 0) > 0 and not precisions.get("fp32")
