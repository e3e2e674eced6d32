"""The OpenVINO backend: parity with ONNX Runtime FP32 on real frames, Ultralytics' own OpenVINO export, the
compiled-blob cache, and the daemon end to end through mosquitto with it.

Tolerances (docs/engine.md, "OpenVINO"): ``fp32`` equals ONNX Runtime FP32 (same detections, boxes within
0.5 px, scores within 1e-4); ``auto`` (bf16 on this CPU) agrees with it at mAP50-95 >= 0.95 on the clip.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from edge_daemon.app import run_daemon
from edge_daemon.build.export import export_pt
from edge_daemon.build.quant.agreement import coco_agreement
from edge_daemon.config import OnnxRuntimeEngineConfig, OpenVinoEngineConfig, Settings
from edge_daemon.model.preprocess import preprocess
from edge_daemon.model.tasks import DecodeParams
from edge_daemon.model.tasks.detect import decode_one
from edge_daemon.runtime import Artifact, load_engine
from edge_daemon.types import Detections
from tests.conftest import Broker, subscribed

pytest.importorskip("openvino")

PARAMS = DecodeParams(num_classes=80, conf=0.25, iou=0.7, max_det=300)


def _detect(engine, frames: list[np.ndarray]) -> list[Detections]:
    out = []
    for frame in frames:
        tensor, meta = preprocess(frame, engine.info.input_hw)
        out.append(decode_one(engine.infer(tensor)[0], meta, PARAMS))
    return out


@pytest.fixture(scope="module")
def reference(world_onnx: Path, frames: list[np.ndarray]) -> list[Detections]:
    with load_engine(OnnxRuntimeEngineConfig(), world_onnx) as engine:
        return _detect(engine, frames)


def _openvino(precision: str, path: Path, cache: Path | None = None):
    config = OpenVinoEngineConfig(backend="openvino", precision=precision)
    return load_engine(config, Artifact(path, cache_dir=cache))


def _assert_same(ours: list[Detections], ref: list[Detections]) -> None:
    for i, (a, b) in enumerate(zip(ours, ref, strict=True)):
        assert a.class_id.tolist() == b.class_id.tolist(), f"frame {i}: classes differ"
        np.testing.assert_allclose(a.xyxy, b.xyxy, atol=0.5, err_msg=f"frame {i} boxes")
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-4, err_msg=f"frame {i} scores")


def test_fp32_equals_onnxruntime_fp32(world_onnx: Path, frames, reference) -> None:
    with _openvino("fp32", world_onnx) as engine:
        assert engine.info.backend == "openvino" and engine.info.precision == "fp32"
        ours = _detect(engine, frames)
    _assert_same(ours, reference)
    assert sum(len(d) for d in reference) >= 5 * len(frames), "the clip is full of people"


def test_auto_precision_agrees_with_fp32_and_says_what_runs(world_onnx: Path, frames, reference) -> None:
    import openvino as ov

    with _openvino("auto", world_onnx) as engine:
        ours = _detect(engine, frames)
        running = engine.info.precision
    bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert running == ("bf16" if bf16 else "fp32"), "the precision reported is the one the CPU runs"
    _, map5095, _ = coco_agreement(reference, ours, {i: str(i) for i in range(80)})
    assert map5095 >= 0.95, f"OpenVINO {running} agrees with ONNX Runtime FP32 at mAP50-95 {map5095:.3f}"


def test_compiled_blobs_are_cached_and_a_damaged_one_is_recompiled(
    tmp_path: Path, world_onnx: Path, frames, reference
) -> None:
    cache = tmp_path / "ov"
    with _openvino("fp32", world_onnx, cache) as engine:
        first = _detect(engine, frames[:2])
    blobs = sorted(cache.glob("*.blob"))
    assert len(blobs) == 1 and blobs[0].stat().st_size > 1_000_000, "the compiled model is cached"
    stamp = blobs[0].stat().st_mtime_ns
    with _openvino("fp32", world_onnx, cache) as engine:
        again = _detect(engine, frames[:2])
    assert sorted(cache.glob("*.blob")) == blobs, "loaded, not compiled again"
    assert blobs[0].stat().st_mtime_ns == stamp
    _assert_same(again, first)
    blobs[0].write_bytes(b"\0" * 4096)  # a torn write or a bad disk
    with _openvino("fp32", world_onnx, cache) as engine:
        damaged = _detect(engine, frames[:2])
    _assert_same(damaged, reference[:2])


def test_ultralytics_openvino_export_runs_with_its_metadata(
    tmp_path: Path, world_pt: Path, frames, reference
) -> None:
    pytest.importorskip("ultralytics")
    out = tmp_path / "world_openvino_model"
    export_pt(world_pt, (480, 576), out, fmt="openvino")  # Ultralytics' export(format="openvino")
    xml = next(out.glob("*.xml"))
    with _openvino("fp32", xml) as engine:
        assert engine.info.metadata["task"] == "detect" and "person" in engine.info.metadata["names"]
        ours = _detect(engine, frames)
    _assert_same(ours, reference)


def test_config_rejects_what_openvino_cannot_do(tmp_path: Path, clip: Path, world_onnx: Path) -> None:
    xml = tmp_path / "model.xml"
    xml.write_text("<net/>")
    base: dict[str, Any] = {"cameras": [{"type": "file", "path": str(clip)}]}
    with pytest.raises(ValidationError, match=r"runs only with engine\.backend: openvino"):
        Settings(**base, model={"path": str(xml)})
    with pytest.raises(ValidationError, match="precision"):
        Settings(**base, model={"path": str(world_onnx)}, engine={"backend": "openvino", "precision": "fp16"})
    with pytest.raises(ValidationError, match=r"int8 on OpenVINO quantizes the ONNX model"):
        Settings(**base, model={"path": str(xml)}, engine={"backend": "openvino", "precision": "int8"})
    with pytest.raises(ValidationError, match="exclude"):
        Settings(
            **base,
            model={"path": str(world_onnx)},
            engine={"backend": "openvino", "quantize": {"exclude": "auto"}},
        )
    Settings(**base, model={"path": str(xml)}, engine={"backend": "openvino"})
    Settings(**base, model={"path": str(world_onnx)}, engine={"backend": "openvino", "precision": "int8"})


def test_daemon_runs_on_openvino_end_to_end(
    tmp_path: Path, broker: Broker, clip: Path, world_onnx: Path
) -> None:
    camera = {"name": "cam0", "type": "file", "path": str(clip), "drop_policy": "block", "max_frames": 8}
    settings = Settings(
        device_id="ovdev",
        cameras=[camera],
        model={"path": str(world_onnx), "cache_dir": str(tmp_path / "cache")},
        engine={"backend": "openvino"},
        mqtt={"host": "127.0.0.1", "port": broker.port, "connect_timeout_s": 5},
    )
    with subscribed(broker, "edge/ovdev/#") as sub:
        stats = run_daemon(settings, threading.Event())
        assert sub.wait_for(lambda msgs: len(sub.on("/detections")) >= 8, 30)
    assert stats.published == 8
    info = json.loads(sub.on("/info")[-1])
    assert info["backend"] == "openvino" and info["precision"] in ("bf16", "fp32")
    people = [d for p in sub.on("/detections") for d in json.loads(p)["detections"] if d["label"] == "person"]
    assert len(people) >= 8 * 3, "the clip's pedestrians are found"
    assert any((tmp_path / "cache" / "openvino").iterdir()), "compiled blobs cached under model.cache_dir"


def test_throughput_requests_overlap_and_keep_each_frames_outputs(world_onnx: Path, frames) -> None:
    """THROUGHPUT: several frames in flight at once; each waiter gets its own frame's outputs, in order."""
    config = OpenVinoEngineConfig(backend="openvino", precision="fp32", performance_hint="THROUGHPUT")
    with load_engine(config, Artifact(world_onnx)) as loaded, _openvino("fp32", world_onnx) as sync:
        engine: Any = loaded
        assert engine.requests >= 2, "OpenVINO offers several requests for THROUGHPUT"
        tensors = [preprocess(f, engine.info.input_hw)[0] for f in frames]
        waiters = [engine.start(t) for t in tensors]  # beyond the requests: waits for a free one
        for tensor, wait in zip(tensors, waiters, strict=True):
            outputs, ms = wait()
            np.testing.assert_allclose(outputs[0], sync.run(tensor)[0], atol=1e-3)
            assert ms > 0


