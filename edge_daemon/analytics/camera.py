"""One camera's analytics: tracker -> scene (zones, lines, lifecycle) -> snapshots -> what to publish.

Runs on the publish thread, once per inferred frame, after the task head decoded it. The zones and lines
are placed on the first frame (when the frame size is known); a pixel point off that frame stops the
daemon with a configuration error naming it.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_daemon.analytics.firehose import ChangeFilter
from edge_daemon.analytics.geometry import Line, Zone
from edge_daemon.analytics.scene import Event, Scene, seen_from
from edge_daemon.analytics.snapshots import SnapshotStore, render
from edge_daemon.analytics.tracker import Tracker
from edge_daemon.config.analytics import AnalyticsConfig, CameraAnalytics, PublishConfig
from edge_daemon.errors import ConfigError
from edge_daemon.types import Detections, Frame

_NOT_IN_TOPICS = re.compile(r"[/+#\x00]")


def topic_level(name: str) -> str:
    """A model label as one MQTT topic level: separators and wildcards become ``_``."""
    return _NOT_IN_TOPICS.sub("_", name)


@dataclass(frozen=True, slots=True)
class SnapshotRef:
    """Where an object's latest snapshot is: a file in the store (None if it could not be written) and the
    retained topic path (under ``<prefix>/<device>/``) that holds the latest snapshot of its label."""

    file: str | None
    topic: str
    seq: int
    captured_at: float
    confidence: float
    box: tuple[float, float, float, float]


@dataclass
class Outcome:
    """What one frame (or the shutdown) produced for the publisher."""

    detections: Detections  # with track ids when the camera tracks
    publish_detections: bool
    events: list[tuple[Event, SnapshotRef | None]] = field(default_factory=list)
    occupancy: list[tuple[str, str, int]] = field(default_factory=list)  # zone, label, count
    snapshots: list[tuple[str, bytes]] = field(default_factory=list)  # retained topic path, JPEG


@dataclass
class _Candidate:
    image: npt.NDArray[np.uint8]
    box: tuple[float, float, float, float]
    confidence: float
    seq: int
    at: float


class CameraAnalyzer:
    """Tracking, zones, lines, events and snapshots of one camera."""

    def __init__(
        self,
        camera: str,
        run: str,
        cfg: CameraAnalytics,
        analytics: AnalyticsConfig,
        publish: PublishConfig,
        names: dict[int, str],
        store: SnapshotStore | None,
        fps: float = 30.0,
    ) -> None:
        self.camera, self.run, self.cfg, self.names = camera, run, cfg, names
        self.tracker = Tracker(cfg.tracking, names, fps) if cfg.tracking.enabled else None
        self.filter = ChangeFilter(publish)
        self.store = store if analytics.snapshots.enabled else None
        self._snap_cfg = analytics.snapshots
        self._analytics = analytics
        self.scene: Scene | None = None
        self.events = 0
        self._candidates: dict[int, _Candidate] = {}
        self._refs: dict[int, SnapshotRef] = {}
        self._last: tuple[float, float, int] = (0.0, 0.0, 0)  # t, at, seq of the last frame
        self.frame_wh: tuple[int, int] | None = None

    def _place(self, width: int, height: int) -> Scene:
        problem = self.cfg.off_frame(width, height)
        if problem:
            raise ConfigError(f"camera {self.camera}: {problem}")
        return Scene(
            [Zone.from_config(z, width, height) for z in self.cfg.zones],
            [Line.from_config(ln, width, height) for ln in self.cfg.lines],
            lost_s=self.cfg.tracking.lost_s,
            update_interval_s=self._analytics.update_interval_s,
            update_move=self._analytics.update_move,
            names=self.names,
        )

    def process(self, frame: Frame, dets: Detections, t: float) -> Outcome:
        """One inferred frame at time ``t`` (seconds, the camera's clock)."""
        wh = self.frame_wh = (frame.width, frame.height)
        self._last = (t, frame.captured_at, frame.seq)
        if self.tracker is None:
            return Outcome(dets, self.filter.due(t, dets, wh))
        if self.scene is None:
            self.scene = self._place(*wh)
        ids = self.tracker.update(dets, t - frame.still_s)  # still stretches do not move objects
        dets = dataclasses.replace(dets, track_id=ids)
        seen = seen_from(dets.xyxy, dets.confidence, dets.class_id, ids, self.names)
        events = self.scene.step(t, frame.captured_at, frame.seq, seen, wh)
        self.tracker.forget([e.object.track_id for e in events if e.type == "end"])
        out = Outcome(dets, self.filter.due(t, dets, wh))
        if self.store is not None:
            for s in seen:
                obj = self.scene.objects.get(s.track_id)
                if obj is not None and obj.best_changed:
                    self._candidates[s.track_id] = _Candidate(
                        frame.image.copy(), s.box, s.confidence, frame.seq, frame.captured_at
                    )
        self._emit(events, out)
        return out

    def finish(self) -> Outcome:
        """At shutdown: every object ends (reason ``shutdown``), occupancy back to 0."""
        empty = Detections.empty()
        out = Outcome(empty, False)
        if self.scene is not None:
            t, at, seq = self._last
            self._emit(self.scene.finish(t, at, seq), out)
        return out

    def _emit(self, events: list[Event], out: Outcome) -> None:
        assert self.scene is not None
        for event in events:
            tid = event.object.track_id
            if event.type in ("new", "update", "end"):
                self._encode(tid, event.object.label, out)
            out.events.append((event, self._refs.get(tid)))
            self.events += 1
            if event.type == "end":
                self._candidates.pop(tid, None)
                self._refs.pop(tid, None)
        out.occupancy = self.scene.occupancy_changes()

    def _encode(self, tid: int, label: str, out: Outcome) -> None:
        """Draw and store the object's pending best frame, if any, and publish it as its label's latest."""
        cand = self._candidates.pop(tid, None)
        if cand is None or self.store is None:
            return
        caption = f"{label} #{tid} {cand.confidence:.2f}"
        jpeg = render(cand.image, cand.box, caption, self._snap_cfg.max_width, self._snap_cfg.quality)
        topic = f"{self.camera}/{topic_level(label)}/snapshot"
        file = self.store.save(self.camera, f"{self.run}-{tid}", jpeg)
        self._refs[tid] = SnapshotRef(file, topic, cand.seq, cand.at, cand.confidence, cand.box)
        out.snapshots.append((topic, jpeg))
