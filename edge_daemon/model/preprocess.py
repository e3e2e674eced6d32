"""CPU pre-processing: Ultralytics-identical letterbox (or centre crop) and the NCHW float tensor.

Pure functions, no state. The letterbox copies ``ultralytics.data.augment.LetterBox`` (center=True,
scaleup=True, pad value 114, bilinear resize) so that detections match Ultralytics' own predictions.
Classifiers take a centre crop instead, as Ultralytics' ``classify_transforms`` (shortest side resized to
the input size, then the centre cut out). Both are one scale and one offset (:class:`LetterboxMeta`; a
crop's offsets are negative), which is what the GPU kernel draws too. The resize is bilinear in both
(Ultralytics resizes a classifier's input with PIL's antialiased bilinear: the same top classes, pixel
values a little apart on strong downscaling).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import numpy.typing as npt

from edge_daemon.types import LetterboxMeta

PAD_VALUE = 114


def _sizes(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    src_h, src_w = src_hw
    dst_h, dst_w = dst_hw
    if min(src_h, src_w, dst_h, dst_w) <= 0:
        raise ValueError(f"sizes must be positive, got src {src_hw} dst {dst_hw}")
    return src_h, src_w, dst_h, dst_w


def _meta(
    src_hw: tuple[int, int], dst_hw: tuple[int, int], new_wh: tuple[int, int], pad: tuple[int, int]
) -> LetterboxMeta:
    """The frame scaled to ``new_wh`` (W, H) and placed at ``pad`` (x, y) in the model input."""
    return LetterboxMeta(
        src_w=src_hw[1],
        src_h=src_hw[0],
        dst_w=dst_hw[1],
        dst_h=dst_hw[0],
        gain_x=new_wh[0] / src_hw[1],
        gain_y=new_wh[1] / src_hw[0],
        pad_x=pad[0],
        pad_y=pad[1],
    )


def letterbox_meta(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> LetterboxMeta:
    """Scale and padding that fit a ``src_hw`` frame into ``dst_hw`` keeping its aspect ratio."""
    src_h, src_w, dst_h, dst_w = _sizes(src_hw, dst_hw)
    r = min(dst_h / src_h, dst_w / src_w)
    new_w, new_h = max(round(src_w * r), 1), max(round(src_h * r), 1)
    pad = (round((dst_w - new_w) / 2 - 0.1), round((dst_h - new_h) / 2 - 0.1))
    return _meta(src_hw, dst_hw, (new_w, new_h), pad)


def crop_meta(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> LetterboxMeta:
    """Scale and (negative) offsets of a centre crop: the frame's shorter side scaled to fill ``dst_hw``,
    the middle cut out (torchvision's ``Resize`` + ``CenterCrop`` arithmetic, as ``classify_transforms``)."""
    src_h, src_w, dst_h, dst_w = _sizes(src_hw, dst_hw)
    if dst_h != dst_w:  # Ultralytics resizes to a non-square input exactly, nothing cut
        new_w, new_h = dst_w, dst_h
    elif src_w <= src_h:  # torchvision Resize(int): the short side to size, the long one truncated
        new_w, new_h = dst_w, int(dst_w * src_h / src_w)
    else:
        new_w, new_h = int(dst_h * src_w / src_h), dst_h
    cut = (-round((new_w - dst_w) / 2.0), -round((new_h - dst_h) / 2.0))  # negative: the crop's offsets
    return _meta(src_hw, dst_hw, (new_w, new_h), cut)


def fit_meta(fit: str) -> Callable[[tuple[int, int], tuple[int, int]], LetterboxMeta]:
    """The geometry of ``fit``: ``letterbox`` or ``crop``."""
    if fit not in ("letterbox", "crop"):
        raise ValueError(f"unknown fit {fit!r}: letterbox or crop")
    return crop_meta if fit == "crop" else letterbox_meta


def letterbox(
    image: npt.NDArray[np.uint8], dst_hw: tuple[int, int], fit: str = "letterbox"
) -> tuple[npt.NDArray[np.uint8], LetterboxMeta]:
    """Resize ``image`` (BGR uint8 HWC) into ``dst_hw`` with grey (114) borders, or (``fit="crop"``) its
    centre crop. Returns BGR uint8 HWC."""
    meta = fit_meta(fit)((image.shape[0], image.shape[1]), dst_hw)
    new_w = round(meta.src_w * meta.gain_x)
    new_h = round(meta.src_h * meta.gain_y)
    resized = image
    if (new_w, new_h) != (meta.src_w, meta.src_h):
        resized = np.asarray(cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR), np.uint8)
    if fit == "crop":
        x0, y0 = -meta.pad_x, -meta.pad_y
        return np.ascontiguousarray(resized[y0 : y0 + meta.dst_h, x0 : x0 + meta.dst_w]), meta
    bottom = meta.dst_h - new_h - meta.pad_y
    right = meta.dst_w - new_w - meta.pad_x
    out = cv2.copyMakeBorder(
        resized, meta.pad_y, bottom, meta.pad_x, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3
    )
    return np.ascontiguousarray(out, dtype=np.uint8), meta


def to_tensor(
    images: list[npt.NDArray[np.uint8]], dtype: type[np.floating] = np.float32
) -> npt.NDArray[np.floating]:
    """Letterboxed BGR uint8 HWC images -> RGB, /255, NCHW tensor of ``dtype`` (one OpenCV call)."""
    blob = np.asarray(
        cv2.dnn.blobFromImages(images, scalefactor=1.0 / 255.0, swapRB=True, crop=False), np.float32
    )
    return blob if dtype is np.float32 else blob.astype(dtype)


def preprocess(
    image: npt.NDArray[np.uint8], dst_hw: tuple[int, int], fit: str = "letterbox"
) -> tuple[npt.NDArray[np.floating], LetterboxMeta]:
    """One frame -> (1, 3, H, W) float32 model input and the letterbox (or crop) that produced it."""
    boxed, meta = letterbox(image, dst_hw, fit)
    return to_tensor([boxed]), meta
