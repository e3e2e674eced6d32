"""What every head's decoder shares: the knobs, the decoder's type, candidate selection and NMS, and the
mapping from model-input pixels back to frame pixels (the inverse of the letterbox or centre crop).

Thresholds follow Ultralytics: a candidate needs confidence > conf; a box is suppressed by a better box of
the same class when IoU > iou (OpenCV's ``cv2.dnn.NMSBoxesBatched``, class-aware).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.types import Detections, LetterboxMeta

#: One image's outputs (each without the batch dimension, in the engine's output order) and the letterbox
#: that made its input -> what the model saw.
Decoder = Callable[[tuple[npt.NDArray[np.floating], ...], LetterboxMeta], Detections]


@dataclass(frozen=True, slots=True)
class DecodeParams:
    """Post-processing knobs, validated by the settings model (DetectConfig)."""

    num_classes: int
    conf: float = 0.25
    iou: float = 0.7
    classes: tuple[int, ...] | None = None
    max_det: int = 300
    keypoints: tuple[int, int] | None = None  # pose: kpt_shape (K, D); the rows after the class scores
    top_k: int = 5  # classify: how many classes to report


@dataclass(frozen=True, slots=True)
class Candidates:
    """Rows of a raw head that pass the confidence and class filters: column ``idx`` of the output, its
    best class and that class's score."""

    idx: npt.NDArray[np.intp]
    conf: npt.NDArray[np.float32]
    cls: npt.NDArray[np.int32]


def candidates(pred: npt.NDArray[np.floating], params: DecodeParams) -> Candidates:
    """Columns of a raw head output (4 + nc + extra, N) whose best class score is over ``conf`` (and in
    ``classes``), as Ultralytics' ``non_max_suppression`` selects them before NMS."""
    nc = params.num_classes
    scores = pred[4 : 4 + nc]
    best = scores.max(axis=0)
    idx = np.flatnonzero(best > params.conf)
    cls = scores[:, idx].argmax(axis=0).astype(np.int32)
    conf = best[idx].astype(np.float32)
    if params.classes is not None:
        keep = np.isin(cls, np.asarray(params.classes, dtype=np.int32))
        idx, cls, conf = idx[keep], cls[keep], conf[keep]
    return Candidates(idx, conf, cls)


def nms_xywh(xywh: npt.NDArray[np.float32], found: Candidates, params: DecodeParams) -> npt.NDArray[np.int64]:
    """Class-aware NMS over boxes (x, y, w, h with the top-left corner) of ``found``: the positions kept,
    best first, at most ``max_det``."""
    kept = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), found.conf.tolist(), found.cls.tolist(), params.conf, params.iou
    )
    return best_first(kept, found, params)


def best_first(kept: Any, found: Candidates, params: DecodeParams) -> npt.NDArray[np.int64]:
    """The positions an OpenCV NMS kept, ordered by confidence (highest first), at most ``max_det``."""
    keep = np.asarray(kept, dtype=np.int64).reshape(-1)
    return keep[np.argsort(-found.conf[keep], kind="stable")][: params.max_det]


def to_frame(xyxy: npt.NDArray[np.float32], meta: LetterboxMeta) -> npt.NDArray[np.float32]:
    """Corners (N, 4) in model-input pixels -> frame pixels, clipped to the frame (float32, new array)."""
    out = np.empty_like(xyxy, dtype=np.float32)
    out[:, 0::2] = (xyxy[:, 0::2] - meta.pad_x) / meta.gain_x
    out[:, 1::2] = (xyxy[:, 1::2] - meta.pad_y) / meta.gain_y
    np.clip(out[:, 0::2], 0, meta.src_w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, meta.src_h, out=out[:, 1::2])
    return out


def points_to_frame(points: npt.NDArray[np.float32], meta: LetterboxMeta) -> npt.NDArray[np.float32]:
    """Points (..., 2 or more) with x, y in model-input pixels -> frame pixels, clipped to the frame, as
    Ultralytics' ``scale_coords`` maps them; further values (visibility) unchanged. A new array."""
    out = np.array(points, dtype=np.float32, copy=True)
    out[..., 0] = np.clip((out[..., 0] - meta.pad_x) / meta.gain_x, 0, meta.src_w)
    out[..., 1] = np.clip((out[..., 1] - meta.pad_y) / meta.gain_y, 0, meta.src_h)
    return out
