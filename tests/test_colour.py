"""NV12 -> BGR on the CPU against FFmpeg's own conversion (swscale through PyAV), on real frames.

The GPU kernel (edge_daemon/gpu/kernels.py) does the same arithmetic; tests/test_gpu_streams.py checks it
against this CPU path on the GPU machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_daemon.colour import Colour, Matrix, from_ffmpeg, nv12_luma, nv12_to_bgr

av = pytest.importorskip("av")


def _nv12_frames(clip: Path, count: int = 3) -> list[np.ndarray]:
    """Real frames in their own YUV 4:2:0 (the clip is MPEG-4 yuv420p), repacked as NV12."""
    out = []
    with av.open(str(clip)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 97 == 5:
                out.append(frame.to_ndarray(format="nv12"))
            if len(out) == count:
                break
    return out


def _ffmpeg_bgr(nv12: np.ndarray, colour: Colour) -> np.ndarray:
    from av.video.reformatter import Interpolation

    frame = av.VideoFrame.from_ndarray(nv12, format="nv12")
    flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    out = frame.reformat(
        format="bgr24",
        src_colorspace="ITU709" if colour.matrix == "bt709" else "ITU601",
        src_color_range="JPEG" if colour.full_range else "MPEG",
        interpolation=flags,
    )
    return out.to_ndarray()


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
@pytest.mark.parametrize("full_range", [False, True])
def test_nv12_to_bgr_equals_ffmpeg_within_one_level(clip: Path, matrix: str, full_range: bool) -> None:
    colour = Colour(matrix, full_range)  # type: ignore[arg-type]
    for nv12 in _nv12_frames(clip):
        got = nv12_to_bgr(nv12, colour).astype(np.int16)
        want = _ffmpeg_bgr(nv12, colour).astype(np.int16)
        diff = np.abs(got - want)
        assert diff.max() <= 1, (colour, diff.max())
        assert (diff > 0).mean() < 0.02, (colour, (diff > 0).mean())
    # The matrix matters: BT.709 read as BT.601 is visibly off on the same picture.
    if matrix == "bt709":
        wrong = nv12_to_bgr(nv12, Colour("bt601", full_range)).astype(np.int16)
        assert np.abs(wrong - want).max() > 5


def test_stream_colour_codes_and_bad_input() -> None:
    assert from_ffmpeg(1, 1) == Colour("bt709", False)
    assert from_ffmpeg(5, 2) == Colour("bt601", True)
    assert from_ffmpeg(None, None) == Colour("bt601", False), "unspecified: BT.601 limited, as FFmpeg"
    assert from_ffmpeg(9, 0) == Colour("bt601", False), "BT.2020 is not handled: read as the default"
    nv12 = np.zeros((6, 4), np.uint8)
    assert nv12_luma(nv12).shape == (4, 4)
    with pytest.raises(ValueError, match="NV12"):
        nv12_to_bgr(np.zeros((5, 4), np.uint8))


def test_colour_from_gstreamer_colorimetry() -> None:
    """Caps name the matrix or give GstVideoColorimetry numbers (range:matrix:transfer:primaries)."""
    from edge_daemon.colour import from_colorimetry

    assert from_colorimetry("bt709", 288) == Colour("bt709")
    assert from_colorimetry("bt601", 1080) == Colour("bt601")
    assert from_colorimetry("1:4:0:0", 1080) == Colour("bt601", full_range=True)  # JPEG
    assert from_colorimetry("2:3:5:1", 288) == Colour("bt709")
    assert from_colorimetry("2:0:0:0", 1080) == Colour("bt709")  # unknown matrix: by size
    assert from_colorimetry(None, 480) == Colour("bt601")


@pytest.mark.parametrize("matrix", ["bt601", "bt709"])
def test_a_scaled_down_nv12_picture_converts_like_the_scaled_down_bgr(clip: Path, matrix: Matrix) -> None:
    """Snapshots scale an NV12 picture as they convert it (each plane resized once, the matrix in uint8): the
    result matches converting exactly first and scaling after, within a level on average (more only at
    chroma edges: half the chroma resolution), at a whole ratio (area) and at 1.5 (bilinear, as 1080p ->
    1280)."""
    import cv2

    from edge_daemon.colour import nv12_to_bgr_scaled

    colour = Colour(matrix)
    for nv12 in _nv12_frames(clip):
        same, scale = nv12_to_bgr_scaled(nv12, colour, 4096)  # never scaled up: the exact conversion
        assert scale == 1.0 and np.array_equal(same, nv12_to_bgr(nv12, colour))
        for width, height in ((384, 288), (512, 384)):
            small, scale = nv12_to_bgr_scaled(nv12, colour, width)
            assert small.shape == (height, width, 3) and small.dtype == np.uint8
            assert scale == width / nv12.shape[1]
            exact = cv2.resize(nv12_to_bgr(nv12, colour), (width, height), interpolation=cv2.INTER_AREA)
            diff = np.abs(small.astype(np.int16) - exact.astype(np.int16))
            assert diff.mean() < 1.5 and np.percentile(diff, 99) <= 12, (width, diff.mean())
