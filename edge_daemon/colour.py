"""Colour: how a decoder's NV12 becomes BGR, the same on the CPU and in the GPU kernel.

Hardware decoders (NVDEC, Jetson's nvv4l2decoder) give NV12: the Y plane, then U and V interleaved at half
the width and height. Turning it into RGB needs the matrix the stream declares (BT.601 or BT.709) and its
range (limited: Y 16-235, C 16-240; full: 0-255). A stream that declares no matrix is read as players
read it: BT.709 from 720 lines up, BT.601 below; no range: limited.

The arithmetic is FFmpeg's accurate conversion (swscale with ``BILINEAR | ACCURATE_RND | FULL_CHR_H_INT``):
chroma interpolated bilinearly to every pixel (samples centred between the luma pairs, edges clamped),
then the matrix in floating point, rounded once. :func:`nv12_to_bgr` does it with OpenCV on the CPU and
the kernel in :mod:`edge_daemon.gpu.kernels` does it on the GPU; both agree with FFmpeg's within one uint8
level (tests/test_colour.py checks the CPU side against PyAV's swscale on real frames).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import numpy.typing as npt

Matrix = Literal["bt601", "bt709"]

_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


@dataclass(frozen=True, slots=True)
class Colour:
    """A stream's colour matrix and range."""

    matrix: Matrix = "bt601"
    full_range: bool = False

    @functools.cache  # noqa: B019 (a handful of frozen, hashable instances: nothing is kept alive long)
    def coefficients(self) -> tuple[float, float, float, float, float, float, float]:
        """(y_offset, y_scale, c_scale, r_from_v, g_from_u, g_from_v, b_from_u) for
        R = Y' + r_v V', G = Y' - g_u U' - g_v V', B = Y' + b_u U', where Y' = (Y - y_offset) * y_scale and
        U', V' = (C - 128) * c_scale."""
        kr, kb = _KR_KB[self.matrix]
        kg = 1.0 - kr - kb
        y_off, y_scale, c_scale = (0.0, 1.0, 1.0) if self.full_range else (16.0, 255.0 / 219.0, 255.0 / 224.0)
        return (
            y_off,
            y_scale,
            c_scale,
            2.0 * (1.0 - kr),
            2.0 * kb * (1.0 - kb) / kg,
            2.0 * kr * (1.0 - kr) / kg,
            2.0 * (1.0 - kb),
        )

    def describe(self) -> str:
        return f"{self.matrix.upper()} {'full' if self.full_range else 'limited'} range"


DEFAULT = Colour()

# FFmpeg's AVColorSpace / AVColorRange numbers, as PyAV and PyNvVideoCodec report them.
_FFMPEG_MATRIX: dict[int, Matrix] = {1: "bt709", 5: "bt601", 6: "bt601"}  # BT709, BT470BG, SMPTE170M


def unspecified(height: int | None) -> Matrix:
    """The matrix of a stream that declares none: BT.709 for HD (720 lines and up), else BT.601."""
    return "bt709" if height is not None and height >= 720 else "bt601"


def from_ffmpeg(colorspace: int | None, color_range: int | None, height: int | None = None) -> Colour:
    """The Colour of a stream from FFmpeg's codes (unspecified or unknown matrix: :func:`unspecified`;
    unspecified range: limited)."""
    matrix = _FFMPEG_MATRIX.get(int(colorspace or 0)) or unspecified(height)
    return Colour(matrix, int(color_range or 0) == 2)  # AVCOL_RANGE_JPEG = 2


def from_names(space: str, range_: str, height: int | None = None) -> Colour:
    """The Colour from enum names as PyNvVideoCodec's demuxer gives them (``ColorSpace.BT_709``,
    ``ColorRange.JPEG``, ``UNSPEC``...)."""
    space, range_ = space.upper(), range_.upper()
    if "709" in space:
        matrix: Matrix = "bt709"
    elif any(k in space for k in ("601", "470", "170")):
        matrix = "bt601"
    else:
        matrix = unspecified(height)
    return Colour(matrix, "JPEG" in range_ or "FULL" in range_)


# GStreamer's GstVideoColorMatrix numbers (the second field of a "range:matrix:transfer:primaries" string).
_GST_MATRIX: dict[str, Matrix] = {"2": "bt601", "3": "bt709", "4": "bt601"}  # FCC, BT709, BT601
_GST_NAMED: dict[str, Colour] = {
    "bt601": Colour("bt601"),
    "bt709": Colour("bt709"),
}


