"""Explicit Q/DQ INT8: real quantization with ONNX Runtime's tools, real INT8 execution on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import pytest
import yaml

from edge_daemon.build.quant.agreement import coco_agreement
from edge_daemon.build.quant.cache import QdqRequest, ensure_qdq
from edge_daemon.config import CalibrationConfig, FileCamera, OnnxRuntimeEngineConfig, Settings
from edge_daemon.model.preprocess import preprocess
from edge_daemon.model.tasks import DecodeParams
from edge_daemon.model.tasks.detect import decode_one
from edge_daemon.runtime import load_engine
from edge_daemon.types import Detections
from tests.conftest import MODEL_CACHE, ROOT

FP32 = OnnxRuntimeEngineConfig()


def _camera(clip: Path) -> FileCamera:
    return FileCamera(type="file", path=clip, name="cam0")


def _world_qdq(
    world_onnx: Path, clip: Path, frames: int, fmt: Any, method: Any, exclude: Any
) -> tuple[Path, dict]:
    """The YOLO-World Q/DQ model from ``frames`` calibration frames of the clip (shared test cache)."""
    req = QdqRequest(
        world_onnx,
        "world-sha",
        world_onnx.stem,
        MODEL_CACHE,
        CalibrationConfig(frames=frames),
        _camera(clip),
        fmt,
        method,
        exclude,
    )
    return ensure_qdq(req)


@pytest.fixture(scope="session")
def world_int8(world_onnx: Path, clip: Path) -> tuple[Path, dict]:
    """The default mixed-precision CPU INT8 model (head-final+attn kept in float, entropy), 24 frames."""
    return _world_qdq(world_onnx, clip, 24, "cpu", "entropy", "head-final+attn")


def _detect(model: Path, frames: list[np.ndarray], conf: float) -> list:
    engine = load_engine(FP32, model)
    try:
        out = []
        for frame in frames:
            x, meta = preprocess(frame, engine.info.input_hw)
            out.append(decode_one(engine.infer(x)[0], meta, DecodeParams(80, conf=conf)))
        return out
    finally:
        engine.close()


def test_int8_detections_stay_within_tolerance_of_fp32(world_onnx, world_int8, frames) -> None:
    """Stated tolerance on the 10 fixed frames: agreement mAP50 >= 0.85 and mAP50-95 >= 0.70 against the
    FP32 detections (conf >= 0.25), and detection counts within 15%."""
    path, _ = world_int8
    names = {i: str(i) for i in range(80)}
    reference = _detect(world_onnx, frames, 0.25)
    predicted = _detect(path, frames, 0.001)
    m50, m5095, per_class = coco_agreement(reference, predicted, names)
    assert m50 >= 0.85 and m5095 >= 0.70, (m50, m5095)
    n_ref = sum(len(d) for d in reference)
    n_int8 = sum(len(d) for d in _detect(path, frames, 0.25))
    assert abs(n_int8 - n_ref) <= 0.15 * n_ref, (n_ref, n_int8)
    assert per_class["0"] >= 0.7, "person, the clip's main class, agrees closely"


def test_qdq_model_is_integer_with_the_head_kept_in_float(world_int8) -> None:
    path, manifest = world_int8
    model = onnx.load(str(path))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 50 and ops.count("DequantizeLinear") > 100
    inits = {i.name: i for i in model.graph.initializer}
    zero_points = [
        inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2
    ]
    assert {zp.data_type for zp in zero_points} == {onnx.TensorProto.UINT8}, "CPU format: u8 activations"
    weight_scales = [
        inits[n.input[1]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear"
        and n.input[0] in inits
        and inits[n.input[0]].data_type == onnx.TensorProto.INT8
    ]
    assert any(len(s.dims) == 1 and s.dims[0] > 1 for s in weight_scales), "per-channel int8 weights"
    excluded = set(manifest["excluded_nodes"])
    assert "/model.23/cv3.0/cv3.0.2/Conv" in excluded and "/model.23/dfl/conv/Conv" in excluded
    assert "/model.23/cv3.0/cv3.0.0/conv/Conv" not in excluded, "the head's stem convolutions are quantized"
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["names"].startswith("{0: 'person'"), "class names carried over from the FP32 model"


def test_tensorrt_format_is_symmetric_int8(world_onnx, clip) -> None:
    path, _ = _world_qdq(world_onnx, clip, 8, "tensorrt", "minmax", "head-final")
    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and {zp.data_type for zp in zps} == {onnx.TensorProto.INT8}
    assert all(not np.any(onnx.numpy_helper.to_array(zp)) for zp in zps), "symmetric: every zero point is 0"


def _raw(model: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    engine = load_engine(FP32, model)
    try:
        return [engine.infer(preprocess(frame, engine.info.input_hw)[0])[0][0] for frame in frames]
    finally:
        engine.close()


def test_mse_ranges_cut_the_tensorrt_format_error(world_onnx, clip, frames) -> None:
    """TensorRT's symmetric int8 with ONNX Runtime's entropy ranges (which keep max|x|) against ranges of
    least squared error: the latter stay closer to FP32 on the clip's frames, and are still symmetric
    (measured on 300 frames: a third less output error, agreement 0.694 -> 0.808, docs/benchmarks.md)."""
    from edge_daemon.build.quant.search import _distance

    entropy, _ = _world_qdq(world_onnx, clip, 16, "tensorrt", "entropy", "head-final+attn")
    mse, manifest = _world_qdq(world_onnx, clip, 16, "tensorrt", "mse", "head-final+attn")
    assert manifest["key"]["calib_method"] == "mse" and manifest["calibration"]["batches"] == 16
    model = onnx.load(str(mse))
    inits = {i.name: i for i in model.graph.initializer}
    zps = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear" and len(n.input) > 2]
    assert zps and all(not np.any(onnx.numpy_helper.to_array(zp)) for zp in zps), "still symmetric"
    ref = _raw(world_onnx, frames)
    err = {
        name: float(np.mean([_distance(got, r, 80) for got, r in zip(_raw(path, frames), ref, strict=True)]))
        for name, path in (("entropy", entropy), ("mse", mse))
    }
    assert err["mse"] < 0.85 * err["entropy"], err


def test_mse_range_clips_outliers_and_keeps_a_plain_range() -> None:
    """Least squared error: a long thin tail is clipped, a uniform spread is kept whole, the
    symmetric form is -t..t, and the asymmetric one keeps a SiLU-like small negative side."""
    from edge_daemon.build.quant.ranges import HIST_BINS, mse_range

    rng = np.random.default_rng(0)

    def hist(values: np.ndarray) -> tuple:
        counts, edges = np.histogram(values, HIST_BINS, range=(-np.abs(values).max(), np.abs(values).max()))
        return counts.astype(np.float64), edges, float(values.min()), float(values.max())

    tailed = rng.laplace(0, 1, 200_000)  # a long thin tail, as convolution outputs have
    lo, hi = mse_range(hist(tailed), symmetric=True)
    assert lo == -hi and 5 < hi < 0.85 * np.abs(tailed).max(), (lo, hi)
    uniform = rng.uniform(-2, 2, 200_000)
    lo, hi = mse_range(hist(uniform), symmetric=True)
    assert hi > 1.9 and lo == -hi
    silu = rng.normal(1, 2, 200_000)
    silu = silu / (1 + np.exp(-silu))
    lo, hi = mse_range(hist(silu), symmetric=False)
    assert -0.3 <= lo <= 0 and hi > 3, (lo, hi)


def test_naive_all_layers_int8_collapses_class_scores(world_onnx, clip, frames) -> None:
    """Why mixed precision is not optional: quantizing the detect head destroys the class scores."""
    path, manifest = _world_qdq(world_onnx, clip, 8, "cpu", "minmax", "none")
    assert manifest["excluded_nodes"] == []
    engine = load_engine(FP32, path)
    x, _ = preprocess(frames[0], engine.info.input_hw)
    top = float(engine.infer(x)[0, 4:84].max())
    engine.close()
    assert top < 0.1, f"expected collapsed scores, got max {top}"


def _images(folder: Path, clip: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cap = cv2.VideoCapture(str(clip))
    for i in range(n):
        ok, frame = cap.read()
        assert ok
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), frame)
    cap.release()
    return folder


def test_changed_calibration_set_invalidates_the_cache(tmp_path, world_onnx, clip, monkeypatch) -> None:
    images = _images(tmp_path / "calib", clip, 8)
    cal = CalibrationConfig(source="images", images=str(images), frames=8)
    req = QdqRequest(world_onnx, "world-sha", world_onnx.stem, tmp_path / "cache", cal, None, "cpu", "minmax")
    first, _ = ensure_qdq(req)
    from edge_daemon.build.quant import qdq

    calls: list[int] = []
    real = qdq.quantize

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr("edge_daemon.build.quant.cache.quantize", counting)
    assert ensure_qdq(req)[0] == first and calls == [], "same data: served from the cache"
    img = cv2.imread(str(images / "002.jpg"))
    cv2.imwrite(str(images / "002.jpg"), cv2.flip(np.asarray(img), 1))
    second, manifest = ensure_qdq(req)
    assert second != first and calls == [1], "new frames: a new key and a new quantization"
    assert (
        manifest["key"]["calib_data_sha256"]
        != json.loads(Path(str(first) + ".json").read_text())["key"]["calib_data_sha256"]
    )


def test_corrupt_qdq_model_is_quarantined_and_rebuilt(tmp_path, world_onnx, clip) -> None:
    images = _images(tmp_path / "calib", clip, 8)
    cal = CalibrationConfig(source="images", images=str(images), frames=8)
    req = QdqRequest(world_onnx, "world-sha", world_onnx.stem, tmp_path / "cache", cal, None, "cpu", "minmax")
    path, _ = ensure_qdq(req)
    path.write_bytes(path.read_bytes()[:5000])
    again, _ = ensure_qdq(req)
    assert again == path and len(path.read_bytes()) > 5000
    assert len(list(path.parent.glob("*.bad-*"))) >= 1
    load_engine(FP32, again).close()


def test_precision_int8_runs_in_the_daemon(tmp_path, world_onnx, clip, frames) -> None:
    from edge_daemon.app import load_model

    images = _images(tmp_path / "calib", clip, 8)
    settings = Settings(
        cameras=[{"type": "file", "path": str(clip)}],
        model={"path": str(world_onnx), "cache_dir": str(tmp_path / "cache")},
        engine={
            "backend": "onnxruntime",
            "precision": "int8",
            "calibration": {"source": "images", "images": str(images), "frames": 8},
            "quantize": {"method": "minmax"},
        },
    )
    model = load_model(settings)
    try:
        assert model.engine.info.precision == "int8" and model.tag.precision == "int8"
        x, meta = preprocess(frames[2], model.engine.info.input_hw)
        dets = decode_one(model.engine.infer(x)[0], meta, DecodeParams(80))
        assert len(dets) >= 3 and 0 in dets.class_id.tolist()
    finally:
        model.engine.close()


def test_quant_report_cli_writes_table_json_and_png(tmp_path, world_onnx, clip) -> None:
    config = tmp_path / "q.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cameras": [{"type": "file", "path": str(clip)}],
                "model": {"path": str(world_onnx), "cache_dir": str(MODEL_CACHE)},
                "engine": {"backend": "onnxruntime", "precision": "int8", "calibration": {"frames": 24}},
            }
        )
    )
    out_json, out_png = tmp_path / "r.json", tmp_path / "r.png"
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "edge_daemon",
            "quant-report",
            "-c",
            str(config),
            "--frames",
            "12",
            "--no-e2e",
            "--json",
            str(out_json),
            "--png",
            str(out_png),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=900,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "mAP50-95" in res.stdout and "per-class agreement" in res.stdout
    report = json.loads(out_json.read_text())
    fp32, mixed, naive = report["variants"]
    assert fp32["precision"] == "fp32" and mixed["precision"] == naive["precision"] == "int8"
    assert mixed["map50_95"] > 0.6 > naive["map50_95"], "mixed precision keeps what naive INT8 loses"
    # Beside the class average, each class's FP32 boxes and the average weighted by them
    boxes = report["reference_boxes"]
    assert sum(boxes.values()) == fp32["detections"] and set(mixed["per_class"]) == set(boxes)
    weighted = sum(mixed["per_class"][c] * n for c, n in boxes.items()) / sum(boxes.values())
    assert mixed["map50_95_by_boxes"] == pytest.approx(weighted) and fp32["map50_95_by_boxes"] == 1.0
    assert "by boxes" in res.stdout
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out_png.stat().st_size > 10_000


def test_stale_temporaries_of_a_killed_build_are_swept(tmp_path: Path) -> None:
    """What a SIGKILLed INT8 build leaves (scripts/fault_injection.py crash-build found both kinds)."""
    from edge_daemon.build.artifacts import sweep_stale_temp

    (tmp_path / ".model-int8.onnx.abc123.tmp").write_bytes(b"half a model")
    (tmp_path / ".qdq-xyz").mkdir()
    (tmp_path / ".qdq-xyz" / "pre.onnx").write_bytes(b"pre-processed")
    (tmp_path / "model-int8.onnx").write_bytes(b"a finished model")
    assert sweep_stale_temp(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model-int8.onnx"]


def _pose(boxes: list[list[int]], kpts: Any, conf: float = 0.9) -> Detections:
    n = len(boxes)
    return Detections(
        np.asarray(boxes, np.float32),
        np.full(n, conf, np.float32),
        np.zeros(n, np.int32),
        keypoints=np.asarray(kpts, np.float32).reshape(n, 17, 3),
    )


def test_keypoints_and_masks_are_scored_beside_the_boxes() -> None:
    """OKS for pose and mask mAP for segmentation (pycocotools): the same answer scores 1, keypoints
    moved off their joints or masks shifted off their objects score less although the boxes still agree."""
    from edge_daemon.build.quant.agreement import keypoint_agreement, mask_agreement

    rng = np.random.default_rng(0)
    boxes = [[100, 100, 200, 300], [400, 50, 480, 250]]
    joints = (
        np.concatenate([rng.uniform([100, 100], [200, 300], (17, 2)), np.full((17, 1), 0.9)], axis=1),
        np.concatenate([rng.uniform([400, 50], [480, 250], (17, 2)), np.full((17, 1), 0.9)], axis=1),
    )
    ref = [_pose(boxes, np.stack(joints))]
    assert keypoint_agreement(ref, ref) == pytest.approx(1.0)
    moved = [_pose(boxes, np.add(np.stack(joints), (12.0, -9.0, 0.0)))]
    assert keypoint_agreement(ref, moved) < 0.6

    def seg(dx: int) -> Detections:
        square = np.array([[100 + dx, 100], [200 + dx, 100], [200 + dx, 300], [100 + dx, 300]], np.float32)
        return Detections(
            np.asarray([[100, 100, 200, 300]], np.float32),
            np.asarray([0.9], np.float32),
            np.zeros(1, np.int32),
            polygons=((square,),),
        )

    assert mask_agreement([seg(0)], [seg(0)], [(576, 768)]) == pytest.approx(1.0)
    assert mask_agreement([seg(0)], [seg(30)], [(576, 768)]) < 0.5


def test_quant_report_scores_a_pose_model_by_oks(pose_onnx, clip, tmp_path) -> None:
    from edge_daemon.config import Settings
    from edge_daemon.tools.quant_report import run_report

    settings = Settings(
        cameras=[{"type": "file", "path": str(clip)}],
        model={"path": str(pose_onnx), "cache_dir": str(MODEL_CACHE)},
        engine={
            "backend": "onnxruntime",
            "precision": "int8",
            "calibration": {"frames": 16},
            "quantize": {"exclude": "head-final+attn"},
        },
    )
    report = run_report(settings, frames=12, naive=False, end_to_end=False)
    fp32, mixed = report.variants
    assert fp32.oks_map50_95 == pytest.approx(1.0) and mixed.oks_map50_95 is not None
    assert 0.3 < mixed.oks_map50_95 <= 1.0 and mixed.mask_map50_95 is None
    assert "OKS mAP" in report.table()
