"""Frozen data types that flow between the rooms: camera -> preprocess -> engine -> postprocess -> publish.

Only numpy (and the colour conversion below it) is imported here, so every room can depend on this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge_daemon.colour import Colour, nv12_luma, nv12_to_bgr


class DevicePlanes(Protocol):
    """An NV12 picture in device memory (a hardware decoder's frame, copied into a buffer of the source's
    pool): the planes' addresses and row pitches; ``download`` copies it to the host as (H * 3 / 2, W);
    ``release`` hands the buffer back to its pool once the frame is done with (published or dropped)."""

    y_ptr: int
    y_pitch: int
    uv_ptr: int
    uv_pitch: int

    def download(self) -> npt.NDArray[np.uint8]: ...

    def release(self) -> None: ...


@dataclass(frozen=True, slots=True, eq=False)
class Nv12Picture:
    """A decoded picture in NV12 as hardware decoders give it: on the host (``host``, shape (H * 3 / 2, W))
    or in device memory (``device``), with the colour matrix and range its stream declares."""

    width: int
    height: int
    colour: Colour
    host: npt.NDArray[np.uint8] | None = None
    device: DevicePlanes | None = None

    def to_host(self) -> npt.NDArray[np.uint8]:
        if self.host is not None:
            return self.host
        assert self.device is not None
        return self.device.download()

    def to_bgr(self) -> npt.NDArray[np.uint8]:
        """BGR uint8 (H, W, 3), converted on the host with the picture's colour."""
        return nv12_to_bgr(self.to_host(), self.colour)


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded camera frame.

    image: BGR, uint8, shape (H, W, 3), C-contiguous; owned by this frame (never reused by the camera),
        or, when ``buffer`` is set, a view of a pipeline buffer the camera decoded into (the CUDA stage's
        pinned slots), valid until the frame has been published. None when the decoder gave NV12
        (``nv12``, on the host or in device memory): :meth:`bgr` converts on demand (snapshots, the live
        view, the CPU stage), and the CUDA stage converts it in its pre-processing kernel.
    seq: per-camera sequence number, starting at 0 and increasing by one per captured frame
        (frames dropped by the drop policy keep their numbers, so gaps are visible downstream).
    captured_at: wall-clock capture time, seconds since the Unix epoch.
    captured_mono: time.monotonic() at capture, for latency measurements.
    """

    camera: str
    seq: int
    image: npt.NDArray[np.uint8] | None
    captured_at: float
    captured_mono: float
    buffer: object | None = field(default=None, compare=False, repr=False)  # opaque, the stage's token
    # Seconds of this camera's time before this frame that motion gating skipped as still (0 without
    # gating): the tracker's clock leaves them out, so a stopped object is not extrapolated across them.
    still_s: float = 0.0
    nv12: Nv12Picture | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        img = self.image
        if img is None:
            if self.nv12 is None:
                raise ValueError("a Frame needs an image or an NV12 picture")
            return
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"Frame.image must be uint8 (H, W, 3), got {img.dtype} {img.shape}")

    @property
    def height(self) -> int:
        return self.nv12.height if self.nv12 is not None else int(self.bgr().shape[0])

    @property
    def width(self) -> int:
        return self.nv12.width if self.nv12 is not None else int(self.bgr().shape[1])

    def bgr(self) -> npt.NDArray[np.uint8]:
        """The picture as BGR uint8 (H, W, 3): ``image``, or the NV12 picture converted (once, then kept)."""
        if self.image is not None:
            return self.image
        assert self.nv12 is not None
        image = self.nv12.to_bgr()
        object.__setattr__(self, "image", image)
        return image

    def gray(self) -> npt.NDArray[np.uint8]:
        """A grey picture (H, W): an NV12 picture's Y plane as it is, else BGR converted."""
        if self.nv12 is not None and self.image is None:
            return nv12_luma(self.nv12.to_host())
        import cv2

        return np.asarray(cv2.cvtColor(self.bgr(), cv2.COLOR_BGR2GRAY), np.uint8)


