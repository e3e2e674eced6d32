"""Decode + class-aware NMS + unletterbox, as pure tables on hand-made head outputs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from edge_daemon.model.preprocess import letterbox_meta
from edge_daemon.model.tasks import DecodeParams
from edge_daemon.model.tasks.detect import decode, decode_one
from edge_daemon.types import Detections

IDENTITY = letterbox_meta((640, 640), (640, 640))


def head(
    boxes: Sequence[tuple[float, float, float, float, int, float]], nc: int = 3, extra: int = 0
) -> np.ndarray:
    """Build a (4+nc+extra, N) head output from (cx, cy, w, h, class, score) rows."""
    out = np.zeros((4 + nc + extra, len(boxes)), np.float32)
    for i, (cx, cy, w, h, cls, score) in enumerate(boxes):
        out[:4, i] = (cx, cy, w, h)
        out[4 + cls, i] = score
    return out


def test_empty_and_below_threshold() -> None:
    params = DecodeParams(num_classes=3, conf=0.5)
    assert len(decode_one(head([]), IDENTITY, params)) == 0
    assert len(decode_one(head([(10, 10, 4, 4, 0, 0.5)]), IDENTITY, params)) == 0  # needs conf > 0.5


def test_nms_is_class_aware() -> None:
    rows = [
        (100, 100, 50, 50, 0, 0.9),
        (102, 101, 50, 50, 0, 0.8),  # same class, IoU ~0.9: suppressed
        (101, 100, 50, 50, 1, 0.7),  # other class, same place: kept
        (400, 400, 30, 30, 2, 0.6),
    ]
    dets = decode_one(head(rows), IDENTITY, DecodeParams(num_classes=3, conf=0.25, iou=0.7))
    assert dets.class_id.tolist() == [0, 1, 2]
    np.testing.assert_allclose(dets.confidence, [0.9, 0.7, 0.6], rtol=1e-6)
    np.testing.assert_allclose(dets.xyxy[0], [75, 75, 125, 125], atol=1e-4)


@pytest.mark.parametrize(("iou", "kept"), [(0.95, 2), (0.5, 1)])
def test_iou_threshold(iou: float, kept: int) -> None:
    rows = [(100, 100, 50, 50, 0, 0.9), (104, 100, 50, 50, 0, 0.8)]  # IoU = 46/54 = 0.85
    assert len(decode_one(head(rows), IDENTITY, DecodeParams(num_classes=3, iou=iou))) == kept


def test_class_filter_and_max_det() -> None:
    rows = [(50 + 60 * i, 50, 40, 40, i % 3, 0.3 + 0.05 * i) for i in range(9)]
    only_two = decode_one(head(rows), IDENTITY, DecodeParams(num_classes=3, classes=(2,)))
    assert set(only_two.class_id.tolist()) == {2} and len(only_two) == 3
    top = decode_one(head(rows), IDENTITY, DecodeParams(num_classes=3, max_det=4))
    assert len(top) == 4
    assert np.all(np.diff(top.confidence) <= 0), "sorted by confidence, best first"
    assert top.confidence[0] == pytest.approx(0.7)


def test_boxes_mapped_back_to_frame_pixels_and_clipped() -> None:
    meta = letterbox_meta((576, 768), (480, 576))  # gain 0.75, pad_y 24
    rows = [(288, 264, 150, 75, 1, 0.9), (10, 30, 40, 40, 0, 0.8)]  # second box sticks out top-left
    dets = decode_one(head(rows), meta, DecodeParams(num_classes=3))
    np.testing.assert_allclose(dets.xyxy[0], [284, 270, 484, 370], atol=1e-3)
    np.testing.assert_allclose(dets.xyxy[1], [0, 0, 40, 26 / 0.75], atol=1e-3)


def test_pose_extra_rows_ignored() -> None:
    pose = head([(100, 100, 20, 40, 0, 0.9)], nc=1, extra=51)
    pose[5:, 0] = 1000.0  # keypoints must not be mistaken for class scores
    dets = decode_one(pose, IDENTITY, DecodeParams(num_classes=1))
    assert dets.class_id.tolist() == [0] and dets.confidence[0] == pytest.approx(0.9)


def test_batch_decode_checks_shapes() -> None:
    out = np.stack([head([(100, 100, 20, 20, 0, 0.9)]), head([(100, 100, 20, 20, 0, 0.1)])])
    res = decode(out, [IDENTITY, IDENTITY], DecodeParams(num_classes=3))
    assert [len(r) for r in res] == [1, 0]
    with pytest.raises(ValueError, match="letterbox metas"):
        decode(out, [IDENTITY], DecodeParams(num_classes=3))
    with pytest.raises(ValueError, match="head output"):
        decode(out[:, :5], [IDENTITY, IDENTITY], DecodeParams(num_classes=3))


def test_detections_type_validates() -> None:
    assert len(Detections.empty()) == 0
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        Detections(np.zeros((2, 3), np.float32), np.zeros(2, np.float32), np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="int32"):
        Detections(np.zeros((1, 4), np.float32), np.zeros(1, np.float32), np.zeros(1, np.int64))  # type: ignore[arg-type]
