"""The daemon's detections equal Ultralytics' own predictions on real frames at the same input shape."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_daemon.config import OnnxRuntimeEngineConfig
from edge_daemon.model.preprocess import preprocess
from edge_daemon.model.tasks import DecodeParams
from edge_daemon.model.tasks.detect import decode_one
from edge_daemon.runtime import load_engine


def test_detections_match_ultralytics_predict(world_onnx: Path, frames: list[np.ndarray]) -> None:
    from ultralytics import YOLO

    yolo = YOLO(str(world_onnx), task="detect")
    engine = load_engine(OnnxRuntimeEngineConfig(), world_onnx)
    params = DecodeParams(num_classes=80, conf=0.25, iou=0.7, max_det=300)
    total = 0
    try:
        for i, frame in enumerate(frames):
            tensor, meta = preprocess(frame, engine.info.input_hw)
            ours = decode_one(engine.infer(tensor)[0], meta, params)
            ref = yolo.predict(frame, imgsz=list(engine.info.input_hw), conf=0.25, iou=0.7, verbose=False)[0]
            ref_xyxy = ref.boxes.xyxy.cpu().numpy()
            ref_conf = ref.boxes.conf.cpu().numpy()
            ref_cls = ref.boxes.cls.cpu().numpy().astype(int)
            order = np.argsort(-ref_conf, kind="stable")
            assert len(ours) == len(ref_conf), (
                f"frame {i}: {len(ours)} detections vs Ultralytics {len(ref_conf)}"
            )
            assert ours.class_id.tolist() == ref_cls[order].tolist(), f"frame {i}: classes differ"
            np.testing.assert_allclose(ours.xyxy, ref_xyxy[order], atol=1.0, err_msg=f"frame {i} boxes")
            np.testing.assert_allclose(ours.confidence, ref_conf[order], atol=1e-3, err_msg=f"frame {i} conf")
            total += len(ours)
    finally:
        engine.close()
    assert total >= 5 * len(frames), f"the clip is full of people: expected many detections, got {total}"
    assert ref.orig_shape == (576, 768)


@pytest.mark.parametrize("classes", [[0], [2, 0]])
def test_class_filter_matches_ultralytics(world_onnx: Path, frames: list[np.ndarray], classes) -> None:
    from ultralytics import YOLO

    yolo = YOLO(str(world_onnx), task="detect")
    engine = load_engine(OnnxRuntimeEngineConfig(), world_onnx)
    try:
        frame = frames[3]
        tensor, meta = preprocess(frame, engine.info.input_hw)
        ours = decode_one(engine.infer(tensor)[0], meta, DecodeParams(80, classes=tuple(classes)))
        ref = yolo.predict(frame, imgsz=list(engine.info.input_hw), classes=classes, verbose=False)[0]
        assert sorted(ours.class_id.tolist()) == sorted(ref.boxes.cls.cpu().numpy().astype(int).tolist())
        assert set(ours.class_id.tolist()) <= set(classes)
    finally:
        engine.close()
