"""Tracked objects, zones and lines on one camera, turned into events: pure state, no I/O, no images.

Fed once per inferred frame with that frame's tracked detections (``step``), it returns what happened:

- an object's life: ``new`` (first frame with a track id), ``update`` (a material change: its label at
  once; a better snapshot or a move of ``update_move`` of the frame diagonal at most every
  ``update_interval_s``; zone changes have their own events), ``end`` (unseen for ``lost_s``, or the
  daemon stops);
- ``zone_enter`` / ``zone_exit`` once the new state held ``min_dwell_s`` (anti-flicker: a box jittering on
  the border changes nothing), ``loiter`` once an object stayed ``loiter_s`` in a zone;
- ``line_cross`` when an object's anchor moves from one side of a line to the other, at least
  ``hysteresis`` pixels past it each time, through the segment itself.

Times ``t`` are seconds on the camera's clock (a file's own timeline, or the monotonic clock of a live
camera); ``at`` is the wall-clock capture time (Unix seconds) that messages carry.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from edge_daemon.analytics.geometry import Line, Zone, anchors


@dataclass(frozen=True, slots=True)
class Seen:
    """One tracked detection in one frame (frame pixels)."""

    track_id: int
    class_id: int
    label: str
    confidence: float
    box: tuple[float, float, float, float]


@dataclass
class _Presence:
    """One object and one zone: the confirmed state, and since when the raw state disagrees with it."""

    inside: bool = False
    since: float | None = None  # first time the raw state differed from ``inside``
    entered: float = 0.0  # when the confirmed stay began (the raw state's start)
    loitered: bool = False


@dataclass
class TrackedObject:
    """Everything known about one tracked object; events carry a copy (:meth:`snapshot_state`)."""

    track_id: int
    first_t: float
    first_at: float
    last_t: float
    last_at: float
    last_seq: int
    box: tuple[float, float, float, float]
    confidence: float
    max_confidence: float
    class_id: int
    label: str
    frames: int = 1
    label_score: dict[int, float] = field(default_factory=dict)
    zones: list[str] = field(default_factory=list)  # zones it is in now (confirmed)
    entered: list[str] = field(default_factory=list)  # every zone it entered, in order
    best_score: float = -1.0
    best_changed: bool = False  # a better frame for its snapshot arrived in the last step
    reported_t: float = 0.0  # when its last new/update event went out
    reported_box: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    presence: dict[str, _Presence] = field(default_factory=dict)
    sides: dict[str, tuple[int, tuple[float, float]]] = field(default_factory=dict)  # line -> side, point


@dataclass(frozen=True, slots=True)
class Event:
    """What happened, for the publisher (:mod:`edge_daemon.publish.events` turns it into JSON)."""

    type: str  # new, update, end, zone_enter, zone_exit, line_cross, loiter
    t: float
    at: float
    seq: int  # the frame it was decided on
    object: TrackedObject  # a copy, frozen at the time of the event
    zone: str | None = None
    line: str | None = None
    direction: str | None = None  # line_cross: in or out
    dwell_s: float | None = None  # zone_exit, loiter: time inside
    reason: str | None = None  # end, zone_exit: lost or shutdown


def snapshot_score(confidence: float, box: tuple[float, float, float, float], frame_area: float) -> float:
    """How good a frame is for an object's picture: its confidence, scaled down for boxes smaller than
    1 % of the frame (a far-away object makes a poor picture)."""
    area = max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])
    return confidence * min(1.0, float(np.sqrt(area / max(frame_area * 0.01, 1.0))))


class Scene:
    """Objects, zones and lines of one camera. ``zones``/``lines`` in frame pixels."""

    def __init__(
        self,
        zones: Sequence[Zone],
        lines: Sequence[Line],
        lost_s: float,
        update_interval_s: float,
        update_move: float,
        names: dict[int, str],
    ) -> None:
        self.names = names
        self.zones = list(zones)
        self.lines = list(lines)
        self.lost_s = lost_s
        self.update_interval_s = update_interval_s
        self.update_move = update_move
        self.objects: dict[int, TrackedObject] = {}
        self._labels_seen: dict[str, set[str]] = {z.name: set(z.labels or ()) for z in self.zones}
        self._published: dict[tuple[str, str], int] = {}

    # ----------------------------------------------------------------------------------------- steps

    def step(
        self,
        t: float,
        at: float,
        seq: int,
        seen: Sequence[Seen],
        frame_wh: tuple[int, int],
    ) -> list[Event]:
        """Advance to time ``t`` with the objects seen in this frame (only those with a track id)."""
        events: list[Event] = []
        diag = float(np.hypot(*frame_wh))
        area = float(frame_wh[0] * frame_wh[1])
        for s in seen:
            obj = self.objects.get(s.track_id)
            if obj is None:
                obj = self.objects[s.track_id] = TrackedObject(
                    s.track_id, t, at, t, at, seq, s.box, s.confidence, s.confidence, s.class_id, s.label
                )
                obj.label_score[s.class_id] = s.confidence
                obj.best_score = snapshot_score(s.confidence, s.box, area)
                obj.best_changed = True
                obj.reported_t, obj.reported_box = t, s.box
                events.append(self._event("new", t, at, seq, obj))
                events += self._regions(obj, t, at, seq)
                continue
            label_before = obj.label
            self._observe(obj, s, t, at, seq, area)
            region_events = self._regions(obj, t, at, seq)
            events += region_events
            material = obj.label != label_before  # zone changes have their own events
            paced = t - obj.reported_t >= self.update_interval_s
            moved = _moved(obj.reported_box, obj.box) >= self.update_move * diag
            if material or (paced and (moved or obj.best_changed)):
                obj.reported_t, obj.reported_box = t, obj.box
                events.append(self._event("update", t, at, seq, obj))
        for obj in [o for o in self.objects.values() if t - o.last_t > self.lost_s]:
            events += self._end(obj, t, at, seq, "lost")
        return events

    def finish(self, t: float, at: float, seq: int) -> list[Event]:
        """End every object (the daemon stops): zone exits, then ``end`` with reason ``shutdown``."""
        events: list[Event] = []
        for obj in list(self.objects.values()):
            events += self._end(obj, t, at, seq, "shutdown")
        return events

    def occupancy_changes(self) -> list[tuple[str, str, int]]:
        """(zone, label, count) for every count that differs from the last call; label ``all`` is the
        zone's total. The first call lists every zone's ``all`` and its configured labels (as 0)."""
        now: dict[tuple[str, str], int] = {}
        for zone in self.zones:
            now[(zone.name, "all")] = 0
            for label in self._labels_seen[zone.name]:
                now[(zone.name, label)] = 0
        counts = {z.name: z for z in self.zones}
        for obj in self.objects.values():
            for name in obj.zones:
                if not counts[name].counts(obj.label):  # relabelled inside: leaves at the next step
                    continue
                now[(name, "all")] += 1
                now[(name, obj.label)] = now.get((name, obj.label), 0) + 1
                self._labels_seen[name].add(obj.label)
        changes = [(z, label, n) for (z, label), n in now.items() if self._published.get((z, label)) != n]
        self._published.update(((z, label), n) for z, label, n in changes)
        return changes

    # ---------------------------------------------------------------------------------------- inside

    def _observe(self, obj: TrackedObject, s: Seen, t: float, at: float, seq: int, area: float) -> None:
        obj.last_t, obj.last_at, obj.last_seq = t, at, seq
        obj.box, obj.confidence, obj.frames = s.box, s.confidence, obj.frames + 1
        obj.max_confidence = max(obj.max_confidence, s.confidence)
        obj.label_score[s.class_id] = obj.label_score.get(s.class_id, 0.0) + s.confidence
        best = max(obj.label_score.items(), key=lambda kv: kv[1])[0]
        if best != obj.class_id:
            obj.class_id, obj.label = best, self.names.get(best, str(best))
        score = snapshot_score(s.confidence, s.box, area)
        obj.best_changed = score > obj.best_score
        if obj.best_changed:
            obj.best_score = score

    def _regions(self, obj: TrackedObject, t: float, at: float, seq: int) -> list[Event]:
        events: list[Event] = []
        box = np.asarray([obj.box], np.float32)
        for zone in self.zones:
            raw = zone.counts(obj.label) and bool(zone.contains(anchors(box, zone.anchor))[0])
            p = obj.presence.setdefault(zone.name, _Presence())
            if raw == p.inside:
                p.since = None
            else:
                if p.since is None:
                    p.since = t
                if t - p.since >= zone.min_dwell_s:
                    events += self._flip(obj, zone.name, p, t, at, seq)
            staying = p.inside and p.since is None  # not on its way out
            if staying and not p.loitered and zone.loiter_s is not None and t - p.entered >= zone.loiter_s:
                p.loitered = True
                events.append(self._event("loiter", t, at, seq, obj, zone=zone.name, dwell_s=t - p.entered))
        for line in self.lines:
            if not line.counts(obj.label):
                continue
            point = anchors(box, line.anchor)
            d = float(line.distance(point)[0])
            if abs(d) < line.hysteresis:
                continue
            here = (float(point[0, 0]), float(point[0, 1]))
            side = 1 if d > 0 else -1
            was = obj.sides.get(line.name)
            obj.sides[line.name] = (side, here)
            if was is None or was[0] == side or not line.between(was[1], here):
                continue
            direction = "in" if side > 0 else "out"
            if line.directions in ("both", direction):
                events.append(self._event("line_cross", t, at, seq, obj, line=line.name, direction=direction))
        return events

    def _flip(
        self, obj: TrackedObject, zone: str, p: _Presence, t: float, at: float, seq: int
    ) -> list[Event]:
        assert p.since is not None
        since, p.since = p.since, None
        p.inside = not p.inside
        if p.inside:
            p.entered, p.loitered = since, False
            obj.zones.append(zone)
            if zone not in obj.entered:
                obj.entered.append(zone)
            return [self._event("zone_enter", t, at, seq, obj, zone=zone)]
        obj.zones.remove(zone)
        return [self._event("zone_exit", t, at, seq, obj, zone=zone, dwell_s=since - p.entered)]

    def _end(self, obj: TrackedObject, t: float, at: float, seq: int, reason: str) -> list[Event]:
        events: list[Event] = []
        for zone in list(obj.zones):
            p = obj.presence[zone]
            dwell = (p.since if p.since is not None else obj.last_t) - p.entered  # until it left
            p.inside, p.since = False, None
            obj.zones.remove(zone)
            events.append(self._event("zone_exit", t, at, seq, obj, zone=zone, dwell_s=dwell, reason=reason))
        events.append(self._event("end", t, at, seq, obj, reason=reason))
        del self.objects[obj.track_id]
        return events

    @staticmethod
    def _event(
        kind: str,
        t: float,
        at: float,
        seq: int,
        obj: TrackedObject,
        zone: str | None = None,
        line: str | None = None,
        direction: str | None = None,
        dwell_s: float | None = None,
        reason: str | None = None,
    ) -> Event:
        # The event's own copy: its lists frozen now; the scene's working state (scores, presences,
        # line sides) is not part of it.
        frozen = dataclasses.replace(
            obj, zones=list(obj.zones), entered=list(obj.entered), label_score={}, presence={}, sides={}
        )
        return Event(kind, t, at, seq, frozen, zone, line, direction, dwell_s, reason)


def _moved(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """How far the centre moved, in pixels."""
    return float(np.hypot((a[0] + a[2] - b[0] - b[2]) / 2, (a[1] + a[3] - b[1] - b[3]) / 2))


def seen_from(
    xyxy: npt.NDArray[np.float32],
    confidence: npt.NDArray[np.float32],
    class_id: npt.NDArray[np.int32],
    track_id: npt.NDArray[np.int32],
    names: dict[int, str],
) -> list[Seen]:
    """The tracked rows of one frame's detections (track id >= 0)."""
    rows = np.flatnonzero(track_id >= 0)
    return [
        Seen(
            int(track_id[i]),
            int(class_id[i]),
            names.get(int(class_id[i]), str(int(class_id[i]))),
            float(confidence[i]),
            (float(xyxy[i, 0]), float(xyxy[i, 1]), float(xyxy[i, 2]), float(xyxy[i, 3])),
        )
        for i in rows
    ]
