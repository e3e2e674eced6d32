"""Multi-object tracking through Roboflow's ``trackers`` (ByteTrack), imported when a camera tracks.

Why ByteTrack from ``trackers``: it is the tracker Roboflow keeps (supervision's own ByteTrack moved there),
Apache-2.0, on PyPI, with a time-based lost-track budget (frames dropped by the drop policy or skipped by
motion gating do not age a track by a frame each) and one ``update(detections, timestamp)`` call. It pulls
in supervision (its detections type), scipy (the assignment), opencv-python and rich; no torch. It matches
boxes by IoU alone, whatever their class: an object whose label flickers keeps its id, and
:class:`~edge_daemon.analytics.scene.Scene` gives it the label seen with the most confidence.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from edge_daemon.config.analytics import TrackingConfig
from edge_daemon.errors import ConfigError
from edge_daemon.types import Detections


class Tracker:
    """Track ids for one camera's detections: :meth:`update` once per inferred frame, in order."""

    def __init__(self, cfg: TrackingConfig, names: dict[int, str], fps: float = 30.0) -> None:
        try:
            import supervision as sv
            from trackers import ByteTrackTracker
        except ImportError as exc:
            raise ConfigError(
                f"tracking needs the 'analytics' extra (pip install 'edge-daemon[analytics]'): {exc}; "
                "or set tracking.enabled: false on every camera"
            ) from None
        self._sv: Any = sv
        self._tracker: Any = ByteTrackTracker(
            lost_track_buffer=max(1, round(cfg.lost_s * 30)),  # in 30 FPS frames: lost_s seconds
            frame_rate=fps,
            track_activation_threshold=cfg.activation_conf,
            minimum_consecutive_frames=cfg.min_frames,
            minimum_iou_threshold=cfg.match_iou,
            high_conf_det_threshold=cfg.high_conf,
        )
        wanted = set(cfg.labels) if cfg.labels is not None else None
        self._classes: npt.NDArray[np.int32] | None = (
            None if wanted is None else np.asarray([c for c, n in names.items() if n in wanted], np.int32)
        )

    def forget(self, track_ids: list[int]) -> None:
        """Drop these tracks (the scene ended them): their ids never come back for another object. The
        scene's clock decides when an object is lost; the tracker's may run slower (motion gating)."""
        if not track_ids:
            return
        gone = set(track_ids)
        tracks = getattr(self._tracker, "tracks", None)
        if isinstance(tracks, list):
            self._tracker.tracks = [t for t in tracks if getattr(t, "tracker_id", -1) not in gone]

    def update(self, detections: Detections, t: float) -> npt.NDArray[np.int32]:
        """int32 (N,): each detection's track id, -1 for those without one (not yet confirmed, a label not
        tracked, or left unmatched). ``t``: the frame's time in seconds on the camera's clock."""
        n = len(detections)
        ids = np.full(n, -1, np.int32)
        rows = np.arange(n)
        if self._classes is not None:
            rows = rows[np.isin(detections.class_id, self._classes)]
        picked = self._sv.Detections(
            xyxy=detections.xyxy[rows].astype(np.float32),
            confidence=detections.confidence[rows],
            class_id=detections.class_id[rows],
            data={"row": rows},
        )
        out = self._tracker.update(picked, timestamp=t)
        if len(out):
            ids[np.asarray(out.data["row"], np.int64)] = np.asarray(out.tracker_id, np.int32)
        return ids
