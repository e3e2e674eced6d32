"""Every Ultralytics head a user brings, recognised from the model's own metadata and output shapes, never
guessed, and decoded by its own module into one task-agnostic result (:class:`edge_daemon.types.Detections`)
that the pipeline and the publisher pass along without task branches.

Heads (outputs per image; ``-e2e``: an end-to-end head, metadata ``end2end: True`` or an ``nms=True``
export, K rows ranked by the model itself, no NMS):

==============  ===========================================  =============================
head            outputs                                      module
==============  ===========================================  =============================
detect          (4+nc, N)                                    :mod:`.detect`
detect-e2e      (K, 6)                                       :mod:`.detect`
pose            (4+nc+K*D, N)                                :mod:`.detect` (keypoints)
pose-e2e        (K, 6+K*D)                                   :mod:`.detect` (keypoints)
segment         (4+nc+nm, N), prototypes (nm, mh, mw)        :mod:`.segment`
segment-e2e     (K, 6+nm), prototypes (nm, mh, mw)           :mod:`.segment`
obb             (4+nc+1, N)                                  :mod:`.obb`
obb-e2e         (K, 7)                                       :mod:`.obb`
classify        (nc,)                                        :mod:`.classify`
==============  ===========================================  =============================

Anything else is refused when the model is loaded, with one line saying what was found and what is
supported (ModelError, exit 65), never decoded as if it were something it is not.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Callable, Sequence
from functools import partial

from edge_daemon.errors import ModelError
from edge_daemon.model.tasks import classify, detect, obb, segment
from edge_daemon.model.tasks.common import DecodeParams, Decoder
from edge_daemon.types import Detections

__all__ = [
    "HEADS",
    "SUPPORTED",
    "TASKS",
    "DecodeParams",
    "Decoder",
    "decoder",
    "fit",
    "is_end2end",
    "keypoint_shape",
    "recognise",
]

SUPPORTED = (
    "detect (B, 4+nc, N) or end-to-end (B, K, 6); pose (B, 4+nc+K*D, N) or (B, K, 6+K*D); segment "
    "(B, 4+nc+nm, N) or (B, K, 6+nm) with prototypes (B, nm, H, W); obb (B, 4+nc+1, N) or (B, K, 7); "
    "classify (B, nc)"
)
TASKS = ("detect", "pose", "segment", "obb", "classify")
Shape = tuple[int | None, ...]


def _flag(metadata: dict[str, str], key: str) -> bool:
    return str(metadata.get(key, "")).strip().lower() == "true"


def _export_nms(metadata: dict[str, str]) -> bool:
    try:
        args = ast.literal_eval(metadata.get("args", "{}"))
    except (ValueError, SyntaxError):
        return False
    return isinstance(args, dict) and args.get("nms") is True


def is_end2end(metadata: dict[str, str]) -> bool:
    """Whether the model's metadata says its head is end to end (``end2end``, or an ``nms=True`` export):
    its outputs are ranked rows, selected inside the model by a top-k."""
    return _flag(metadata, "end2end") or _export_nms(metadata)


def keypoint_shape(metadata: dict[str, str]) -> tuple[int, int] | None:
    """``kpt_shape`` [K, D] from the metadata, or None."""
    try:
        shape = ast.literal_eval(metadata.get("kpt_shape", "None"))
    except (ValueError, SyntaxError):
        return None
    if isinstance(shape, list | tuple) and len(shape) == 2:
        return int(shape[0]), int(shape[1])
    return None


def _dims(shape: Shape) -> str:
    return ", ".join(["B", *("?" if d is None else str(d) for d in shape)])


def recognise(
    metadata: dict[str, str],
    output_shapes: Sequence[Shape],
    num_classes: int,
    task: str,
    source: str,
) -> str:
    """The head that the model's metadata and output shapes (per image, without the batch dimension; None
    for a dynamic size; main output first) agree on; ModelError (exit 65) when they agree on none."""
    shapes = [tuple(s) for s in output_shapes]
    end2end = is_end2end(metadata)
    found = (
        f"{source}: output {' + '.join(f'({_dims(s)})' for s in shapes)} with task {task!r}, "
        f"end2end {end2end}, {num_classes} classes"
    )

    def refuse(why: str) -> ModelError:
        return ModelError(f"{found}: {why}; supported: {SUPPORTED}")

    main = shapes[0]
    if task not in TASKS:
        raise refuse("matches no supported head")
    if task == "classify":
        if len(shapes) != 1 or main != (num_classes,):
            raise refuse(f"a classify head gives (B, {num_classes})")
        return "classify"
    if len(main) != 2:
        raise refuse("matches no supported head")
    extra, plus = 0, ""
    if task == "pose":
        extra = math.prod(keypoint_shape(metadata) or (0,))
        if not extra:
            raise refuse("a pose model without kpt_shape metadata")
        plus = f"+{extra}"
    elif task == "segment":
        if len(shapes) != 2 or len(shapes[1]) != 3 or shapes[1][0] is None:
            raise refuse("a segment head gives its mask prototypes (B, nm, H, W) as a second output")
        extra = int(shapes[1][0])
        plus = f"+{extra}"
    elif task == "obb":
        extra, plus = 1, "+1"
    if task != "segment" and len(shapes) != 1:
        raise refuse(f"a {task} head has one output")
    if end2end:
        columns = detect.E2E_COLUMNS + extra
        if main[1] != columns:
            want = f"6{plus}={columns}" if plus else "6"
            raise refuse(f"an end-to-end {task} head gives (B, K, {want})")
        return f"{task}-e2e"
    rows = 4 + num_classes + extra
    if main[0] != rows:
        raise refuse(f"a raw {task} head gives (B, 4+{num_classes}{plus}={rows}, N)")
    return task


def fit(task: str) -> str:
    """How a frame becomes the model input: ``crop`` (centre crop) for classifiers, else ``letterbox``."""
    return "crop" if task == "classify" else "letterbox"


def _first(fn: Callable[..., Detections]) -> Callable[..., Detections]:
    """A decoder of the main output alone, as one of every output."""
    return lambda outputs, meta, params: fn(outputs[0], meta, params)


_DECODERS: dict[str, Callable[..., Detections]] = {
    "detect": _first(detect.decode_one),
    "detect-e2e": _first(detect.decode_end2end),
    "pose": _first(detect.decode_one),
    "pose-e2e": _first(detect.decode_end2end),
    "segment": segment.decode_raw,
    "segment-e2e": segment.decode_end2end,
    "obb": obb.decode_raw,
    "obb-e2e": obb.decode_end2end,
    "classify": classify.decode,
}
HEADS = tuple(_DECODERS)


def decoder(head: str, params: DecodeParams) -> Decoder:
    """The per-image decoder of ``head`` with ``params`` bound: (outputs, letterbox) -> Detections."""
    try:
        fn = _DECODERS[head]
    except KeyError:
        raise ValueError(f"unknown head {head!r}; known: {', '.join(HEADS)}") from None
    return partial(fn, params=params)
