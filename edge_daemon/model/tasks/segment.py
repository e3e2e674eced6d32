"""Segmentation heads, raw and end to end -> boxes and per-instance mask outlines in frame pixels.

Two outputs per image: the detections, then the mask prototypes (nm, mh, mw) (32 x 160 x 160 at 640).
Raw (YOLOv8/11-seg): detections (4 + nc + nm, N), decoded as the detect head (class-aware NMS), the last
nm rows being each anchor's mask coefficients. End to end (YOLO26-seg): (K, 6 + nm), x1 y1 x2 y2,
confidence, class id, coefficients.

A mask is Ultralytics' ``process_mask(..., upsample=True)``: coefficients x prototypes -> logits, bilinear
upsampling to the model input, > 0, cropped to the box (columns x1 <= c < x2, rows y1 <= r < y2). Only the
box's own window is computed: the coefficients meet the prototype cells under the box alone, and those
logits are upsampled to the window (``cv2.warpAffine``, the same half-pixel mapping and edge clamping as
``F.interpolate``), not the whole input. Outlines are OpenCV's external contours of the
mask, mapped to frame pixels as Ultralytics' ``Masks.xy``. Detections whose mask is empty are dropped, as
Ultralytics drops them.
"""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.model.tasks.common import DecodeParams, points_to_frame, to_frame
from edge_daemon.model.tasks.detect import E2E_COLUMNS, select, select_end2end
from edge_daemon.types import Detections, LetterboxMeta

Polygons = tuple[npt.NDArray[np.float32], ...]


def decode_raw(
    outputs: tuple[npt.NDArray[np.floating], ...], meta: LetterboxMeta, params: DecodeParams
) -> Detections:
    """One image's raw segmentation outputs: (4 + nc + nm, N) and prototypes (nm, mh, mw)."""
    pred, protos = outputs[0], outputs[1]
    kept = select(pred, params)
    coefs = pred[4 + params.num_classes :, kept.idx].T  # (M, nm)
    return _finish(kept.corners, kept.conf, kept.cls, coefs, protos, meta)


def decode_end2end(
    outputs: tuple[npt.NDArray[np.floating], ...], meta: LetterboxMeta, params: DecodeParams
) -> Detections:
    """One image's end-to-end segmentation outputs: (K, 6 + nm) and prototypes (nm, mh, mw)."""
    pred, protos = outputs[0], outputs[1]
    idx, conf, cls = select_end2end(pred, params, E2E_COLUMNS + protos.shape[0])
    corners = pred[idx, :4].astype(np.float32)
    return _finish(corners, conf, cls, pred[idx, E2E_COLUMNS:], protos, meta)


def _finish(
    corners: npt.NDArray[np.float32],
    conf: npt.NDArray[np.float32],
    cls: npt.NDArray[np.int32],
    coefs: npt.NDArray[np.floating],
    protos: npt.NDArray[np.floating],
    meta: LetterboxMeta,
) -> Detections:
    if len(conf) == 0:
        return Detections.empty(masks=True)
    protos = np.asarray(protos, np.float32)  # no per-frame copy when it is float32 already
    coefs = np.asarray(coefs, np.float32)
    input_hw = (meta.dst_h, meta.dst_w)
    windows = box_windows(corners, input_hw, (protos.shape[1], protos.shape[2]))
    polygons: list[Polygons] = []
    keep: list[int] = []
    for i, window in enumerate(windows.tolist()):
        outline = outlines(coefs[i], protos, window, input_hw)
        if outline is None:
            continue
        keep.append(i)
        polygons.append(tuple(points_to_frame(p, meta) for p in outline))
    rows = np.asarray(keep, dtype=np.intp)
    return Detections(to_frame(corners[rows], meta), conf[rows], cls[rows], polygons=tuple(polygons))


def box_windows(
    corners: npt.NDArray[np.float32], input_hw: tuple[int, int], proto_hw: tuple[int, int]
) -> npt.NDArray[np.int64]:
    """Per box (M, 8): the input pixels crop_mask keeps, columns c0..c1 and rows r0..r1 (half-open:
    x1 <= c < x2, y1 <= r < y2), and the prototype cells px0..px1, py0..py1 that bilinear sampling of
    those pixels reads (both neighbours), all at once."""
    h, w = input_hw
    mh, mw = proto_hw
    sx, sy = mw / w, mh / h
    up = np.ceil(corners.astype(np.float64)).astype(np.int64)
    c0, c1 = np.clip(up[:, 0], 0, w), np.clip(up[:, 2], 0, w)
    r0, r1 = np.clip(up[:, 1], 0, h), np.clip(up[:, 3], 0, h)
    px0 = np.clip(np.floor((c0 + 0.5) * sx - 0.5), 0, mw).astype(np.int64)
    px1 = np.clip(np.floor((c1 - 0.5) * sx - 0.5) + 2, 0, mw).astype(np.int64)
    py0 = np.clip(np.floor((r0 + 0.5) * sy - 0.5), 0, mh).astype(np.int64)
    py1 = np.clip(np.floor((r1 - 0.5) * sy - 0.5) + 2, 0, mh).astype(np.int64)
    return np.stack([c0, r0, c1, r1, px0, py0, px1, py1], axis=1)


def instance_mask(
    coef: npt.NDArray[np.float32],
    protos: npt.NDArray[np.float32],
    window: list[int],
    input_hw: tuple[int, int],
) -> npt.NDArray[np.uint8] | None:
    """The binary mask (0/1) inside the box's window (:func:`box_windows`) at model-input resolution; None
    when it has no pixel. Only the prototype cells under the box are combined."""
    c0, r0, c1, r1, px0, py0, px1, py1 = window
    if c1 <= c0 or r1 <= r0:
        return None
    nm, mh, mw = protos.shape
    logit = (coef @ protos[:, py0:py1, px0:px1].reshape(nm, -1)).reshape(py1 - py0, px1 - px0)
    if logit.max() <= 0:  # bilinear samples of values <= 0 stay <= 0: an empty mask
        return None
    sx, sy = mw / input_hw[1], mh / input_hw[0]
    # dst (x, y) in the window samples the prototype grid at ((x + c0 + 0.5) * sx - 0.5, ...): F.interpolate's
    # align_corners=False mapping, clamped at the grid's edges (BORDER_REPLICATE: the cells taken include
    # every neighbour the sampling reads, so only the grid's own edges clamp).
    affine = np.array(
        [[sx, 0, (c0 + 0.5) * sx - 0.5 - px0], [0, sy, (r0 + 0.5) * sy - 0.5 - py0]], np.float64
    )
    upsampled = cv2.warpAffine(
        logit,
        affine,
        (c1 - c0, r1 - r0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    mask = (upsampled > 0).astype(np.uint8)
    return mask if mask.any() else None


def outlines(
    coef: npt.NDArray[np.float32],
    protos: npt.NDArray[np.float32],
    window: list[int],
    input_hw: tuple[int, int],
) -> Polygons | None:
    """External outlines of one instance's mask in model-input pixels, or None when the mask is empty."""
    mask = instance_mask(coef, protos, window, input_hw)
    if mask is None:
        return None
    contours, _ = cv2.findContours(
        mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(window[0], window[1])
    )
    return tuple(np.asarray(c, np.float32).reshape(-1, 2) for c in contours)