def test_int8_is_quantized_by_nncf_once_cached_and_agrees_with_fp32(
    tmp_path: Path, clip: Path, world_onnx: Path, frames, reference
) -> None:
    """precision: int8: NNCF quantizes the model on first boot from the camera's frames, the float set as
    its ignored scope; the IR is cached under its key (a later boot loads it, another float set is another
    IR, a damaged one is rebuilt); the daemon reports int8 and its detections agree with FP32's."""
    import onnx

    from edge_daemon.build import prepare
    from edge_daemon.build.quant.floatset import excluded_nodes
    from edge_daemon.build.request import BuildRequest
    from edge_daemon.files import read_manifest

    cache = tmp_path / "cache"

    def build(exclude: str) -> Any:
        config = OpenVinoEngineConfig(
            backend="openvino",
            precision="int8",
            calibration={"frames": 16, "interval_s": 0},  # type: ignore[arg-type]
            quantize={"exclude": exclude},  # type: ignore[arg-type]
        )
        camera = Settings(
            cameras=[{"type": "file", "path": str(clip)}], model={"path": str(world_onnx)}
        ).cameras[0]
        request = BuildRequest(world_onnx, "ab" * 32, "world", None, cache, camera=camera)
        return config, prepare(config, request)[0]

    config, artifact = build("head-final")
    xml = artifact.path
    assert (
        xml.suffix == ".xml" and xml.parent == cache / "openvino-int8" and xml.with_suffix(".bin").is_file()
    )
    assert artifact.precision == "int8" and artifact.metadata["task"] == "detect"
    manifest = read_manifest(xml)
    assert manifest is not None
    names = [n.name for n in onnx.load(str(world_onnx), load_external_data=False).graph.node]
    want = excluded_nodes(names, "head-final")
    assert manifest.data["excluded_nodes"] == want and any("/dfl/" in n for n in want)
    assert manifest.data["calibration"]["batches"] == 16 and manifest.data["key"]["exclude"] == "head-final"
    ir = xml.read_text()
    assert ir.count('type="FakeQuantize"') >= 50, "the IR carries NNCF's quantizers"
    with load_engine(config, artifact) as engine:
        assert engine.info.precision == "int8" and engine.info.backend == "openvino"
        ours = _detect(engine, frames)
    _, map5095, _ = coco_agreement(reference, ours, {i: str(i) for i in range(80)})
    assert map5095 >= 0.75, f"OpenVINO INT8 agrees with FP32 at mAP50-95 {map5095:.3f}"

    stamp = xml.stat().st_mtime_ns
    assert build("head-final")[1].path == xml and xml.stat().st_mtime_ns == stamp, (
        "loaded, not quantized again"
    )
    other = build("head")[1].path
    assert other != xml and read_manifest(other).data["key"]["exclude"] == "head"  # type: ignore[union-attr]
    xml.with_suffix(".bin").write_bytes(b"\0" * 4096)  # a torn write or a bad disk
    rebuilt = build("head-final")[1].path
    assert rebuilt == xml and xml.with_suffix(".bin").stat().st_size > 1_000_000
    assert list(xml.parent.glob(f"{xml.name}.bad-*")), "the damaged IR was moved aside"
