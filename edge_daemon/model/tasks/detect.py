"""Detect and pose heads, raw and end to end -> boxes (and keypoints) in frame pixels.

Raw (YOLOv5u/v8/v9/v11/v12, World; YOLO26 and YOLOv10 exported with their one-to-many branch): one output
(4 + nc + extra, N) per image. Rows 0..3 are box centre x, centre y, width, height in model-input pixels;
rows 4..4+nc the sigmoid class scores; then ``extra`` rows (pose: K*D keypoint values, keypoint-major).
N is the number of anchor points (8400 at 640x640). Candidates over ``conf``, class-aware NMS.

End to end (YOLO26/YOLOv10 ``end2end``, ``nms=True`` exports): one output (K, 6 + extra): x1, y1, x2, y2
in model-input pixels, confidence, class id, then the keypoints; K rows (300) ranked by the model's own
top-k, no NMS: rows over ``conf`` (and in ``classes``), at most ``max_det``, as Ultralytics keeps them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from edge_daemon.model.tasks.common import (
    DecodeParams,
    candidates,
    nms_xywh,
    points_to_frame,
    to_frame,
)
from edge_daemon.types import Detections, LetterboxMeta

E2E_COLUMNS = 6


class Kept(NamedTuple):
    """A raw head's detections after NMS, best first: output column, confidence, class id, and corners
    x1, y1, x2, y2 in model-input pixels."""

    idx: npt.NDArray[np.intp]
    conf: npt.NDArray[np.float32]
    cls: npt.NDArray[np.int32]
    corners: npt.NDArray[np.float32]

    @staticmethod
    def none() -> Kept:
        empty = np.zeros(0, np.float32)
        return Kept(np.zeros(0, np.intp), empty, np.zeros(0, np.int32), np.zeros((0, 4), np.float32))


def decode(
    output: npt.NDArray[np.floating], metas: list[LetterboxMeta], params: DecodeParams
) -> list[Detections]:
    """Decode a batch of raw head outputs; ``metas[b]`` maps image b back to its frame."""
    if output.ndim != 3 or output.shape[1] < 4 + params.num_classes:
        raise ValueError(
            f"expected head output (B, 4+{params.num_classes}+extra, N), got shape {tuple(output.shape)}"
        )
    if output.shape[0] != len(metas):
        raise ValueError(f"batch of {output.shape[0]} outputs but {len(metas)} letterbox metas")
    return [decode_one(output[b], metas[b], params) for b in range(output.shape[0])]


def select(pred: npt.NDArray[np.floating], params: DecodeParams) -> Kept:
    """The raw head's detections after NMS. Shared by detect, pose and segment."""
    found = candidates(pred, params)
    if found.idx.size == 0:
        return Kept.none()
    cx, cy, w, h = (pred[i, found.idx].astype(np.float32) for i in range(4))
    # NMS in model-input pixels, as Ultralytics does it; boxes as (x, y, w, h) with top-left corner.
    xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
    keep = nms_xywh(xywh, found, params)
    if keep.size == 0:
        return Kept.none()
    corners = np.concatenate([xywh[keep, :2], xywh[keep, :2] + xywh[keep, 2:]], axis=1)
    return Kept(found.idx[keep], found.conf[keep], found.cls[keep], corners)


def decode_one(pred: npt.NDArray[np.floating], meta: LetterboxMeta, params: DecodeParams) -> Detections:
    """Decode one image's raw detect or pose output of shape (4 + nc + extra, N)."""
    idx, conf, cls, corners = select(pred, params)
    if idx.size == 0:
        return Detections.empty(params.keypoints)
    kpts = None
    if params.keypoints is not None:
        k, d = params.keypoints
        nc = params.num_classes
        rows = pred[4 + nc : 4 + nc + k * d, idx].astype(np.float32)  # (K*D, M)
        kpts = points_to_frame(rows.T.reshape(-1, k, d), meta)
    return Detections(to_frame(corners, meta), conf, cls, kpts)


def select_end2end(
    pred: npt.NDArray[np.floating], params: DecodeParams, columns: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """Rows of an end-to-end output (K, ``columns``) to keep, best first: (row, confidence, class id)."""
    if pred.ndim != 2 or pred.shape[1] != columns:
        raise ValueError(f"expected end-to-end output (K, {columns}), got {tuple(pred.shape)}")
    keep = pred[:, 4] > params.conf
    cls = pred[:, 5].astype(np.int32)
    if params.classes is not None:
        keep &= np.isin(cls, np.asarray(params.classes, dtype=np.int32))
    idx = np.flatnonzero(keep)[: params.max_det]
    conf = pred[idx, 4].astype(np.float32)
    order = np.argsort(-conf, kind="stable")
    return idx[order], conf[order], cls[idx[order]]


def decode_end2end(pred: npt.NDArray[np.floating], meta: LetterboxMeta, params: DecodeParams) -> Detections:
    """One image's end-to-end detect or pose output (K, 6 + keypoint values)."""
    extra = math.prod(params.keypoints) if params.keypoints else 0
    idx, conf, cls = select_end2end(pred, params, E2E_COLUMNS + extra)
    if idx.size == 0:
        return Detections.empty(params.keypoints)
    kpts = None
    if params.keypoints is not None:
        values = pred[idx, E2E_COLUMNS:].astype(np.float32).reshape(-1, *params.keypoints)
        kpts = points_to_frame(values, meta)
    return Detections(to_frame(pred[idx, :4].astype(np.float32), meta), conf, cls, kpts)