def from_colorimetry(colorimetry: str | None, height: int | None = None) -> Colour:
    """The Colour from a GStreamer caps ``colorimetry`` field: a name (``bt709``, ``bt601``...) or
    ``range:matrix:transfer:primaries`` numbers (range 1 = full, 2 = limited; matrix 3 = BT.709, 4 = BT.601).
    Missing or unknown matrix: :func:`unspecified`; unknown range: limited."""
    text = (colorimetry or "").strip()
    if text.lower() in _GST_NAMED:
        return _GST_NAMED[text.lower()]
    fields = text.split(":")
    if len(fields) != 4:
        return Colour(unspecified(height))
    return Colour(_GST_MATRIX.get(fields[1]) or unspecified(height), fields[0] == "1")


def nv12_to_bgr(nv12: npt.NDArray[np.uint8], colour: Colour = DEFAULT) -> npt.NDArray[np.uint8]:
    """BGR uint8 (H, W, 3) from an NV12 picture of shape (H * 3 / 2, W) (even H and W)."""
    rows, width = nv12.shape[:2]
    height = rows * 2 // 3
    if nv12.ndim != 2 or rows != height * 3 // 2 or height % 2 or width % 2:
        raise ValueError(f"not an NV12 picture of even size: shape {nv12.shape}")
    uv = nv12[height:].reshape(height // 2, width // 2, 2).astype(np.float32)
    # OpenCV's bilinear resize maps pixel centres (x + 0.5) / 2 - 0.5: chroma centred, edges clamped.
    uv = np.asarray(cv2.resize(uv, (width, height), interpolation=cv2.INTER_LINEAR), np.float32)
    ycc = cv2.merge([nv12[:height].astype(np.float32), uv[..., 0], uv[..., 1]])
    # The matrix as one affine transform in float, then rounded to nearest and saturated to 0..255.
    bgr = np.asarray(cv2.transform(ycc, _affine(colour)), np.float32)
    np.maximum(bgr, 0.0, out=bgr)  # negatives to 0 (convertScaleAbs would mirror them); > 255 saturates
    return np.asarray(cv2.convertScaleAbs(bgr), np.uint8)


@functools.cache
def _affine(colour: Colour) -> npt.NDArray[np.float64]:
    """(B, G, R) = M @ (Y, U, V, 1): the 3x4 matrix of ``colour`` for cv2.transform."""
    y_off, y_scale, c_scale, rv, gu, gv, bu = colour.coefficients()
    m = np.array(
        [[y_scale, bu * c_scale, 0.0], [y_scale, -gu * c_scale, -gv * c_scale], [y_scale, 0.0, rv * c_scale]]
    )
    return np.hstack([m, (-m @ np.array([y_off, 128.0, 128.0]))[:, None]])


def nv12_to_bgr_scaled(
    nv12: npt.NDArray[np.uint8], colour: Colour, max_width: int
) -> tuple[npt.NDArray[np.uint8], float]:
    """BGR uint8 of an NV12 picture scaled down (never up) to at most ``max_width`` (even sizes), and the
    scale: for pictures people look at (snapshots). Each plane is resized once, straight to the size
    wanted (luma by area when it shrinks by 2 or more, else bilinear; chroma bilinear), and the matrix is
    applied in uint8: 6.7x faster than scaling by area and then :func:`nv12_to_bgr` at 1080p -> 1280 on one
    core (3.1 against 20.8 ms, scripts/bench_snapshot_convert.py), within a level of it on average, more
    only at sharp edges (the resampling differs)."""
    rows, width = nv12.shape[:2]
    height = rows * 2 // 3
    if nv12.ndim != 2 or rows != height * 3 // 2 or height % 2 or width % 2:
        raise ValueError(f"not an NV12 picture of even size: shape {nv12.shape}")
    if width <= max_width:
        return nv12_to_bgr(nv12, colour), 1.0
    w = max(2, max_width // 2 * 2)
    scale = w / width
    h = max(2, round(height * scale / 2) * 2)
    luma = cv2.INTER_AREA if width >= 2 * w else cv2.INTER_LINEAR
    y = cv2.resize(nv12[:height], (w, h), interpolation=luma)
    uv = cv2.resize(nv12[height:].reshape(height // 2, width // 2, 2), (w, h), interpolation=cv2.INTER_LINEAR)
    ycc = cv2.merge([y, uv[..., 0], uv[..., 1]])
    return np.asarray(cv2.transform(ycc, _affine(colour)), np.uint8), scale  # saturated to 0..255


def nv12_luma(nv12: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """The Y plane (a grey image, no copy) of an NV12 picture."""
    return nv12[: nv12.shape[0] * 2 // 3]
