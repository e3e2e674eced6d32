"""A snapshot's conversion of a 1080p NV12 picture to BGR at 1280 wide: the old path (``scale_nv12`` by area,
then the exact float ``nv12_to_bgr``, as snapshots did before 2026-12-05) against ``nv12_to_bgr_scaled``,
with one OpenCV thread as in the pipeline, alternating, 9 rounds of 20 conversions, medians.

    .venv/bin/python scripts/bench_snapshot_convert.py [.assets/vtest.avi]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_daemon.colour import DEFAULT, nv12_to_bgr, nv12_to_bgr_scaled

Image = npt.NDArray[np.uint8]


def scale_nv12(nv12: Image, max_width: int) -> Image:
    """The old first step, as it was in edge_daemon/colour.py: both planes scaled by area."""
    rows, width = nv12.shape[:2]
    height = rows * 2 // 3
    w = max(2, max_width // 2 * 2)
    h = max(2, round(height * w / width / 2) * 2)
    y = cv2.resize(nv12[:height], (w, h), interpolation=cv2.INTER_AREA)
    uv = nv12[height:].reshape(height // 2, width // 2, 2)
    small = cv2.resize(uv, (w // 2, h // 2), interpolation=cv2.INTER_AREA).reshape(h // 2, w)
    return np.ascontiguousarray(np.concatenate([y, small]))


def picture(clip: str) -> Image:
    """The clip's first frame at 1080p as NV12."""
    ok, bgr = cv2.VideoCapture(clip).read()
    assert ok, f"cannot read {clip}"
    h, w = 1080, 1920
    yuv = cv2.cvtColor(cv2.resize(bgr, (w, h)), cv2.COLOR_BGR2YUV_I420)
    u = yuv[h : h + h // 4].reshape(h // 2, w // 2)
    v = yuv[h + h // 4 :].reshape(h // 2, w // 2)
    return np.ascontiguousarray(np.concatenate([yuv[:h], np.stack([u, v], -1).reshape(h // 2, w)]))


def main() -> None:
    cv2.setNumThreads(1)  # as the pipeline sets it
    nv12 = picture(sys.argv[1] if len(sys.argv) > 1 else ".assets/vtest.avi")
    ways: dict[str, Callable[[], Image]] = {
        "old": lambda: nv12_to_bgr(scale_nv12(nv12, 1280), DEFAULT),
        "new": lambda: nv12_to_bgr_scaled(nv12, DEFAULT, 1280)[0],
    }
    ms: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(9):
        for name, convert in ways.items():
            t0 = time.perf_counter()
            for _ in range(20):
                convert()
            ms[name].append(round((time.perf_counter() - t0) / 20 * 1000, 2))
    old, new = float(np.median(ms["old"])), float(np.median(ms["new"]))
    print(f"old {old:.2f} ms, new {new:.2f} ms per picture: {old / new:.2f}x; per round {ms}")


if __name__ == "__main__":
    main()
