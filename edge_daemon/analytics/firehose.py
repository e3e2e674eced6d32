"""Which per-frame detection messages go out: ``all``, ``on_change`` or ``off`` (``publish.detections``).

``on_change`` keeps a camera's message stream meaningful at a fraction of the rate: a frame is published
when the objects in it changed (by track id where tracked, else by label counts), when a box moved by
``move`` of the frame diagonal since the last published frame, or when ``heartbeat_s`` passed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from edge_daemon.config.analytics import PublishConfig
from edge_daemon.types import Detections


class ChangeFilter:
    """One per camera; :meth:`due` is asked once per inferred frame."""

    def __init__(self, cfg: PublishConfig) -> None:
        self.mode = cfg.detections
        self.move = cfg.on_change.move
        self.heartbeat_s = cfg.on_change.heartbeat_s
        self.suppressed = 0
        self._last_t = float("-inf")
        self._keys: tuple[object, ...] | None = None
        self._centres: dict[object, tuple[float, float]] = {}

    def due(self, t: float, dets: Detections, frame_wh: tuple[int, int]) -> bool:
        if self.mode != "on_change":
            return self.mode == "all"
        keys, centres = _identities(dets)
        changed = keys != self._keys or t - self._last_t >= self.heartbeat_s
        if not changed:
            limit = self.move * float(np.hypot(*frame_wh))
            changed = any(
                np.hypot(c[0] - self._centres[k][0], c[1] - self._centres[k][1]) >= limit
                for k, c in centres.items()
                if isinstance(k, tuple) and k[0] == "t"  # untracked rows have no identity to follow
            )
        if changed:
            self._keys, self._centres, self._last_t = keys, centres, t
        else:
            self.suppressed += 1
        return changed


def _identities(dets: Detections) -> tuple[tuple[object, ...], dict[object, tuple[float, float]]]:
    """The frame's objects as sorted keys (track id, or label and rank for untracked rows, so that
    untracked objects compare by count per label) and each key's box centre."""
    ids: npt.NDArray[np.int32] = (
        dets.track_id if dets.track_id is not None else np.full(len(dets), -1, np.int32)
    )
    cx = ((dets.xyxy[:, 0] + dets.xyxy[:, 2]) / 2).tolist()
    cy = ((dets.xyxy[:, 1] + dets.xyxy[:, 3]) / 2).tolist()
    rank: dict[int, int] = {}
    centres: dict[object, tuple[float, float]] = {}
    for i, (tid, cls) in enumerate(zip(ids.tolist(), dets.class_id.tolist(), strict=True)):
        if tid >= 0:
            key: object = ("t", tid)
        else:
            rank[cls] = rank.get(cls, -1) + 1
            key = ("c", cls, rank[cls])
        centres[key] = (cx[i], cy[i])
    return tuple(sorted(centres, key=repr)), centres
