"""Make the multi-camera bench's streams from the demo clip: 1080p at 30 FPS, H.264 and H.265.

The demo clip (vtest.avi, 768x576 MPEG-4) is scaled to 1920x1080 and encoded with FFmpeg's libx264 and
libx265 through PyAV (edge_daemon/tools/clips.py), one keyframe a second and no B-frames, as a camera
sends them, BT.709 limited range declared.

    python scripts/make_stream_clips.py [--frames 300] [--out .assets]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_daemon.tools.clips import make_clip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path(".assets/vtest.avi"))
    ap.add_argument("--out", type=Path, default=Path(".assets"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--crf", type=int, default=26)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for codec in ("h264", "h265"):
        dst = make_clip(args.src, args.out / f"streams-1080p-{codec}.mp4", codec, args.frames, crf=args.crf)
        print(f"{dst}: {args.frames} frames, {dst.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
