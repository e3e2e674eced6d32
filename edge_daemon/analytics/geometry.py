"""Zones and lines in frame pixels: which anchors are inside a polygon, and which side of a line they are on.

Built once per camera from the config (on its first frame, when the frame size is known); nothing here
allocates per frame beyond the small arrays of the objects in view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from edge_daemon.config.analytics import LineConfig, Point, ZoneConfig, segments_intersect

Boxes = npt.NDArray[np.float32]  # (N, 4) x1, y1, x2, y2 in frame pixels


def anchors(xyxy: Boxes, anchor: str) -> npt.NDArray[np.float64]:
    """(N, 2) points of the boxes: the middle of the bottom edge (``bottom_center``) or the centre."""
    x = (xyxy[:, 0] + xyxy[:, 2]) / 2.0
    y = xyxy[:, 3] if anchor == "bottom_center" else (xyxy[:, 1] + xyxy[:, 3]) / 2.0
    return np.stack([x, y], axis=1).astype(np.float64)


def _scale(points: list[Point] | tuple[Point, ...], units: str, width: int, height: int) -> list[Point]:
    if units == "norm":
        return [(x * width, y * height) for x, y in points]
    return [(float(x), float(y)) for x, y in points]


@dataclass(frozen=True, slots=True)
class Zone:
    """A zone in pixels. ``labels`` None: every label counts."""

    name: str
    polygon: npt.NDArray[np.float64]  # (P, 2)
    labels: frozenset[str] | None
    anchor: str
    min_dwell_s: float
    loiter_s: float | None

    @classmethod
    def from_config(cls, cfg: ZoneConfig, width: int, height: int) -> Zone:
        pts = np.asarray(_scale(cfg.polygon, cfg.units, width, height), np.float64)
        labels = frozenset(cfg.labels) if cfg.labels is not None else None
        return cls(cfg.name, pts, labels, cfg.anchor, cfg.min_dwell_s, cfg.loiter_s)

    def counts(self, label: str) -> bool:
        return self.labels is None or label in self.labels

    def contains(self, points: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """Which (N, 2) points lie inside (even-odd rule; a point on an edge may go either way)."""
        x, y = points[:, 0:1], points[:, 1:2]
        px, py = self.polygon[:, 0], self.polygon[:, 1]
        qx, qy = np.roll(px, -1), np.roll(py, -1)
        crosses = (py > y) != (qy > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = px + (y - py) * (qx - px) / (qy - py)
        inside: npt.NDArray[np.bool_] = (np.count_nonzero(crosses & (x < at), axis=1) % 2) == 1
        return inside


@dataclass(frozen=True, slots=True)
class Line:
    """A counting line in pixels from ``a`` to ``b``; ``hysteresis`` in pixels."""

    name: str
    a: Point
    b: Point
    labels: frozenset[str] | None
    anchor: str
    directions: str
    hysteresis: float

    @classmethod
    def from_config(cls, cfg: LineConfig, width: int, height: int) -> Line:
        a, b = _scale(cfg.points, cfg.units, width, height)
        diag = float(np.hypot(width, height))
        if cfg.hysteresis is None:
            hysteresis = 4.0 if cfg.units == "px" else 0.005 * diag
        else:
            hysteresis = cfg.hysteresis * (diag if cfg.units == "norm" else 1.0)
        labels = frozenset(cfg.labels) if cfg.labels is not None else None
        return cls(cfg.name, a, b, labels, cfg.anchor, cfg.directions, hysteresis)

    def counts(self, label: str) -> bool:
        return self.labels is None or label in self.labels

    def distance(self, points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Signed distance in pixels of (N, 2) points to the line through a and b: positive on its right
        looking from a to b (y down the image), negative on its left."""
        (ax, ay), (bx, by) = self.a, self.b
        cross = (bx - ax) * (points[:, 1] - ay) - (by - ay) * (points[:, 0] - ax)
        d: npt.NDArray[np.float64] = cross / float(np.hypot(bx - ax, by - ay))
        return d

    def between(self, p: Point, q: Point) -> bool:
        """Whether the path p -> q crosses the segment itself (not the line beyond its ends)."""
        return segments_intersect(p, q, self.a, self.b)
