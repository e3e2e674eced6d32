"""Make the multi-camera bench's streams from the demo clip: 1080p at 30 FPS, H.264 and H.265.

The demo clip (vtest.avi, 768x576 MPEG-4) is scaled to 1920x1080 and encoded with FFmpeg's libx264 and
libx265 through PyAV (the FFmpeg libraries; no ffmpeg program needed), one keyframe a second and no
B-frames, as a camera sends them. The colour matrix is declared (BT.709, limited range) so decoders and
the pre-processing kernel read the same one.

    python scripts/make_stream_clips.py [--frames 300] [--out .assets]
"""

from __future__ import annotations

import argparse
from fractions import Fraction
from pathlib import Path

import av


def make(src: Path, dst: Path, codec: str, frames: int, crf: int) -> None:
    tmp = dst.with_name(dst.name + ".part")
    with av.open(str(src)) as inp, av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream(codec, rate=30)
        stream.codec_context.time_base = Fraction(1, 30)
        stream.width, stream.height, stream.pix_fmt = 1920, 1080, "yuv420p"
        params = "keyint=30:min-keyint=30:bframes=0:scenecut=0"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        stream.options["x264-params" if codec == "libx264" else "x265-params"] = params
        if codec == "libx265":
            stream.options["x265-params"] += ":log-level=error"
        stream.codec_context.colorspace = 1  # AVCOL_SPC_BT709
        stream.codec_context.color_range = 1  # AVCOL_RANGE_MPEG (limited)
        n = 0
        while n < frames:
            inp.seek(0)
            for frame in inp.decode(video=0):
                scaled = frame.reformat(
                    1920, 1080, "yuv420p", dst_colorspace="ITU709", interpolation="BICUBIC"
                )
                scaled.pts, scaled.time_base = n, Fraction(1, 30)
                for packet in stream.encode(scaled):
                    out.mux(packet)
                n += 1
                if n >= frames:
                    break
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(dst)
    print(f"{dst}: {frames} frames, {dst.stat().st_size / 1e6:.1f} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path(".assets/vtest.avi"))
    ap.add_argument("--out", type=Path, default=Path(".assets"))
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--crf", type=int, default=26)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    make(args.src, args.out / "streams-1080p-h264.mp4", "libx264", args.frames, args.crf)
    make(args.src, args.out / "streams-1080p-h265.mp4", "libx265", args.frames, args.crf + 2)


if __name__ == "__main__":
    main()
