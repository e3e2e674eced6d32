"""The mixed-precision search (float set ``auto``): measured on the calibration frames, used by every route.

Real ONNX Runtime quantization and inference on YOLO-World v8s and the clip's frames; the TensorRT route
goes through the TensorRT double (tests/doubles/tensorrt).
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from tests.conftest import ROOT

DOUBLES = ROOT / "tests" / "doubles"
if str(DOUBLES) not in sys.path:
    sys.path.insert(0, str(DOUBLES))

from edge_daemon.build.quant.cache import QdqRequest, ensure_qdq  # noqa: E402
from edge_daemon.build.quant.floatset import excluded_nodes  # noqa: E402
from edge_daemon.build.quant.search import SearchTargets, group_of, restore_float  # noqa: E402
from edge_daemon.config import Settings  # noqa: E402
from edge_daemon.files import read_manifest  # noqa: E402
from edge_daemon.model.info import sha256_file  # noqa: E402
from edge_daemon.model.preprocess import preprocess  # noqa: E402
from tests.test_tensorrt import _boot, _config, _plans  # noqa: E402

trt: Any = importlib.import_module("tensorrt")


def _request(settings: Settings, exclude: Any, targets: SearchTargets | None = None) -> QdqRequest:
    eng: Any = settings.engine
    return QdqRequest(
        settings.model.path,
        sha256_file(settings.model.path),  # as the daemon keys it, so both routes share one search
        settings.model.path.stem,
        settings.model.cache_dir,
        eng.calibration,
        settings.cameras[0],
        "cpu",
        "entropy",
        exclude,
        targets,
    )


def _run(model: Any, x: np.ndarray) -> np.ndarray:
    data = model if isinstance(model, bytes) else model.SerializeToString()
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_a_float_set_is_the_naive_model_with_those_nodes_rewired_to_fp32(
    tmp_path, world_onnx, clip, frames
) -> None:
    """Restoring every node gives FP32 back exactly; restoring none gives the naive model; so any float set
    in between needs no second calibration."""
    settings = Settings(**_config(tmp_path, world_onnx, clip, calibration={"frames": 8}))
    naive_path, _ = ensure_qdq(_request(settings, "none"))
    fp32, naive = onnx.load(str(world_onnx)), onnx.load(str(naive_path))
    x, _ = preprocess(frames[2], (480, 576))
    everything = {n.name for n in fp32.graph.node}
    np.testing.assert_array_equal(_run(restore_float(naive, fp32, everything), x), _run(fp32, x))
    np.testing.assert_array_equal(_run(restore_float(naive, fp32, set()), x), _run(naive, x))
    assert group_of("/model.22/cv3.0/cv3.0.2/Conv") == "/model.22/cv3.0/cv3.0.2/"
    assert group_of("/model.2/cv1/act/Mul") == "/model.2/cv1/" and group_of("/model.4/Concat") == "/model.4/"


def test_auto_float_set_is_measured_and_shared_by_both_routes(tmp_path, world_onnx, clip, frames) -> None:
    data = _config(tmp_path, world_onnx, clip, calibration={"frames": 16}, quantize_exclude="auto")
    nodes = [n.name for n in onnx.load(str(world_onnx)).graph.node]

    # The default start (head-final) may already meet the target: then it is the answer, nothing else run.
    settings = Settings(**data)
    easy = SearchTargets(0.95, 0, 8, start="head-final")
    search = ensure_qdq(_request(settings, "auto", easy))[1]["search"]
    assert search["stopped_by"] == "target" and search["steps"][0]["start"] == "head-final", search
    assert not search["groups"] and not search["benefit"] and len(search["steps"]) == 1, search
    assert set(search["float_set"]) == set(excluded_nodes(nodes, "head-final"))

    # From the all-INT8 model: groups go back in order of benefit, and stay only if they help enough.
    search_cfg = {"agreement": 0.999, "min_speedup": 0, "frames": 8, "start": "none", "min_gain": 0.02}
    data["engine"]["quantize_search"] = search_cfg
    settings = Settings(**data)
    targets = SearchTargets(0.999, 0, 8, start="none", min_gain=0.02)
    path, manifest = ensure_qdq(_request(settings, "auto", targets))
    search = manifest["search"]
    float_set = manifest["float_set"]
    assert search["steps"][0]["agreement"] < 0.5, "the naive model is this search's starting point"
    groups = search["groups"]
    assert search["stopped_by"] == "nothing kept lately", search
    ranked = sorted(search["benefit"], key=lambda g: -search["benefit"][g])
    assert groups == [g for g in ranked if g in groups], "groups go back to float in order of benefit"
    assert groups[0].startswith("/model.23/"), "the head's decode helps most"
    previous = search["steps"][0]["agreement"]
    for step in search["steps"][1:]:
        if "added" in step:
            assert step["agreement"] >= previous + 0.02, step
            previous = step["agreement"]
        else:  # tried and left in INT8: it did not raise the agreement enough
            assert step["skipped (no gain)"] not in groups and step["agreement"] < previous + 0.02, step
    assert any("skipped (no gain)" in step for step in search["steps"]), search["steps"]
    assert previous == search["agreement_map50_95"]
    assert set(float_set) == {n for n in nodes if group_of(n) in groups}
    # The chosen model is that float set, and its detections follow FP32's.
    x, _ = preprocess(frames[3], (480, 576))
    got, want = _run(path.read_bytes(), x)[0], _run(onnx.load(str(world_onnx)), x)[0]
    assert abs(float(got[4:].max()) - float(want[4:].max())) < 0.1

    # TensorRT's implicit route pins the same groups (the search is cached, not run again).
    again = ensure_qdq(_request(settings, "auto", targets))[1]
    assert again["built_at"] == manifest["built_at"]
    model = _boot(data)
    model.engine.close()
    [plan] = _plans(tmp_path)
    trt_manifest = read_manifest(plan)
    assert trt_manifest is not None and trt_manifest.data["float_set"] == float_set
    assert json.loads(trt_manifest.data["key"]["quantization"])["exclude"] == float_set
    head = trt_manifest.data["layers"]["blocks"]["/model.23/"]
    assert head.get("fp16", 0) > 0, head


def test_quantize_config_accepts_auto_with_its_targets(tmp_path: Path, world_onnx: Path, clip: Path) -> None:
    data = _config(tmp_path, world_onnx, clip)
    data["engine"] = {
        "backend": "onnxruntime",
        "precision": "int8",
        "quantize": {"exclude": "auto", "search": {"agreement": 0.95, "min_speedup": 1.2}},
    }
    eng: Any = Settings(**data).engine
    assert eng.quantize.exclude == "auto" and eng.quantize.search.agreement == 0.95


def test_a_camera_pointed_at_another_source_is_calibrated_on_its_own_frames(tmp_path, clip) -> None:
    """The calibration frames are kept per camera *and source*: renaming nothing but the file (or URL)
    must not reuse the old scene's frames (it did: keyed by the camera's name only)."""
    import shutil

    from edge_daemon.build.calibration import calibration_set
    from edge_daemon.config import CalibrationConfig, FileCamera

    other = tmp_path / "other.avi"
    shutil.copy(clip, other)
    cal = CalibrationConfig(frames=8)
    first = calibration_set(cal, FileCamera(name="cam0", type="file", path=clip), tmp_path)
    again = calibration_set(cal, FileCamera(name="cam0", type="file", path=clip), tmp_path)
    moved = calibration_set(cal, FileCamera(name="cam0", type="file", path=other), tmp_path)
    assert again.images == first.images, "the same source: the persisted set"
    assert moved.images != first.images and moved.images[0].parent != first.images[0].parent