@dataclass(frozen=True, slots=True)
class LetterboxMeta:
    """How a frame was mapped into the model input, so boxes can be mapped back.

    A point (x, y) in frame pixels lands at (x * gain_x + pad_x, y * gain_y + pad_y) in the input tensor.
    src_* is the frame size and dst_* the model input size, both in pixels.
    """

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the daemon knows about the model, read from the model's own metadata.

        input_hw: model input (height, width) in pixels. names: class id -> label.
        model_id: stable identifier published with every message: file stem plus the first 12 hex digits
        of the file's sha256. head: how its outputs are decoded (:mod:`edge_daemon.model.tasks`: the task, and
    ``-e2e`` for an end-to-end head).
    """

    model_id: str
    task: str  # detect, segment, pose, obb or classify
    names: dict[int, str]
    stride: int
    input_hw: tuple[int, int]
    sha256: str
    head: str = "detect"
    kpt_shape: tuple[int, int] | None = None  # pose: (keypoints, values per keypoint)

    @property
    def num_classes(self) -> int:
        return len(self.names)


@dataclass(frozen=True, slots=True, eq=False)
class Detections:
    """What a model saw in one frame, whatever its task, in frame pixels.

    xyxy: float32 (N, 4), corners x1, y1, x2, y2, clipped to the frame (an oriented box: the upright
    rectangle around its corners); confidence: float32 (N,) in [0, 1]; class_id: int32 (N,). Rows are
    sorted by confidence, highest first. The task's own fields, None for other tasks:

    keypoints: pose, float32 (N, K, D): per detection K keypoints of x, y in frame pixels (clipped to the
    frame) and, when D is 3, the keypoint's visibility score in [0, 1].
    polygons: segment, per detection the outlines of its mask, each float32 (P, 2) x, y in frame pixels
    (an instance cut in two by an occluder has two; a mask with no pixel left has none).
    obb: oriented boxes, float32 (N, 5): centre x, centre y, width, height in frame pixels and the
    rotation in radians, as Ultralytics' ``xywhr``.
    top_class, top_confidence: classify, int32 (k,) and float32 (k,), the k most likely classes, most
    likely first (N is 0: a classifier has no boxes).
    track_id: int32 (N,) when the camera tracks: each detection's track id, -1 for one without a track.
    """

    xyxy: npt.NDArray[np.float32]
    confidence: npt.NDArray[np.float32]
    class_id: npt.NDArray[np.int32]
    keypoints: npt.NDArray[np.float32] | None = None
    polygons: tuple[tuple[npt.NDArray[np.float32], ...], ...] | None = None
    obb: npt.NDArray[np.float32] | None = None
    top_class: npt.NDArray[np.int32] | None = None
    top_confidence: npt.NDArray[np.float32] | None = None
    track_id: npt.NDArray[np.int32] | None = None

    def __post_init__(self) -> None:
        n = len(self.confidence)
        if self.xyxy.shape != (n, 4):
            raise ValueError(f"xyxy must be (N, 4) with N={n}, got {self.xyxy.shape}")
        if self.class_id.shape != (n,) or self.confidence.shape != (n,):
            raise ValueError("confidence and class_id must be 1-D arrays of the same length")
        if self.xyxy.dtype != np.float32 or self.confidence.dtype != np.float32:
            raise ValueError("xyxy and confidence must be float32")
        if self.class_id.dtype != np.int32:
            raise ValueError("class_id must be int32")
        kp = self.keypoints
        if kp is not None and (kp.ndim != 3 or kp.shape[0] != n or kp.shape[2] not in (2, 3)):
            raise ValueError(f"keypoints must be (N, K, 2 or 3) with N={n}, got {kp.shape}")
        if self.polygons is not None and len(self.polygons) != n:
            raise ValueError(f"polygons must hold one entry per detection ({n}), got {len(self.polygons)}")
        if self.obb is not None and self.obb.shape != (n, 5):
            raise ValueError(f"obb must be (N, 5) with N={n}, got {self.obb.shape}")
        if (self.top_class is None) != (self.top_confidence is None) or (
            self.top_class is not None
            and self.top_confidence is not None
            and self.top_class.shape != self.top_confidence.shape
        ):
            raise ValueError("top_class and top_confidence come together, of one length")

        if self.track_id is not None and (self.track_id.shape != (n,) or self.track_id.dtype != np.int32):
            raise ValueError(f"track_id must be int32 (N,) with N={n}")

    def __len__(self) -> int:
        return len(self.confidence)

    def above(self, threshold: float) -> Detections:
        """The detections whose confidence is at least ``threshold`` (every per-detection field kept)."""
        keep = np.flatnonzero(self.confidence >= threshold)
        if len(keep) == len(self):
            return self

        def rows(a: Any) -> Any:
            return None if a is None else a[keep]

        return Detections(
            xyxy=self.xyxy[keep],
            confidence=self.confidence[keep],
            class_id=self.class_id[keep],
            keypoints=rows(self.keypoints),
            polygons=None if self.polygons is None else tuple(self.polygons[i] for i in keep),
            obb=rows(self.obb),
            top_class=self.top_class,
            top_confidence=self.top_confidence,
            track_id=rows(self.track_id),
        )

    @classmethod
    def empty(
        cls, kpt_shape: tuple[int, int] | None = None, *, masks: bool = False, obb: bool = False
    ) -> Detections:
        """No detections, with the task's fields empty rather than absent: with ``kpt_shape`` (K, D) an empty
        (0, K, D) keypoint array (pose), with ``masks`` no polygons (segment), with ``obb`` a (0, 5) array."""
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros((0,), np.float32),
            class_id=np.zeros((0,), np.int32),
            keypoints=None if kpt_shape is None else np.zeros((0, *kpt_shape), np.float32),
            polygons=() if masks else None,
            obb=np.zeros((0, 5), np.float32) if obb else None,
        )
