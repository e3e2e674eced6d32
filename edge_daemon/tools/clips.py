"""Camera-like video clips made from a real one: H.264 or H.265 in MP4, through PyAV (FFmpeg's libraries).

Used by ``edge-daemon bench --cameras`` and the stream tests to make their streams from the demo clip at
setup (no ffmpeg program is needed). The clips are as cameras send them: one keyframe a second, no
B-frames, and the colour matrix declared (BT.709 or BT.601, limited range), so every decoder reads the
same one. Needs PyAV (``av``; installed with the analytics and dev extras).
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

ENCODERS = {"h264": "libx264", "h265": "libx265"}
_SPACES = {"bt709": ("ITU709", 1), "bt601": ("ITU601", 6)}  # PyAV colourspace name, AVColorSpace number


def make_clip(
    src: Path,
    dst: Path,
    codec: str = "h264",
    frames: int = 300,
    size: tuple[int, int] = (1920, 1080),
    fps: int = 30,
    crf: int = 26,
    matrix: str = "bt709",
) -> Path:
    """Encode ``frames`` frames of ``src`` (looped if shorter), scaled to ``size``, into ``dst``
    (written next to it first, then renamed: an interrupted run leaves no half clip)."""
    import av

    if codec not in ENCODERS:
        raise ValueError(f"codec must be one of {sorted(ENCODERS)}")
    space, avcol = _SPACES[matrix]
    tmp = dst.with_name(dst.name + ".part")
    with av.open(str(src)) as inp, av.open(str(tmp), "w", format="mp4") as out:
        stream = out.add_stream(ENCODERS[codec], rate=fps)
        stream.codec_context.time_base = Fraction(1, fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        params = f"keyint={fps}:min-keyint={fps}:bframes=0:scenecut=0"
        tag = "bt709" if matrix == "bt709" else "smpte170m"
        vui = f"colorprim={tag}:transfer={tag}:colormatrix={tag}"
        if codec == "h264":
            stream.options = {"crf": str(crf), "preset": "veryfast", "x264-params": f"{params}:{vui}"}
        else:
            stream.options = {"crf": str(crf + 2), "preset": "veryfast"}
            stream.options["x265-params"] = f"{params}:{vui}:log-level=error"
        stream.codec_context.colorspace = avcol
        stream.codec_context.color_range = 1  # AVCOL_RANGE_MPEG (limited)
        n = 0
        while n < frames:
            inp.seek(0)
            for frame in inp.decode(video=0):
                scaled = frame.reformat(
                    size[0], size[1], "yuv420p", dst_colorspace=space, interpolation="BICUBIC"
                )
                scaled.pts, scaled.time_base = n, Fraction(1, fps)
                for packet in stream.encode(scaled):
                    out.mux(packet)
                n += 1
                if n >= frames:
                    break
        for packet in stream.encode():
            out.mux(packet)
    tmp.replace(dst)
    return dst


def loop_clip(src: Path, dst: Path, seconds: float) -> Path:
    """``src`` repeated (packets copied, not re-encoded) until it lasts at least ``seconds``, into ``dst``:
    the stream an RTSP server plays to a camera for a whole bench trial. Made once; written next to
    ``dst`` first, then renamed. A clip already made is used where PyAV is absent (the GPU machine)."""
    if dst.is_file():
        return dst
    import av

    tmp = dst.with_name(dst.name + ".part")
    with av.open(str(src)) as inp:
        ins = inp.streams.video[0]
        tb = ins.time_base
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in inp.demux(ins) if p.dts is not None]
        if len(packets) < 2:
            raise ValueError(f"{src}: too few video packets to loop")
        span = packets[-1][2] - packets[0][2] + (packets[1][2] - packets[0][2])  # one pass, time-base units
        times = max(1, math.ceil(seconds / float(span * tb)))
        with av.open(str(tmp), "w", format="mp4") as out:
            stream = out.add_stream_from_template(ins)
            for k in range(times):
                for data, pts, dts, key in packets:
                    packet = av.Packet(data)
                    packet.stream, packet.time_base = stream, tb
                    packet.dts = dts + k * span
                    packet.pts = None if pts is None else pts + k * span
                    packet.is_keyframe = key
                    out.mux(packet)
    tmp.replace(dst)
    return dst


def lasting(clip: Path, seconds: float) -> Path:
    """``clip`` repeated to last ``seconds``, made once beside it: what a bench camera plays (from a file,
    or from the RTSP server), so that no camera reaches the end of its clip and starts it again inside a
    trial. A live camera never does, and a looping file reopens its demuxer, all cameras at the same
    moment since they start together."""
    return loop_clip(clip, clip.with_name(f"{clip.stem}-loop{int(seconds)}s.mp4"), seconds)
