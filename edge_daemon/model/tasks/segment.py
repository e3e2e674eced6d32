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
    polygons: list[Polygons] = []
    keep: list[int] = []
    for i in range(len(conf)):
        outline = outlines(coefs[i], protos, corners[i], (meta.dst_h, meta.dst_w))
        if outline is None:
            continue
        keep.append(i)
        polygons.append(tuple(points_to_frame(p, meta) for p in outline))
    rows = np.asarray(keep, dtype=np.intp)
    return Detections(to_frame(corners[rows], meta), conf[rows], cls[rows], polygons=tuple(polygons))


def box_window(corner: npt.NDArray[np.float32], input_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Pixel columns c0..c1 and rows r0..r1 (half-open) that crop_mask keeps: x1 <= c < x2, y1 <= r < y2."""
    h, w = input_hw
    x1, y1, x2, y2 = (float(v) for v in corner)
    c0, c1 = max(0, int(np.ceil(x1))), min(w, int(np.ceil(x2)))
    r0, r1 = max(0, int(np.ceil(y1))), min(h, int(np.ceil(y2)))
    return c0, r0, c1, r1


def _proto_span(lo: int, hi: int, scale: float, size: int) -> tuple[int, int]:
    """Prototype cells that bilinear sampling of input pixels lo..hi-1 reads (both neighbours)."""
    first = int(np.floor((lo + 0.5) * scale - 0.5))
    last = int(np.floor((hi - 0.5) * scale - 0.5)) + 1
    return max(0, first), min(size, last + 1)


def instance_mask(
    coef: npt.NDArray[np.float32],
    protos: npt.NDArray[np.float32],
    corner: npt.NDArray[np.float32],
    input_hw: tuple[int, int],
) -> tuple[npt.NDArray[np.uint8], int, int] | None:
    """The binary mask (0/1) inside the box's window at model-input resolution, with the window's left and
    top; None when the window is empty. Only the prototype cells under the box are combined."""
    c0, r0, c1, r1 = box_window(corner, input_hw)
    if c1 <= c0 or r1 <= r0:
        return None
    nm, mh, mw = protos.shape
    sx, sy = mw / input_hw[1], mh / input_hw[0]
    px0, px1 = _proto_span(c0, c1, sx, mw)
    py0, py1 = _proto_span(r0, r1, sy, mh)
    cells = protos[:, py0:py1, px0:px1]
    logit = (coef @ cells.reshape(nm, -1)).reshape(py1 - py0, px1 - px0)
    # dst (x, y) in the window samples the prototype grid at ((x + c0 + 0.5) * sx - 0.5, ...): F.interpolate's
    # align_corners=False mapping, clamped at the grid's edges (BORDER_REPLICATE: the cells taken include
    # every neighbour the sampling reads, so only the grid's own edges clamp).
    affine = np.array(
        [[sx, 0, (c0 + 0.5) * sx - 0.5 - px0], [0, sy, (r0 + 0.5) * sy - 0.5 - py0]], np.float64
    )
    window = cv2.warpAffine(
        logit,
        affine,
        (c1 - c0, r1 - r0),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return (window > 0).astype(np.uint8), c0, r0


def outlines(
    coef: npt.NDArray[np.float32],
    protos: npt.NDArray[np.float32],
    corner: npt.NDArray[np.float32],
    input_hw: tuple[int, int],
) -> Polygons | None:
    """External outlines of one instance's mask in model-input pixels, or None when the mask is empty."""
    found = instance_mask(coef, protos, corner, input_hw)
    if found is None:
        return None
    mask, c0, r0 = found
    if not mask.any():
        return None
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(c0, r0))
    return tuple(np.asarray(c, np.float32).reshape(-1, 2) for c in contours)
