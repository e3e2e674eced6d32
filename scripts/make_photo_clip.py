"""Make ``.assets/photos.avi``: a second real-scene clip for the INT8 fidelity targets.

The demo clip (vtest.avi) is one fixed camera on pedestrians. This one is made from real photographs of
other scenes: Ultralytics' own ``bus.jpg`` and ``zidane.jpg`` (in the ultralytics wheel, the ``export``
extra) and street, sports, indoor and fruit photos from Debian's ``opencv-doc`` examples. Each photo is
shown for 60 frames with a slow pan and zoom (so consecutive frames differ, as a camera's would) at
768x576, 25 fps, MJPG. Deterministic; nothing is committed (the output is under the git-ignored .assets/).

    python scripts/make_photo_clip.py            # -> .assets/photos.avi
"""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".assets" / "photos.avi"
W, H, FPS, PER_PHOTO = 768, 576, 25, 60
DEB_PHOTOS = [
    "messi5.jpg",
    "basketball1.png",
    "basketball2.png",
    "leuvenA.jpg",
    "leuvenB.jpg",
    "home.jpg",
    "fruits.jpg",
]


def _must(image: np.ndarray | None, name: str) -> np.ndarray:
    if image is None:
        raise RuntimeError(f"cannot decode {name}")
    return image


def _ultralytics_photos() -> list[np.ndarray]:
    import ultralytics

    assets = Path(ultralytics.__file__).parent / "assets"
    return [
        _must(cv2.imread(str(assets / name), cv2.IMREAD_COLOR), name) for name in ("bus.jpg", "zidane.jpg")
    ]


def _deb_photos() -> list[np.ndarray]:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["apt-get", "download", "opencv-doc"]
        if subprocess.run(cmd, cwd=tmp, capture_output=True, check=False).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(cmd, cwd=tmp, check=True, capture_output=True)
        deb = next(Path(tmp).glob("*.deb"))
        data = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True
        ).stdout
    out = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        for name in DEB_PHOTOS:
            member = tf.extractfile(f"./usr/share/doc/opencv-doc/examples/data/{name}")
            if member is None:
                raise RuntimeError(f"{name} not in opencv-doc")
            out.append(_must(cv2.imdecode(np.frombuffer(member.read(), np.uint8), cv2.IMREAD_COLOR), name))
    return out


def _frames(photo: np.ndarray, index: int) -> list[np.ndarray]:
    """A slow zoom from the whole photo to 80% of it, drifting toward one corner."""
    h, w = photo.shape[:2]
    scale = min(W / w, H / h)
    canvas = np.full((H, W, 3), 114, np.uint8)
    resized = cv2.resize(photo, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    y0, x0 = (H - resized.shape[0]) // 2, (W - resized.shape[1]) // 2
    canvas[y0 : y0 + resized.shape[0], x0 : x0 + resized.shape[1]] = resized
    sx, sy = (1, 1) if index % 2 == 0 else (-1, 1)
    frames = []
    for t in np.linspace(0.0, 1.0, PER_PHOTO):
        zoom = 1.0 + 0.25 * t
        cw, ch = W / zoom, H / zoom
        cx = W / 2 + sx * t * (W - cw) / 2
        cy = H / 2 + sy * t * (H - ch) / 2
        m = np.array([[zoom, 0, W / 2 - zoom * cx], [0, zoom, H / 2 - zoom * cy]], np.float32)
        frames.append(cv2.warpAffine(canvas, m, (W, H), flags=cv2.INTER_LINEAR, borderValue=(114, 114, 114)))
    return frames


def main() -> int:
    photos = _ultralytics_photos() + _deb_photos()
    OUT.parent.mkdir(exist_ok=True)
    tmp = OUT.with_suffix(".tmp.avi")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"MJPG"), FPS, (W, H))
    count = 0
    for i, photo in enumerate(photos):
        for frame in _frames(photo, i):
            writer.write(frame)
            count += 1
    writer.release()
    tmp.replace(OUT)
    print(f"wrote {OUT} ({count} frames of {len(photos)} photos, {W}x{H})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
