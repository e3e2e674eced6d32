"""Every Ultralytics task a user brings (segment, OBB, classify, and the end-to-end heads of YOLO26 and
YOLOv10), decoded by the daemon exactly as Ultralytics' own ``predict`` decodes the same ONNX file.

Models are built offline from Ultralytics' YAMLs with random weights (conftest.synthetic_model): the
weights do not matter for decode parity; the head's class biases are raised so there is something to
compare. Frames are real (the demo clip)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_daemon.config import OnnxRuntimeEngineConfig, Settings
from edge_daemon.errors import ModelError
from edge_daemon.model.info import model_info
from edge_daemon.model.preprocess import letterbox_meta, preprocess
from edge_daemon.model.tasks import DecodeParams, decoder, fit, keypoint_shape, recognise
from edge_daemon.model.tasks.obb import corners
from edge_daemon.runtime import load_engine
from edge_daemon.types import Detections
from tests.helpers.synthetic import HW, MODELS, task_model

pytest.importorskip("ultralytics")


def _model(name: str) -> Path:
    return task_model(name)


def _threshold(engine, frames, head: str, nc: int, want: int = 60) -> float:
    """A confidence under which about ``want`` candidates of the first frame fall: random heads score in a
    narrow band, so a fixed threshold keeps none or thousands."""
    tensor, _ = preprocess(frames[0], engine.info.input_hw)
    out = engine.run(tensor)[0][0]
    scores = out[:, 4] if head.endswith("-e2e") else out[4 : 4 + nc].max(axis=0)
    return min(float(np.sort(scores)[-want]), 0.999)  # some heads saturate: keep the threshold under 1


def _fill(polygons: Any, hw: tuple[int, int]) -> np.ndarray:
    """Polygons (x, y in pixels of an ``hw`` image) filled: the mask they outline."""
    canvas = np.zeros(hw, np.uint8)
    cv2.fillPoly(canvas, [np.round(p).astype(np.int32).reshape(-1, 1, 2) for p in polygons if len(p)], 1)
    return canvas


def _to_input(polygons: Any, meta: Any) -> list[np.ndarray]:
    """Frame-pixel outlines back on the model input (the inverse of the letterbox)."""
    return [p * [meta.gain_x, meta.gain_y] + [meta.pad_x, meta.pad_y] for p in polygons]


def _outer(mask: np.ndarray) -> np.ndarray:
    """A mask with its holes filled (what external outlines describe)."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return _fill([c.reshape(-1, 2) for c in contours], mask.shape)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _reorder(dets: Detections) -> Detections:
    """``dets`` by confidence, ties by centre x then y (as the reference is ordered)."""
    centre = dets.obb[:, :2] if dets.obb is not None else (dets.xyxy[:, :2] + dets.xyxy[:, 2:]) / 2
    order = np.lexsort((dets.class_id, centre[:, 1], centre[:, 0], -np.round(dets.confidence, 4)))

    def pick(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[order]

    polygons = None if dets.polygons is None else tuple(dets.polygons[j] for j in order)
    return type(dets)(
        dets.xyxy[order],
        dets.confidence[order],
        dets.class_id[order],
        pick(dets.keypoints),
        polygons,
        pick(dets.obb),
    )


def _same_quad(ours: np.ndarray, ref: np.ndarray) -> float:
    """Largest corner distance between two quadrilaterals, over the cyclic orders of ``ref``."""
    return min(float(np.abs(ours - np.roll(ref, k, axis=0)).max()) for k in range(4))


@pytest.mark.parametrize("name", ["segment", "segment-e2e", "obb", "obb-e2e", "pose-e2e", "detect-v10"])
def test_every_head_matches_ultralytics_predict(name: str, frames) -> None:
    """Boxes within 1 px, confidences within 1e-3, identical classes; masks IoU >= 0.95 per instance,
    OBB corners within 1 px, keypoints within 1 px; on real frames of the clip."""
    from ultralytics import YOLO

    path = _model(name)
    _, _, _, task, want_head = MODELS[name]
    engine = load_engine(OnnxRuntimeEngineConfig(), path)
    info = model_info(engine.info.metadata, engine.info.input_hw, path, "0" * 64, engine.info.output_shapes)
    assert (info.task, info.head) == (task, want_head)
    conf = _threshold(engine, frames, info.head, info.num_classes)
    params = DecodeParams(num_classes=info.num_classes, conf=conf, keypoints=info.kpt_shape)
    decode = decoder(info.head, params)
    yolo = YOLO(str(path), task=task)
    compared = masks = 0
    try:
        for i, frame in enumerate(frames[:6]):
            tensor, meta = preprocess(frame, engine.info.input_hw)
            ours = decode(tuple(o[0] for o in engine.run(tensor)), meta)
            ref = yolo.predict(frame, imgsz=list(engine.info.input_hw), conf=conf, verbose=False)[0]
            boxes = ref.obb if task == "obb" else ref.boxes
            ref_conf = boxes.conf.cpu().numpy()
            # best first; equal confidences (random heads make ties) ordered by position on both sides
            centre = (boxes.xywhr if task == "obb" else boxes.xywh)[:, :2].cpu().numpy()
            order = np.lexsort((boxes.cls.cpu().numpy(), centre[:, 1], centre[:, 0], -np.round(ref_conf, 4)))
            assert len(ours) == len(ref_conf), f"frame {i}: {len(ours)} vs {len(ref_conf)}"
            ours = _reorder(ours)
            assert ours.class_id.tolist() == boxes.cls.cpu().numpy().astype(int)[order].tolist()
            np.testing.assert_allclose(ours.confidence, ref_conf[order], atol=1e-3)
            if task == "obb":
                assert ours.obb is not None
                np.testing.assert_allclose(
                    ours.obb[:, :4], ref.obb.xywhr.cpu().numpy()[order][:, :4], atol=1.0
                )
                ref_quads = ref.obb.xyxyxyxy.cpu().numpy()[order]
                for mine, theirs in zip(corners(ours.obb), ref_quads, strict=True):
                    assert _same_quad(mine, theirs) <= 1.0, f"frame {i}"
            else:
                np.testing.assert_allclose(ours.xyxy, ref.boxes.xyxy.cpu().numpy()[order], atol=1.0)
            if task == "pose":
                assert ours.keypoints is not None
                ref_kpts = ref.keypoints.data.cpu().numpy()[order]
                np.testing.assert_allclose(ours.keypoints[..., :2], ref_kpts[..., :2], atol=1.0)
                # visibility is a sigmoid of the random head's large logits: the two sessions' thread counts
                # (summation order) move it by up to 0.003 where it is steep
                np.testing.assert_allclose(ours.keypoints[..., 2], ref_kpts[..., 2], atol=1e-2)
            if task == "segment":
                assert ours.polygons is not None
                # Their mask at input resolution, holes filled, against our outlines drawn back on the input
                # (random heads make speckled masks with dozens of pieces: a hard case for outlines).
                theirs = ref.masks.data.cpu().numpy()[order]
                for k, mine in enumerate(ours.polygons):
                    iou = _iou(_fill(_to_input(mine, meta), HW), _outer(theirs[k]))
                    assert iou >= 0.95, f"frame {i}: mask IoU {iou:.3f}"
                    masks += 1
            compared += len(ours)
    finally:
        engine.close()
    assert compared >= 10, compared
    assert task != "segment" or masks >= 10


def test_classify_top5_matches_ultralytics(frames) -> None:
    from ultralytics import YOLO

    path = _model("classify")
    engine = load_engine(OnnxRuntimeEngineConfig(), path)
    info = model_info(engine.info.metadata, engine.info.input_hw, path, "0" * 64, engine.info.output_shapes)
    assert (info.task, info.head, fit(info.task)) == ("classify", "classify", "crop")
    decode = decoder(info.head, DecodeParams(num_classes=info.num_classes))
    yolo = YOLO(str(path), task="classify")
    tops = set()
    try:
        for i, frame in enumerate(frames):
            tensor, meta = preprocess(frame, engine.info.input_hw, "crop")
            ours = decode(tuple(o[0] for o in engine.run(tensor)), meta)
            ref = yolo.predict(frame, imgsz=list(engine.info.input_hw), verbose=False)[0]
            assert len(ours) == 0 and ours.top_class is not None and ours.top_confidence is not None
            assert ours.top_class.tolist() == list(ref.probs.top5), f"frame {i}"
            np.testing.assert_allclose(ours.top_confidence, ref.probs.top5conf.cpu().numpy(), atol=1e-2)
            tops.add(tuple(ours.top_class.tolist()))
    finally:
        engine.close()
    assert len(tops) > 1, "the random classifier gives the same answer on every frame: nothing compared"


OUTPUTS: dict[str, list[tuple[int | None, ...]]] = {
    "detect": [(84, 6300)],
    "detect-e2e": [(300, 6)],
    "pose": [(56, 6300)],
    "pose-e2e": [(300, 57)],
    "segment": [(116, 6300), (32, 120, 160)],
    "segment-e2e": [(300, 38), (32, 120, 160)],
    "obb": [(20, 6300)],
    "obb-e2e": [(300, 7)],
    "classify": [(1000,)],
}
NC = {"detect": 80, "pose": 1, "segment": 80, "obb": 15, "classify": 1000}


@pytest.mark.parametrize("head", list(OUTPUTS))
@pytest.mark.parametrize("fed", list(OUTPUTS))
def test_each_head_refuses_the_others_outputs(head: str, fed: str) -> None:
    """A model's metadata says one head; its outputs are another's: recognised only when they agree (a
    raw detect head and a one-class pose head could share a shape only with a different nc: never here)."""
    task, e2e = head.removesuffix("-e2e"), head.endswith("-e2e")
    metadata = {"task": task, "end2end": str(e2e), "kpt_shape": "[17, 3]"}
    if fed == head:
        assert recognise(metadata, OUTPUTS[fed], NC[task], task, "m.onnx") == head
        return
    with pytest.raises(ModelError) as info:
        recognise(metadata, OUTPUTS[fed], NC[task], task, "m.onnx")
    text = str(info.value)
    assert text.startswith("m.onnx: output (B, ") and "supported:" in text and "\n" not in text
    assert keypoint_shape(metadata) == (17, 3)


def test_the_segment_decoder_crops_to_the_box_and_maps_outlines_to_the_frame() -> None:
    """One prototype that is positive everywhere: the mask is exactly the box (crop_mask's x1 <= c < x2),
    its outline the box's corners in frame pixels."""
    meta = letterbox_meta((576, 768), (480, 640))  # gain 0.8333, no padding
    rows = np.zeros((300, 6 + 32), np.float32)
    rows[0, :6] = [100, 50, 300, 250, 0.9, 2]
    rows[0, 6] = 1.0  # coefficient of prototype 0
    protos = np.zeros((32, 120, 160), np.float32)
    protos[0] = 5.0
    dets = decoder("segment-e2e", DecodeParams(num_classes=80))((rows, protos), meta)
    assert len(dets) == 1 and dets.polygons is not None and len(dets.polygons[0]) == 1
    outline = dets.polygons[0][0]
    np.testing.assert_allclose(outline.min(axis=0), [120, 60], atol=1e-3)
    np.testing.assert_allclose(outline.max(axis=0), [299 / 0.8333333, 249 / 0.8333333], atol=0.01)
    protos[0] = -5.0  # no pixel: dropped, as Ultralytics drops detections without a mask
    assert len(decoder("segment-e2e", DecodeParams(num_classes=80))((rows, protos), meta)) == 0


def _daemon_messages(path: Path, clip: Path, broker, device: str, conf: float, frames: int = 4) -> list[dict]:
    from edge_daemon.app import run_daemon
    from tests.conftest import subscribed

    settings = Settings(
        device_id=device,
        cameras=[{"type": "file", "path": str(clip), "max_frames": frames, "drop_policy": "block"}],
        model={"path": str(path)},
        detect={"conf": conf},
        mqtt={"host": "127.0.0.1", "port": broker.port},
    )
    with subscribed(broker, f"edge/{device}/+/detections") as sub:
        stats = run_daemon(settings, threading.Event())
        assert sub.wait_for(lambda msgs: len(msgs) >= frames)
    assert stats.published == frames
    return [json.loads(p) for p in sub.on("/detections")]


@pytest.mark.parametrize(
    ("name", "conf", "field"),
    [("segment", 0.5, "polygons"), ("obb-e2e", 0.5, "obb"), ("classify", 0.25, "classes")],
)
def test_every_task_runs_through_the_daemon_in_schema_v2(name, conf, field, clip: Path, broker) -> None:
    """Real messages over a real broker, each validated against the published JSON Schema."""
    import jsonschema

    from edge_daemon.publish.payload import load_schema

    validator = jsonschema.Draft202012Validator(load_schema())
    messages = _daemon_messages(_model(name), clip, broker, name.replace("-", ""), conf)
    seen = 0
    for msg in messages:
        validator.validate(msg)
        assert msg["model"]["task"] == MODELS[name][3]
        if field == "classes":
            assert msg["detections"] == [] and len(msg["classes"]) == 5
            seen += 1
            continue
        for det in msg["detections"]:
            assert field in det
            seen += 1
            if field == "obb":
                xs = [x for x, _ in det["obb"]["corners"]]
                assert (
                    det["box"]["x1"] <= max(min(xs), 0) + 0.2 and det["box"]["x2"] >= min(max(xs), 768) - 0.2
                )
            else:
                assert all(0 <= x <= 768 and 0 <= y <= 576 for poly in det["polygons"] for x, y in poly)
    assert seen > 0


@pytest.mark.parametrize(
    ("name", "branch"),
    [
        ("segment", ["/cv4.", "/proto/"]),  # mask coefficients and prototypes
        ("segment-e2e", ["/one2one_cv4.", "/proto/", "TopK"]),
        ("obb", ["/cv4.", "Cos", "Sin"]),  # the angle branch and the rotation it drives
        ("pose-e2e", ["/one2one_cv4_kpts.", "/one2one_cv4.", "TopK"]),  # keypoint branch, top-k
        ("classify", ["/linear/", "Softmax"]),
    ],
)
def test_the_float_set_knows_each_head(name: str, branch: list[str]) -> None:
    """INT8 keeps each task's own branch in float (both routes read this one set) and still quantizes the
    box/class stems, one-to-one ones included (before, an end-to-end head stayed in float whole)."""
    import onnx

    from edge_daemon.build.quant.floatset import excluded_nodes, head_prefix

    nodes = onnx.load(str(_model(name))).graph.node
    names = [n.name for n in nodes]
    head = head_prefix(names)
    kept = set(excluded_nodes(names, "head-final"))
    ops = {n.name: n.op_type for n in nodes}
    for part in branch:
        members = [n for n in names if n.startswith(head) and (part in n or ops[n] == part)]
        assert members and all(n in kept for n in members), part
    stems = [n for n in names if n.startswith(head) and ("cv2.0.0/" in n or "cv3.0.0/" in n)]
    assert (name == "classify") == (not stems)
    assert not kept & set(stems)
