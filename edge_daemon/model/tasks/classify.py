"""Classification head -> the top-k classes with their probabilities.

One output (nc,) per image: class probabilities (Ultralytics exports its Classify head with the softmax
applied). The input is the frame's centre crop, not a letterbox (:func:`edge_daemon.model.preprocess.
crop_meta`), as Ultralytics' ``classify_transforms`` prepares it. ``classes`` limits the candidates;
``conf`` does not apply (the top-k are reported whatever their probability, as Ultralytics' ``top5``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edge_daemon.model.tasks.common import DecodeParams
from edge_daemon.types import Detections, LetterboxMeta


def decode(
    outputs: tuple[npt.NDArray[np.floating], ...], meta: LetterboxMeta, params: DecodeParams
) -> Detections:
    """One image's class probabilities (nc,) -> the top ``top_k``, most likely first."""
    probs = np.asarray(outputs[0], np.float32).reshape(-1)
    ids = np.arange(probs.size)
    if params.classes is not None:
        ids = ids[np.isin(ids, np.asarray(params.classes))]
    k = min(params.top_k, ids.size)
    top = ids[np.argsort(-probs[ids], kind="stable")[:k]]
    empty = Detections.empty()
    return Detections(
        empty.xyxy,
        empty.confidence,
        empty.class_id,
        top_class=top.astype(np.int32),
        top_confidence=probs[top].astype(np.float32),
    )
