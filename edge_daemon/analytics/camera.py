"""One camera's analytics: tracker -> scene (zones, lines, lifecycle) -> snapshots -> what to publish.

Runs on the publish thread, once per inferred frame, after the task head decoded it. The zones and lines
are placed on the first frame (when the frame size is known); a pixel point off that frame stops the
daemon with a configuration error naming it.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field

import numpy as np

from edge_daemon.analytics.drawer import Job, SnapshotDrawer
from edge_daemon.analytics.firehose import ChangeFilter
from edge_daemon.analytics.geometry import Line, Zone
from edge_daemon.analytics.scene import Event, Scene, seen_from
from edge_daemon.analytics.snapshots import SnapshotStore
from edge_daemon.analytics.tracker import Tracker
from edge_daemon.config.analytics import AnalyticsConfig, CameraAnalytics, PublishConfig
from edge_daemon.errors import ConfigError
from edge_daemon.types import Detections, Frame

log = logging.getLogger(__name__)

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
    image: Frame  # a copy of the frame's picture: BGR, or NV12 on the host, converted only if it is drawn
    box: tuple[float, float, float, float]
    confidence: float
    seq: int
    at: float


def _keep(frame: Frame) -> Frame:
    """A copy of ``frame``'s picture that outlives its buffer: BGR copied, NV12 (1.5 bytes a pixel) brought
    to the host; the conversion to BGR waits until a snapshot is drawn (most candidates never are)."""
    if frame.image is not None or frame.nv12 is None:
        return dataclasses.replace(frame, image=frame.bgr().copy(), buffer=None, nv12=None)
    pic = frame.nv12
    host = pic.to_host() if pic.device is not None else np.array(pic.host)
    return dataclasses.replace(frame, buffer=None, nv12=dataclasses.replace(pic, host=host, device=None))


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
        snapshots: SnapshotDrawer | SnapshotStore | None,
        fps: float = 30.0,
    ) -> None:
        self.camera, self.run, self.cfg, self.names = camera, run, cfg, names
        _check_labels(camera, cfg, names)
        self.tracker = self._tracker(fps) if cfg.tracking.enabled else None
        self.filter = ChangeFilter(publish)
        snap = analytics.snapshots
        if isinstance(snapshots, SnapshotStore):  # a drawer of its own (tests; the daemon shares one)
            snapshots = SnapshotDrawer(snapshots, snap.max_width, snap.quality)
        self.drawer = snapshots if snap.enabled else None
        self._analytics = analytics
        self.scene: Scene | None = None
        self.events = 0
        self._candidates: dict[int, _Candidate] = {}
        self._kept: dict[int, float] = {}  # the score of the frame last kept for each object's snapshot
        self._refs: dict[int, SnapshotRef] = {}
        self._last: tuple[float, float, int] = (0.0, 0.0, 0)  # t, at, seq of the last frame
        self.frame_wh: tuple[int, int] | None = None

    def _tracker(self, fps: float) -> Tracker | None:
        """ByteTrack; without its package a camera with zones or lines cannot run (configuration error),
        one without runs untracked (said once)."""
        try:
            return Tracker(self.cfg.tracking, self.names, fps)
        except ConfigError as exc:
            if self.cfg.zones or self.cfg.lines:
                raise ConfigError(f"camera {self.camera}: zones and lines need tracking: {exc}") from None
            log.warning("camera %s: tracking off: %s", self.camera, exc)
            return None

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

    def _replace_regions(self, width: int, height: int) -> None:
        """The camera came back at another size: zones and lines placed anew (norm units follow the frame;
        pixel ones off the new frame are said once and kept as they are)."""
        assert self.scene is not None
        problem = self.cfg.off_frame(width, height)
        if problem:
            log.error("camera %s now sends %dx%d frames: %s", self.camera, width, height, problem)
        self.scene.zones = [Zone.from_config(z, width, height) for z in self.cfg.zones]
        self.scene.lines = [Line.from_config(ln, width, height) for ln in self.cfg.lines]

    def process(self, frame: Frame, dets: Detections, t: float) -> Outcome:
        """One inferred frame at time ``t`` (seconds, the camera's clock)."""
        wh = (frame.width, frame.height)
        if self.scene is not None and wh != self.frame_wh:
            self._replace_regions(*wh)
        self.frame_wh = wh
        self._last = (t, frame.captured_at, frame.seq)
        if self.tracker is None:
            return Outcome(dets, self.filter.due(t, dets, wh))
        if self.scene is None:
            self.scene = self._place(*wh)
        track_t = t - frame.still_s  # still stretches (motion gating) move nothing and age nothing
        ids = self.tracker.update(dets, track_t)
        dets = dataclasses.replace(dets, track_id=ids)
        seen = seen_from(dets.xyxy, dets.confidence, dets.class_id, ids, self.names)
        events = self.scene.step(t, frame.captured_at, frame.seq, seen, wh)
        out = Outcome(dets, self.filter.due(t, dets, wh))
        if self.drawer is not None:
            copy: Frame | None = None  # one copy of the frame for all who improved on it
            gain = 1.0 + self._analytics.snapshots.min_gain
            for s in seen:
                obj = self.scene.objects.get(s.track_id)
                if obj is None or not obj.best_changed:
                    continue
                kept = self._kept.get(s.track_id)
                if kept is not None and obj.best_score < kept * gain:
                    continue  # better, but not by enough to copy the frame and draw it again
                copy = _keep(frame) if copy is None else copy
                self._candidates[s.track_id] = _Candidate(
                    copy, s.box, s.confidence, frame.seq, frame.captured_at
                )
                self._kept[s.track_id] = obj.best_score
        self._emit(events, out)
        return out

    def close(self) -> None:
        """Stop the snapshot drawer (after :meth:`finish`)."""
        if self.drawer is not None:
            self.drawer.close()

    def idle(self, t: float, at: float) -> Outcome:
        """No frame for a while (a live camera away): time passes, objects unseen for ``lost_s`` end and
        the zones empty. ``t`` on the camera's clock (monotonic for live cameras)."""
        out = Outcome(Detections.empty(), False)
        if self.scene is not None and self.frame_wh is not None and self.scene.objects:
            seq = self._last[2]
            self._emit(self.scene.step(t, at, seq, [], self.frame_wh), out)
        return out

    @property
    def errors(self) -> int:
        """Snapshots of this camera that could not be drawn or encoded."""
        return self.drawer.errors.get(self.camera, 0) if self.drawer is not None else 0

    def finish(self) -> Outcome:
        """At shutdown: every object ends (reason ``shutdown``), occupancy back to 0; every snapshot
        still being drawn is waited for and published."""
        out = Outcome(Detections.empty(), False)
        if self.scene is not None:
            t, at, seq = self._last
            self._emit(self.scene.finish(t, at, seq), out, flush=True)
        return out

    def _emit(self, events: list[Event], out: Outcome, flush: bool = False) -> None:
        assert self.scene is not None
        ended = []
        for event in events:
            tid = event.object.track_id
            if event.type in ("new", "update", "end"):
                self._encode(tid, event.object.label, out)
            out.events.append((event, self._refs.get(tid)))
            self.events += 1
            if event.type == "end":
                ended.append(tid)
                self._candidates.pop(tid, None)
                self._kept.pop(tid, None)
                self._refs.pop(tid, None)
        if self.tracker is not None and ended:
            self.tracker.forget(ended)
        out.occupancy = self.scene.occupancy_changes()
        if self.drawer is not None:
            if flush:
                self.drawer.flush()
            out.snapshots.extend(self.drawer.take(self.camera))

    def _encode(self, tid: int, label: str, out: Outcome) -> None:
        """Hand the object's pending best frame, if any, to the drawer (its own thread draws, stores and
        finishes it); the event names the file it will be. The JPEG is published as the label's latest
        with a later frame of this camera."""
        cand = self._candidates.pop(tid, None)
        if cand is None or self.drawer is None:
            return
        picture = cand.image.image if cand.image.image is not None else cand.image.nv12
        assert picture is not None
        caption = f"{label} #{tid} {cand.confidence:.2f}"
        topic = f"{self.camera}/{topic_level(label)}/snapshot"
        job = Job(self.camera, f"{self.run}-{tid}", topic, picture, cand.box, caption)
        file = self.drawer.submit(job)
        self._refs[tid] = SnapshotRef(file, topic, cand.seq, cand.at, cand.confidence, cand.box)


def _check_labels(camera: str, cfg: CameraAnalytics, names: dict[int, str]) -> None:
    """A label the model does not have would silently track or count nothing: a configuration error."""
    known = set(names.values())
    wanted = [("tracking", cfg.tracking.labels)]
    wanted += [(f"zone {z.name}", z.labels) for z in cfg.zones]
    wanted += [(f"line {ln.name}", ln.labels) for ln in cfg.lines]
    for where, labels in wanted:
        unknown = sorted(set(labels or ()) - known)
        if unknown:
            sample = ", ".join(sorted(known)[:12]) + (", ..." if len(known) > 12 else "")
            raise ConfigError(
                f"camera {camera}: {where}: the model has no label {', '.join(unknown)} (it has: {sample})"
            )
