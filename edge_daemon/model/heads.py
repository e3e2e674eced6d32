"""Which head a model has, recognised from its own metadata and output shape, and its decoder.

Supported:

- ``detect`` (raw): output (B, 4 + nc + extra, N): box centre x, centre y, width, height in model-input
  pixels, then nc sigmoid class scores, then ``extra`` rows (pose: ``kpt_shape`` keypoint values; ignored
  by the box decoder). YOLOv5u/v8/v9/v11/v12, YOLO-World, YOLO26 and YOLOv10 exported with their one-to-many
  branch. Decoded by :func:`edge_daemon.model.postprocess.decode_one` (class-aware NMS).
- ``end2end``: output (B, K, 6 + extra): x1, y1, x2, y2 in model-input pixels, confidence, class id, then
  the pose keypoints (``extra``), K rows (300) ranked by the model's own top-k; no NMS. YOLO26 and YOLOv10
  exported end to end (``nms=False``; metadata ``end2end: True``) and detect models exported with
  ``nms=True``.

Pose models (``task: pose``, ``kpt_shape`` [K, D]) carry K*D keypoint values per box after the class
scores (raw) or after the class id (end to end); both decoders return them in frame pixels.

Anything else is refused when the model is loaded, with one line saying what was found and what is
supported (ModelError, exit 65), never decoded as if it were something it is not.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from edge_daemon.errors import ModelError
from edge_daemon.model.postprocess import DecodeParams, decode_one, keypoints_to_frame, to_frame
from edge_daemon.types import Detections, LetterboxMeta

Decoder = Callable[[npt.NDArray[np.floating], LetterboxMeta], Detections]
E2E_COLUMNS = 6
SUPPORTED = (
    "detect (B, 4+nc, N), pose (B, 4+nc+keypoints, N), end-to-end detect (B, K, 6) and pose "
    "(B, K, 6+keypoints) from an end2end or nms=True export"
)


def _flag(metadata: dict[str, str], key: str) -> bool:
    return str(metadata.get(key, "")).strip().lower() == "true"


def _export_nms(metadata: dict[str, str]) -> bool:
    try:
        args = ast.literal_eval(metadata.get("args", "{}"))
    except (ValueError, SyntaxError):
        return False
    return isinstance(args, dict) and args.get("nms") is True


def _keypoint_values(metadata: dict[str, str]) -> int:
    shape = keypoint_shape(metadata)
    return math.prod(shape) if shape else 0


def recognise(
    metadata: dict[str, str], output_shape: Sequence[int | None], num_classes: int, task: str, source: str
) -> str:
    """The head (``detect`` or ``end2end``) that the model's metadata and output shape (per image, without
    the batch dimension; None for a dynamic size) agree on; ModelError (exit 65) when they agree on none."""
    end2end = _flag(metadata, "end2end") or _export_nms(metadata)
    shape = tuple(output_shape)
    dims = ", ".join(["B", *("?" if d is None else str(d) for d in shape)])
    found = f"{source}: output ({dims}) with task {task!r}, end2end {end2end}, {num_classes} classes"
    if len(shape) != 2 or task not in ("detect", "pose"):
        raise ModelError(f"{found}: matches no supported head; supported: {SUPPORTED}")
    extra = _keypoint_values(metadata) if task == "pose" else 0
    if task == "pose" and not extra:
        raise ModelError(f"{found}: a pose model without kpt_shape metadata; supported: {SUPPORTED}")
    plus = f"+{extra}" if extra else ""
    if end2end:
        if shape[1] != E2E_COLUMNS + extra:
            raise ModelError(
                f"{found}: an end-to-end {task} head gives (B, K, 6{plus}"
                f"{f'={E2E_COLUMNS + extra}' if extra else ''}); "
                f"supported: {SUPPORTED}"
            )
        return "end2end"
    if shape[0] != 4 + num_classes + extra:
        raise ModelError(
            f"{found}: a raw {task} head gives (B, 4+{num_classes}{plus}={4 + num_classes + extra}, N); "
            f"supported: {SUPPORTED}"
        )
    return "detect"


def keypoint_shape(metadata: dict[str, str]) -> tuple[int, int] | None:
    """``kpt_shape`` [K, D] from the metadata, or None."""
    try:
        shape = ast.literal_eval(metadata.get("kpt_shape", "None"))
    except (ValueError, SyntaxError):
        return None
    if isinstance(shape, list | tuple) and len(shape) == 2:
        return int(shape[0]), int(shape[1])
    return None


def decode_end2end(pred: npt.NDArray[np.floating], meta: LetterboxMeta, params: DecodeParams) -> Detections:
    """One image's end-to-end output (K, 6): rows over ``conf`` (and in ``classes``), the model's own
    order, at most ``max_det``, as Ultralytics keeps them; boxes mapped back to frame pixels."""
    extra = math.prod(params.keypoints) if params.keypoints else 0
    if pred.ndim != 2 or pred.shape[1] != E2E_COLUMNS + extra:
        raise ValueError(f"expected end-to-end output (K, {E2E_COLUMNS + extra}), got {tuple(pred.shape)}")
    keep = pred[:, 4] > params.conf
    cls = pred[:, 5].astype(np.int32)
    if params.classes is not None:
        keep &= np.isin(cls, np.asarray(params.classes, dtype=np.int32))
    idx = np.flatnonzero(keep)[: params.max_det]
    if idx.size == 0:
        return Detections.empty(params.keypoints)
    conf = pred[idx, 4].astype(np.float32)
    order = np.argsort(-conf, kind="stable")
    idx, conf = idx[order], conf[order]
    kpts = None
    if params.keypoints is not None:
        values = pred[idx, E2E_COLUMNS:].astype(np.float32).reshape(-1, *params.keypoints)
        kpts = keypoints_to_frame(values, meta)
    return Detections(to_frame(pred[idx, :4].astype(np.float32), meta), conf, cls[idx], kpts)


def decoder(head: str, params: DecodeParams) -> Decoder:
    """The per-image decoder of ``head`` with ``params`` bound."""
    if head == "end2end":
        return lambda pred, meta: decode_end2end(pred, meta, params)
    if head == "detect":
        return lambda pred, meta: decode_one(pred, meta, params)
    raise ValueError(f"unknown head {head!r}")
