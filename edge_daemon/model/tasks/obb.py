"""Oriented-box heads, raw and end to end -> rotated boxes (centre, size, angle) in frame pixels.

Raw (YOLOv8/11-obb): one output (4 + nc + 1, N): centre x, centre y, width, height in model-input pixels,
nc sigmoid class scores, and the rotation in radians ([-pi/4, 3pi/4)). Candidates over ``conf``, then
rotated NMS, class-aware, with OpenCV's ``cv2.dnn.NMSBoxesRotated`` (exact rotated-rectangle IoU; classes
kept apart by shifting each class's centres, as Ultralytics does). Ultralytics itself suppresses with a
probabilistic IoU (``batch_probiou``); the two agree wherever boxes overlap clearly above or below the
threshold. End to end (YOLO26-obb): (K, 7): centre x, centre y, width, height, confidence, class id, angle.

Mapped to the frame as Ultralytics' ``scale_boxes(..., xywh=True)`` (centre minus padding over the gain,
size over the gain, no clipping). ``xyxy`` is the upright rectangle around the four corners, clipped to the
frame, so trackers and zones downstream work on every task alike.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.model.tasks.common import DecodeParams, best_first, candidates
from edge_daemon.model.tasks.detect import select_end2end
from edge_daemon.types import Detections, LetterboxMeta

E2E_COLUMNS = 7
MAX_WH = 7680  # Ultralytics' per-class offset in pixels


def decode_raw(
    outputs: tuple[npt.NDArray[np.floating], ...], meta: LetterboxMeta, params: DecodeParams
) -> Detections:
    """One image's raw OBB output (4 + nc + 1, N)."""
    pred = outputs[0]
    found = candidates(pred, params)
    if found.idx.size == 0:
        return Detections.empty(obb=True)
    xywhr = pred[[0, 1, 2, 3, 4 + params.num_classes]][:, found.idx].T.astype(np.float32)
    shift = found.cls.astype(np.float32) * MAX_WH
    rects = [
        ((float(x + s), float(y + s)), (float(w), float(h)), math.degrees(float(r)))
        for (x, y, w, h, r), s in zip(xywhr.tolist(), shift.tolist(), strict=True)
    ]
    kept = cv2.dnn.NMSBoxesRotated(rects, found.conf.tolist(), params.conf, params.iou)
    keep = best_first(kept, found, params)
    return _finish(xywhr[keep], found.conf[keep], found.cls[keep], meta)


def decode_end2end(
    outputs: tuple[npt.NDArray[np.floating], ...], meta: LetterboxMeta, params: DecodeParams
) -> Detections:
    """One image's end-to-end OBB output (K, 7)."""
    pred = outputs[0]
    idx, conf, cls = select_end2end(pred, params, E2E_COLUMNS)
    return _finish(pred[idx][:, [0, 1, 2, 3, 6]].astype(np.float32), conf, cls, meta)


def _finish(
    xywhr: npt.NDArray[np.float32],
    conf: npt.NDArray[np.float32],
    cls: npt.NDArray[np.int32],
    meta: LetterboxMeta,
) -> Detections:
    if len(conf) == 0:
        return Detections.empty(obb=True)
    gain = min(meta.gain_x, meta.gain_y)
    boxes = xywhr.copy()
    boxes[:, 0] = (boxes[:, 0] - meta.pad_x) / gain
    boxes[:, 1] = (boxes[:, 1] - meta.pad_y) / gain
    boxes[:, 2:4] /= gain
    pts = corners(boxes)
    upright = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)
    np.clip(upright[:, 0::2], 0, meta.src_w, out=upright[:, 0::2])
    np.clip(upright[:, 1::2], 0, meta.src_h, out=upright[:, 1::2])
    return Detections(upright.astype(np.float32), conf, cls, obb=boxes)


def corners(xywhr: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """The four corners (N, 4, 2) of rotated boxes, in Ultralytics' ``xywhr2xyxyxyxy`` order."""
    ctr = xywhr[:, :2]
    cos, sin = np.cos(xywhr[:, 4:5]), np.sin(xywhr[:, 4:5])
    half_w, half_h = xywhr[:, 2:3] / 2, xywhr[:, 3:4] / 2
    vec1 = np.concatenate([half_w * cos, half_w * sin], axis=1)
    vec2 = np.concatenate([-half_h * sin, half_h * cos], axis=1)
    pts = np.stack([ctr + vec1 + vec2, ctr + vec1 - vec2, ctr - vec1 - vec2, ctr - vec1 + vec2], axis=1)
    return pts.astype(np.float32)
