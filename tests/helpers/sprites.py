"""A synthetic video whose truth is known: two people cut from Ultralytics' ``bus.jpg`` walk along fixed
paths over a plain background, across a line and through a zone (the analytics end-to-end test).

640x480 at 10 fps, MJPG in AVI. Paths are piecewise linear in the bottom centre of each sprite (the
analytics' default anchor); a sprite is drawn only in its visible frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

W, H, FPS, FRAMES = 640, 480, 10, 112
# Two people in bus.jpg (810x1080), found by YOLO-World v8s FP32 at 0.92 and 0.88.
PEOPLE = {"a": (49, 395, 246, 902), "b": (669, 394, 810, 874)}
SPRITE_H = 200


@dataclass(frozen=True)
class Walk:
    """(frame, x, y) key points of the sprite's bottom centre; visible from the first to the last one."""

    person: str
    keys: tuple[tuple[int, float, float], ...]

    def at(self, frame: int) -> tuple[float, float] | None:
        if not self.keys[0][0] <= frame <= self.keys[-1][0]:
            return None
        for (f0, x0, y0), (f1, x1, y1) in zip(self.keys, self.keys[1:], strict=False):
            if f0 <= frame <= f1:
                k = (frame - f0) / max(1, f1 - f0)
                return x0 + k * (x1 - x0), y0 + k * (y1 - y0)
        return None


# A walks right into the zone (x >= 420 at the bottom), stays 3 s, walks back left across the line, vanishes.
# B walks right to left higher up, across the line only, and vanishes later.
WALKS = (
    Walk("a", ((0, 80, 440), (30, 500, 440), (60, 500, 440), (75, 275, 440))),
    Walk("b", ((35, 600, 220), (95, 60, 220))),
)
ZONE = [(420, 300), (640, 300), (640, 480), (420, 480)]
LINE = [(320, 60), (320, 470)]  # looking from its top point down the image, x < 320 is its right: "in"


def _sprites(bus: Path) -> dict[str, npt.NDArray[np.uint8]]:
    image = cv2.imread(str(bus), cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(bus)
    out = {}
    for name, (x1, y1, x2, y2) in PEOPLE.items():
        crop = image[y1:y2, x1:x2]
        scale = SPRITE_H / crop.shape[0]
        out[name] = np.asarray(
            cv2.resize(crop, (round(crop.shape[1] * scale), SPRITE_H), interpolation=cv2.INTER_AREA), np.uint8
        )
    return out


def make_video(path: Path, bus: Path) -> Path:
    """Write the clip (once; reused when present)."""
    if path.is_file():
        return path
    sprites = _sprites(bus)
    rng = np.random.default_rng(1)
    background = np.full((H, W, 3), 118, np.uint8)
    noise = rng.integers(-6, 7, (H, W, 1))
    background = np.clip(background.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    tmp = path.with_suffix(".tmp.avi")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (W, H))
    if not writer.isOpened():
        raise RuntimeError("cannot open an MJPG writer")
    for frame in range(FRAMES):
        canvas = background.copy()
        for walk in WALKS:
            pos = walk.at(frame)
            if pos is None:
                continue
            sprite = sprites[walk.person]
            sh, sw = sprite.shape[:2]
            x0, y0 = round(pos[0] - sw / 2), round(pos[1] - sh)
            canvas[y0 : y0 + sh, x0 : x0 + sw] = sprite
        writer.write(canvas)
    writer.release()
    tmp.rename(path)
    return path
