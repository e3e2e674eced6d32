"""Per-camera analytics (tracking, zones, lines, motion gating) and the global ``analytics`` and ``publish``
sections: snapshots, event pacing, and which per-frame detections go out.

Coordinates are in ``units``: ``px`` (pixels of the camera's frames; a point off the frame is refused when
the frame size is known: at load for cameras with a configured size, else on the first frame) or ``norm``
(fractions of the width and height, 0..1, checked here). Validation is pure: no I/O.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from edge_daemon.config.base import Strict, TopicName

Point = tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]
Label = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[^/+#\x00-\x1f]+$")]
Anchor = Literal["bottom_center", "center"]


def _cross(o: Point, a: Point, b: Point) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def segments_intersect(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    """True when the closed segments p1-p2 and q1-q2 share a point (touching counts)."""
    d1, d2 = _cross(q1, q2, p1), _cross(q1, q2, p2)
    d3, d4 = _cross(p1, p2, q1), _cross(p1, p2, q2)
    if ((d1 > 0 > d2) or (d1 < 0 < d2)) and ((d3 > 0 > d4) or (d3 < 0 < d4)):
        return True

    def on(a: Point, b: Point, c: Point, d: float) -> bool:
        return (
            d == 0
            and min(a[0], b[0]) <= c[0] <= max(a[0], b[0])
            and min(a[1], b[1]) <= c[1] <= max(a[1], b[1])
        )

    return on(q1, q2, p1, d1) or on(q1, q2, p2, d2) or on(p1, p2, q1, d3) or on(p1, p2, q2, d4)


def polygon_problem(points: list[Point]) -> str | None:
    """Why ``points`` is not a simple polygon (None when it is): too few points, no area, or two edges
    that cross or touch other than at their shared corner."""
    n = len(points)
    if n < 3:
        return "needs at least 3 points"
    area = sum(_cross((0.0, 0.0), points[i], points[(i + 1) % n]) for i in range(n)) / 2
    if abs(area) < 1e-9:
        return "has no area"
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):  # neighbours share a corner
                continue
            if segments_intersect(*edges[i], *edges[j]):
                return f"is self-intersecting (edges {i} and {j} cross)"
    return None


class _Region(Strict):
    name: TopicName
    units: Literal["px", "norm"] = Field("px", description="px: frame pixels; norm: fractions 0..1.")
    labels: list[Label] | None = Field(None, description="Labels that count here; None: every label.")
    anchor: Anchor = Field(
        "bottom_center", description="The point of a box that must be inside: its feet, or its centre."
    )

    def _check_units(self, points: list[Point]) -> None:
        if self.units == "norm":
            for x, y in points:
                if x > 1 or y > 1:
                    raise ValueError(
                        f"{self.name}: point ({x:g}, {y:g}) is off the frame (units: norm, 0..1)"
                    )


class ZoneConfig(_Region):
    """A polygon: objects entering, leaving and loitering in it, and how many are in it now."""

    polygon: list[Point] = Field(min_length=3, max_length=64)
    min_dwell_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="An object must be inside (or outside) this long before entering (or leaving) counts.",
    )
    loiter_s: float | None = Field(None, gt=0, le=86400, description="Inside this long: one loiter event.")

    @model_validator(mode="after")
    def _shape(self) -> ZoneConfig:
        self._check_units(self.polygon)
        problem = polygon_problem(self.polygon)
        if problem:
            raise ValueError(f"zone {self.name}: the polygon {problem}")
        return self


class LineConfig(_Region):
    """A segment from ``points[0]`` (A) to ``points[1]`` (B). Crossing from its left to its right, looking
    from A to B with y pointing down the image, is ``in``; the other way is ``out``."""

    points: tuple[Point, Point]
    directions: Literal["both", "in", "out"] = "both"
    hysteresis: float | None = Field(
        None,
        ge=0,
        le=1000,
        description="How far (in units) past the line the anchor must get for a crossing to count; "
        "None: 4 pixels, or 0.005 of the frame diagonal with units: norm.",
    )

    @model_validator(mode="after")
    def _shape(self) -> LineConfig:
        self._check_units(list(self.points))
        if self.points[0] == self.points[1]:
            raise ValueError(f"line {self.name}: its two points are the same")
        if self.units == "norm" and self.hysteresis is not None and self.hysteresis >= 1:
            raise ValueError(f"line {self.name}: hysteresis is a fraction of the frame with units: norm")
        return self


class TrackingConfig(Strict):
    """ByteTrack (Roboflow ``trackers``) on this camera's detections."""

    enabled: bool = True
    labels: list[Label] | None = Field(None, description="Track only these labels; None: every label.")
    activation_conf: float = Field(
        0.5, ge=0, le=1, description="Confidence a detection needs to start a track (>= high_conf)."
    )
    high_conf: float = Field(
        0.5, ge=0, le=1, description="ByteTrack's split between its two matching rounds."
    )
    match_iou: float = Field(0.1, gt=0, le=1, description="IoU a detection needs to continue a track.")
    min_frames: int = Field(2, ge=1, le=30, description="Frames in a row before a track gets an id.")
    lost_s: float = Field(1.5, gt=0, le=600, description="How long an unseen track is kept before it ends.")

    @model_validator(mode="after")
    def _thresholds(self) -> TrackingConfig:
        # ByteTrack starts tracks only from its first round's detections (confidence >= high_conf).
        if self.activation_conf < self.high_conf:
            raise ValueError(
                f"tracking.activation_conf ({self.activation_conf}) below high_conf ({self.high_conf}) would "
                "not start tracks below high_conf: ByteTrack starts them from its first round only"
            )
        return self


