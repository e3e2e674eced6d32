"""Heads recognised from the model's own metadata and output shape, never guessed; the end-to-end head
(YOLO26 / YOLOv10 exported end to end, nms=True exports) decoded as Ultralytics decodes it."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from edge_daemon.config import OnnxRuntimeEngineConfig, Settings
from edge_daemon.errors import ModelError
from edge_daemon.model.preprocess import letterbox_meta, preprocess
from edge_daemon.model.tasks import HEADS, DecodeParams, recognise
from edge_daemon.model.tasks.detect import decode_end2end
from edge_daemon.runtime import load_engine
from tests.conftest import run_cli

E2E = {"task": "detect", "end2end": "True"}
RAW = {"task": "detect", "end2end": "False"}
NMS_EXPORT = {"task": "detect", "args": "{'batch': 1, 'nms': True, 'dynamic': False}"}
POSE = {"task": "pose", "kpt_shape": "[17, 3]"}


@pytest.mark.parametrize(
    ("metadata", "shape", "nc", "task", "want"),
    [
        (RAW, (84, 8400), 80, "detect", "detect"),
        (RAW, (84, None), 80, "detect", "detect"),  # dynamic input size: N unknown until run
        ({"task": "detect"}, (84, 6804), 80, "detect", "detect"),  # older exports carry no end2end key
        (E2E, (300, 6), 80, "detect", "detect-e2e"),
        (NMS_EXPORT, (300, 6), 80, "detect", "detect-e2e"),
        (POSE, (56, 8400), 1, "pose", "pose"),
        # each head fed another's output: refused, with what was found
        (RAW, (300, 6), 80, "detect", "a raw detect head gives (B, 4+80=84, N)"),
        (E2E, (84, 8400), 80, "detect", "an end-to-end detect head gives (B, K, 6)"),
        (RAW, (56, 8400), 80, "detect", "a raw detect head gives"),
        (POSE, (84, 8400), 80, "pose", "a raw pose head gives (B, 4+80+51=135, N)"),
        ({"task": "pose"}, (56, 8400), 1, "pose", "without kpt_shape"),
        ({**POSE, "end2end": "True"}, (300, 57), 1, "pose", "pose-e2e"),
        ({**POSE, "end2end": "True"}, (300, 6), 1, "pose", "an end-to-end pose head gives (B, K, 6+51=57)"),
        ({"task": "segment"}, (116, 8400), 80, "segment", "prototypes (B, nm, H, W) as a second output"),
        (RAW, (1000,), 1000, "detect", "matches no supported head"),
        ({"task": "depth"}, (84, 8400), 80, "depth", "matches no supported head"),
    ],
)
def test_heads_are_recognised_or_refused(metadata, shape, nc, task, want) -> None:
    if want in HEADS:
        assert recognise(metadata, [shape], nc, task, "m.onnx") == want
    else:
        with pytest.raises(ModelError, match=r"m\.onnx: output \(B, .*\)") as info:
            recognise(metadata, [shape], nc, task, "m.onnx")
        assert want in str(info.value) and "\n" not in str(info.value)


def test_end2end_decode_filters_in_model_order_and_maps_to_the_frame() -> None:
    meta = letterbox_meta((576, 768), (480, 640))  # gain 0.8333, pad 0 x 0
    rows = np.array(
        [
            [10, 20, 110, 220, 0.9, 2],
            [0, 0, 640, 480, 0.6, 0],
            [5, 5, 6, 6, 0.2, 1],  # under conf
            [100, 100, 200, 200, 0.7, 1],
        ],
        np.float32,
    )
    dets = decode_end2end(rows, meta, DecodeParams(num_classes=3, conf=0.25))
    assert dets.class_id.tolist() == [2, 1, 0] and dets.confidence.tolist() == pytest.approx([0.9, 0.7, 0.6])
    np.testing.assert_allclose(dets.xyxy[0], [12, 24, 132, 264], atol=1e-4)
    np.testing.assert_allclose(dets.xyxy[2], [0, 0, 768, 576], atol=1e-4)
    assert decode_end2end(rows, meta, DecodeParams(3, classes=(1,))).class_id.tolist() == [1]
    assert len(decode_end2end(rows, meta, DecodeParams(3, max_det=1))) == 1


def test_end2end_yolo26_matches_ultralytics_predict(yolo26_e2e_onnx: Path, frames) -> None:
    from ultralytics import YOLO

    yolo = YOLO(str(yolo26_e2e_onnx), task="detect")
    engine = load_engine(OnnxRuntimeEngineConfig(), yolo26_e2e_onnx)
    assert engine.info.output_shape == (300, 6)
    conf = 0.507  # the random head's scores lie around 0.50-0.52: keeps some of the 300, not all
    params = DecodeParams(num_classes=80, conf=conf)
    kept = []
    try:
        for i, frame in enumerate(frames[:6]):
            tensor, meta = preprocess(frame, engine.info.input_hw)
            ours = decode_end2end(engine.infer(tensor)[0], meta, params)
            ref = yolo.predict(frame, imgsz=list(engine.info.input_hw), conf=conf, verbose=False)[0]
            ref_conf = ref.boxes.conf.cpu().numpy()
            order = np.argsort(-ref_conf, kind="stable")
            assert len(ours) == len(ref_conf), f"frame {i}"
            assert ours.class_id.tolist() == ref.boxes.cls.cpu().numpy().astype(int)[order].tolist()
            np.testing.assert_allclose(ours.xyxy, ref.boxes.xyxy.cpu().numpy()[order], atol=1.0)
            np.testing.assert_allclose(ours.confidence, ref_conf[order], atol=1e-3)
            kept.append(len(ours))
    finally:
        engine.close()
    assert min(kept) > 0 and max(kept) < 300, kept


def test_an_end2end_model_runs_through_the_daemon(yolo26_e2e_onnx: Path, clip: Path, broker) -> None:
    from tests.conftest import subscribed

    settings = Settings(
        device_id="e2e",
        cameras=[{"type": "file", "path": str(clip), "max_frames": 4, "drop_policy": "block"}],
        model={"path": str(yolo26_e2e_onnx)},
        detect={"conf": 0.507},
        mqtt={"host": "127.0.0.1", "port": broker.port},
    )
    from edge_daemon.app import run_daemon

    with subscribed(broker, "edge/e2e/+/detections") as sub:
        stats = run_daemon(settings, threading.Event())
        assert sub.wait_for(lambda msgs: len(msgs) >= 4)
    assert stats.published == 4
    for payload in sub.on("/detections"):
        dets = json.loads(payload)["detections"]
        assert 0 < len(dets) < 300
        assert all(0 <= d["box"]["x1"] <= d["box"]["x2"] <= 768 for d in dets)


def test_a_model_whose_output_contradicts_its_metadata_is_refused_at_load(
    yolo26_e2e_onnx, clip, tmp_path
) -> None:
    """The end-to-end export with its end2end flag removed looks like a raw head by its metadata: before,
    its (1, 300, 6) output passed every check and was published as confident-looking garbage."""
    import onnx
    import yaml

    model = onnx.load(str(yolo26_e2e_onnx))
    for prop in model.metadata_props:
        if prop.key == "end2end":
            prop.value = "False"
    lying = tmp_path / "yolo26-flag-removed.onnx"
    onnx.save(model, str(lying))
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cameras": [{"type": "file", "path": str(clip), "max_frames": 3}],
                "model": {"path": str(lying)},
                "mqtt": {"connect_timeout_s": 1},
            }
        )
    )
    res = run_cli("run", "-c", str(config), timeout=120)
    assert res.returncode == 65, res.stderr[-2000:]
    errors = [line for line in res.stderr.splitlines() if "ERROR" in line or "error" in line.split(":")[0]]
    assert len(errors) == 1 and "(B, 300, 6)" in errors[0] and "supported" in errors[0], res.stderr[-2000:]


def _pose_parity(model: Path, frames, conf: float, kpt_shape=(17, 3)) -> list[int]:
    from ultralytics import YOLO

    from edge_daemon.model.tasks import decoder, recognise

    yolo = YOLO(str(model), task="pose")
    engine = load_engine(OnnxRuntimeEngineConfig(), model)
    meta_ = engine.info.metadata
    head = recognise(meta_, engine.info.output_shapes, 1, "pose", model.name)
    decode = decoder(head, DecodeParams(num_classes=1, conf=conf, keypoints=kpt_shape))
    counts = []
    try:
        for i, frame in enumerate(frames):
            tensor, meta = preprocess(frame, engine.info.input_hw)
            ours = decode(tuple(out[0] for out in engine.run(tensor)), meta)
            ref = yolo.predict(frame, imgsz=list(engine.info.input_hw), conf=conf, verbose=False)[0]
            ref_conf = ref.boxes.conf.cpu().numpy()
            order = np.argsort(-ref_conf, kind="stable")
            assert len(ours) == len(ref_conf), f"frame {i}"
            np.testing.assert_allclose(ours.xyxy, ref.boxes.xyxy.cpu().numpy()[order], atol=1.0)
            np.testing.assert_allclose(ours.confidence, ref_conf[order], atol=1e-3)
            assert ours.keypoints is not None and ours.keypoints.shape == (len(ours), *kpt_shape)
            if not len(ours):
                continue
            ref_kpts = ref.keypoints.data.cpu().numpy()[order]
            np.testing.assert_allclose(
                ours.keypoints[..., :2], ref_kpts[..., :2], atol=1.0, err_msg=f"frame {i}"
            )
            np.testing.assert_allclose(ours.keypoints[..., 2], ref_kpts[..., 2], atol=1e-3)
            counts.append(len(ours))
    finally:
        engine.close()
    return counts


def test_pose_keypoints_match_ultralytics(pose_onnx: Path, frames) -> None:
    """The real yolo11n-pose checkpoint (raw head): boxes, confidences and 17 keypoints per person."""
    counts = _pose_parity(pose_onnx, frames, conf=0.1)  # a nano model and small people: a low threshold
    assert sum(counts) >= 4, f"people with keypoints to compare: {counts}"


def test_end2end_pose_rows_carry_keypoints_after_the_class_id() -> None:
    """(K, 6 + 51): x1, y1, x2, y2, score, class, then 17 x (x, y, visibility), the layout of Ultralytics'
    end-to-end head (``Detect.postprocess`` gathers the task channels after the class index)."""
    meta = letterbox_meta((576, 768), (480, 640))
    rows = np.zeros((3, 57), np.float32)
    rows[:, :6] = [[10, 20, 110, 220, 0.9, 0], [0, 0, 10, 10, 0.1, 0], [50, 60, 70, 80, 0.8, 0]]
    rows[:, 6:] = np.tile([100.0, 50.0, 0.75], 17)
    rows[0, 6:9] = [700.0, -5.0, 0.5]  # off the input: clipped to the frame
    dets = decode_end2end(rows, meta, DecodeParams(num_classes=1, conf=0.25, keypoints=(17, 3)))
    assert len(dets) == 2 and dets.keypoints is not None and dets.keypoints.shape == (2, 17, 3)
    np.testing.assert_allclose(dets.keypoints[0, 0], [768, 0, 0.5], atol=1e-4)
    np.testing.assert_allclose(dets.keypoints[1, 1], [120, 60, 0.75], atol=1e-4)
    none = decode_end2end(rows, meta, DecodeParams(num_classes=1, conf=0.95, keypoints=(17, 3)))
    assert none.keypoints is not None and none.keypoints.shape == (0, 17, 3)


def test_pose_messages_carry_keypoints_in_schema_v2(pose_onnx: Path, clip: Path, broker) -> None:
    import jsonschema

    from edge_daemon.app import run_daemon
    from edge_daemon.publish.payload import load_schema
    from tests.conftest import subscribed

    settings = Settings(
        device_id="pose",
        cameras=[{"type": "file", "path": str(clip), "max_frames": 30, "drop_policy": "block"}],
        model={"path": str(pose_onnx)},
        detect={"conf": 0.1},
        mqtt={"host": "127.0.0.1", "port": broker.port},
    )
    with subscribed(broker, "edge/pose/+/detections") as sub:
        run_daemon(settings, threading.Event())
        assert sub.wait_for(lambda msgs: len(msgs) >= 30)
    validator = jsonschema.Draft202012Validator(load_schema())
    people = 0
    for payload in sub.on("/detections"):
        msg = json.loads(payload)
        validator.validate(msg)
        assert msg["schema_version"] == 2
        for det in msg["detections"]:
            assert len(det["keypoints"]) == 17 and all(len(k) == 3 for k in det["keypoints"])
            assert all(0 <= x <= 768 and 0 <= y <= 576 and 0 <= v <= 1 for x, y, v in det["keypoints"])
            people += 1
    assert people >= 3, people
