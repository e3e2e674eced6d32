"""YOLOv8-family detect-head decode -> class-aware NMS -> boxes in frame pixels.

Input layout (the raw head output of Ultralytics YOLOv8 / YOLO11 detect and pose models exported to ONNX
or TensorRT): float array (B, 4 + nc + extra, N). Rows 0..3 are box centre x, centre y, width, height in
model-input pixels; rows 4..4+nc are per-class scores (already sigmoid-ed); ``extra`` rows (pose keypoints,
segmentation coefficients) are ignored here. N is the number of anchor points (e.g. 8400 at 640x640).

NMS is OpenCV's ``cv2.dnn.NMSBoxesBatched`` (class-aware). Thresholds follow Ultralytics: a candidate needs
confidence > conf, and a box is suppressed by a better box of the same class when IoU > iou.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.types import Detections, LetterboxMeta


@dataclass(frozen=True, slots=True)
class DecodeParams:
    """Post-processing knobs, validated by the settings model (DetectConfig)."""

    num_classes: int
    conf: float = 0.25
    iou: float = 0.7
    classes: tuple[int, ...] | None = None
    max_det: int = 300
    keypoints: tuple[int, int] | None = None  # pose: kpt_shape (K, D); the rows after the class scores


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


def decode_one(pred: npt.NDArray[np.floating], meta: LetterboxMeta, params: DecodeParams) -> Detections:
    """Decode one image's head output of shape (4 + nc + extra, N)."""
    nc = params.num_classes
    scores = pred[4 : 4 + nc]
    best = scores.max(axis=0)
    idx = np.flatnonzero(best > params.conf)
    if idx.size == 0:
        return Detections.empty(params.keypoints)
    cls = scores[:, idx].argmax(axis=0).astype(np.int32)
    conf = best[idx].astype(np.float32)
    if params.classes is not None:
        keep_cls = np.isin(cls, np.asarray(params.classes, dtype=np.int32))
        idx, cls, conf = idx[keep_cls], cls[keep_cls], conf[keep_cls]
        if idx.size == 0:
            return Detections.empty(params.keypoints)

    cx, cy, w, h = (pred[i, idx].astype(np.float32) for i in range(4))
    # NMS in model-input pixels, as Ultralytics does it; boxes as (x, y, w, h) with top-left corner.
    xywh = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
    kept = cv2.dnn.NMSBoxesBatched(xywh.tolist(), conf.tolist(), cls.tolist(), params.conf, params.iou)
    keep = np.asarray(kept, dtype=np.int64).reshape(-1)
    if keep.size == 0:
        return Detections.empty(params.keypoints)
    keep = keep[np.argsort(-conf[keep], kind="stable")][: params.max_det]

    corners = np.concatenate([xywh[keep, :2], xywh[keep, :2] + xywh[keep, 2:]], axis=1)
    kpts = None
    if params.keypoints is not None:
        k, d = params.keypoints
        rows = pred[4 + nc : 4 + nc + k * d, idx[keep]].astype(np.float32)  # (K*D, M)
        kpts = keypoints_to_frame(rows.T.reshape(-1, k, d), meta)
    return Detections(to_frame(corners, meta), conf[keep], cls[keep], kpts)


def keypoints_to_frame(kpts: npt.NDArray[np.float32], meta: LetterboxMeta) -> npt.NDArray[np.float32]:
    """Keypoints (M, K, D) with x, y in model-input pixels -> frame pixels, clipped to the frame, as
    Ultralytics' ``scale_coords`` maps them; further values (visibility) unchanged. A new array."""
    out = np.array(kpts, dtype=np.float32, copy=True)
    out[..., 0] = np.clip((out[..., 0] - meta.pad_x) / meta.gain_x, 0, meta.src_w)
    out[..., 1] = np.clip((out[..., 1] - meta.pad_y) / meta.gain_y, 0, meta.src_h)
    return out


def to_frame(xyxy: npt.NDArray[np.float32], meta: LetterboxMeta) -> npt.NDArray[np.float32]:
    """Corners (N, 4) in model-input pixels -> frame pixels, clipped to the frame (float32, new array)."""
    out = np.empty_like(xyxy, dtype=np.float32)
    out[:, 0::2] = (xyxy[:, 0::2] - meta.pad_x) / meta.gain_x
    out[:, 1::2] = (xyxy[:, 1::2] - meta.pad_y) / meta.gain_y
    np.clip(out[:, 0::2], 0, meta.src_w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, meta.src_h, out=out[:, 1::2])
    return out