class MotionConfig(Strict):
    """Skip inference on frames without motion: frame differencing on a small grey image."""

    enabled: bool = False
    width: int = Field(160, ge=16, le=1280, description="Width of the grey image compared (pixels).")
    threshold: int = Field(20, ge=1, le=255, description="Grey-level change that counts as moving.")
    min_area: float = Field(0.002, gt=0, le=1, description="Fraction of the image that must move.")
    max_skip_s: float = Field(
        1.0,
        ge=0,
        le=3600,
        description="Infer at least this often even without motion (timers, stationary objects).",
    )
    mask: list[list[Point]] = Field(
        default_factory=list,
        description="Polygons (in units) where motion is ignored: trees, clocks, screens.",
    )
    units: Literal["px", "norm"] = "px"

    @model_validator(mode="after")
    def _masks(self) -> MotionConfig:
        for i, polygon in enumerate(self.mask):
            problem = polygon_problem(polygon)
            if problem:
                raise ValueError(f"motion mask {i}: the polygon {problem}")
            if self.units == "norm" and any(x > 1 or y > 1 for x, y in polygon):
                raise ValueError(f"motion mask {i}: a point is off the frame (units: norm, 0..1)")
        return self


class CameraAnalytics(Strict):
    """The analytics fields every camera section has."""

    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    zones: list[ZoneConfig] = Field(default_factory=list, max_length=64)
    lines: list[LineConfig] = Field(default_factory=list, max_length=64)
    motion: MotionConfig = Field(default_factory=MotionConfig)

    @model_validator(mode="after")
    def _regions(self) -> CameraAnalytics:
        for kind, items in (("zone", self.zones), ("line", self.lines)):
            names = [r.name for r in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind} names must be unique per camera, repeated: {', '.join(dupes)}")
        if self.motion.enabled and self.tracking.enabled and self.motion.max_skip_s >= self.tracking.lost_s:
            raise ValueError(
                f"motion.max_skip_s ({self.motion.max_skip_s}) must be below tracking.lost_s "
                f"({self.tracking.lost_s}): a still object is seen only every max_skip_s under motion gating"
            )
        if (self.zones or self.lines) and not self.tracking.enabled:
            raise ValueError("zones and lines follow tracked objects: they need tracking.enabled: true")
        return self

    def off_frame(self, width: int, height: int) -> str | None:
        """The first zone, line or motion mask with a pixel point off a ``width`` x ``height`` frame."""
        regions: list[tuple[str, str, list[Point]]] = [
            *(("zone", z.units, z.polygon) for z in self.zones),
            *(("line", ln.units, list(ln.points)) for ln in self.lines),
        ]
        names = [z.name for z in self.zones] + [ln.name for ln in self.lines]
        regions += [("motion mask", self.motion.units, m) for m in self.motion.mask]
        names += [str(i) for i in range(len(self.motion.mask))]
        for (kind, units, points), name in zip(regions, names, strict=True):
            if units != "px":
                continue
            for x, y in points:
                if x > width or y > height:
                    return f"{kind} {name}: point ({x:g}, {y:g}) is off the {width}x{height} frame"
        return None


class SnapshotConfig(Strict):
    """The best frame of each tracked object, its box drawn: JPEG on MQTT (retained) and on disk."""

    enabled: bool = True
    dir: Path = Path(".cache/edge-daemon/snapshots")
    quality: int = Field(85, ge=10, le=100, description="JPEG quality.")
    max_width: int = Field(1280, ge=64, le=8192, description="Larger frames are scaled down to this width.")
    min_gain: float = Field(
        0.1,
        ge=0,
        le=10,
        description="A better frame replaces the one kept for an object's snapshot only when it scores this "
        "much more (0.1: 10 %): each kept frame is a copy (from the GPU, a download) and a picture to draw.",
    )
    max_bytes: int = Field(
        512 * 1024 * 1024, ge=1024 * 1024, description="Disk bound; oldest files go first."
    )
    max_age_s: float = Field(7 * 86400, gt=0, description="Older files are deleted (counted).")


class AnalyticsConfig(Strict):
    """How often a tracked object's ``update`` event may be sent, and snapshots."""

    update_interval_s: float = Field(
        2.0, ge=0, le=3600, description="Least time between two update events of one object."
    )
    update_move: float = Field(
        0.1, gt=0, le=2, description="Movement (fraction of the frame diagonal) that is a material change."
    )
    snapshots: SnapshotConfig = Field(default_factory=SnapshotConfig)


class OnChangeConfig(Strict):
    move: float = Field(
        0.02,
        gt=0,
        le=2,
        description="A box that moved this much (fraction of the frame diagonal) is a change.",
    )
    heartbeat_s: float = Field(10.0, gt=0, le=3600, description="Publish at least this often even unchanged.")


class PublishConfig(Strict):
    """Which per-frame detection messages go out (events, occupancy and snapshots always do).

    all: one message per inferred frame. on_change: only when the set of objects changed (an object came,
    went or changed label), a box moved by ``on_change.move``, or ``on_change.heartbeat_s`` passed.
    off: none (events only). See docs/analytics.md for the measurement behind the default."""

    detections: Literal["all", "on_change", "off"] = "on_change"
    on_change: OnChangeConfig = Field(default_factory=OnChangeConfig)
