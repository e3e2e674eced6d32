"""Camera sections: one model per camera kind, picked by ``type``."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, FilePath, SecretStr, model_validator

from edge_daemon.config.analytics import CameraAnalytics
from edge_daemon.config.base import TopicName


class _CameraBase(CameraAnalytics):
    name: TopicName = "cam0"
    drop_policy: Literal["latest", "block"] = Field(
        "latest",
        description="latest: when the queue is full the oldest waiting frame is dropped, so latency never "
        "builds up (live cameras). block: the camera waits for the pipeline (offline files, benchmarks).",
    )
    queue_size: int = Field(
        1, ge=1, le=64, description="Frames that may wait for inference per camera; 1 keeps latency lowest."
    )
    read_timeout_s: float = Field(5.0, gt=0, le=300)
    reconnect_initial_s: float = Field(0.5, gt=0, le=60)
    reconnect_max_s: float = Field(30.0, gt=0, le=3600)
    max_frames: int | None = Field(None, ge=1, description="Stop after this many frames (tests, demos).")

    @model_validator(mode="after")
    def _backoff_order(self) -> _CameraBase:
        if self.reconnect_max_s < self.reconnect_initial_s:
            raise ValueError("reconnect_max_s must be >= reconnect_initial_s")
        return self

    def frame_size(self) -> tuple[int, int] | None:
        """(width, height) when the config fixes it (then pixel zones are checked against it at load)."""
        width, height = getattr(self, "width", None), getattr(self, "height", None)
        return (width, height) if isinstance(width, int) and isinstance(height, int) else None

    @model_validator(mode="after")
    def _regions_on_frame(self) -> _CameraBase:
        size = self.frame_size()
        problem = self.off_frame(*size) if size else None
        if problem:
            raise ValueError(problem)
        return self


Decode = Literal["auto", "cpu", "nvdec"]
_DECODE = (
    "auto: NVDEC (the GPU's video decoder, frames stay in device memory) when the CUDA pipeline runs and "
    "the GPU can decode the codec, else the CPU; nvdec: NVDEC or fail; cpu: always the CPU (OpenCV)."
)


class FileCamera(_CameraBase):
    """A video file, optionally looped and optionally paced at its native frame rate like a live camera."""

    type: Literal["file"]
    path: FilePath
    loop: bool = False
    realtime: bool = False
    decode: Decode = Field("auto", description=_DECODE)


class V4L2Camera(_CameraBase):
    """A V4L2 / USB camera, by device path (``/dev/video0``) or index."""

    type: Literal["v4l2"]
    device: Annotated[str, Field(pattern=r"^/dev/video[0-9]+$")] | Annotated[int, Field(ge=0, le=255)] = 0
    width: int | None = Field(None, ge=16, le=8192)
    height: int | None = Field(None, ge=16, le=8192)
    fps: float | None = Field(None, gt=0, le=1000)
    fourcc: Annotated[str, Field(pattern=r"^[A-Z0-9]{4}$")] | None = None


_URL_RE = re.compile(r"^(rtsp|rtsps|http|https)://[^\s'\"!`$\\]+$")


def _check_url(url: str) -> str:
    if not _URL_RE.match(url):
        raise ValueError("must be an rtsp://, rtsps://, http:// or https:// URL without spaces or quotes")
    return url


StreamUrl = Annotated[str, AfterValidator(_check_url)]


class UrlCamera(_CameraBase):
    """An RTSP or HTTP(S) stream decoded by OpenCV's FFmpeg backend.

    Credentials may be given inline (``rtsp://user:pass@host/...``) or, better, as ``username``/``password``;
    they are stripped from every logged URL either way.
    """

    type: Literal["url"]
    url: StreamUrl
    username: str | None = None
    password: SecretStr | None = None
    decode: Decode = Field("auto", description=_DECODE)


Elements = Literal["nvidia", "software"]
_ELEMENTS = (
    "nvidia: JetPack's GStreamer elements (nvarguscamerasrc, nvv4l2decoder, nvvidconv). software: Debian's "
    "stand-ins (a live videotestsrc for the sensor, avdec_h264/avdec_h265, videoconvert) in the same "
    "pipeline, for trying a config and testing away from a Jetson."
)


class CsiCamera(_CameraBase):
    """A Jetson CSI camera through GStreamer ``nvarguscamerasrc``, NV12 pulled through PyGObject's appsink."""

    type: Literal["csi"]
    sensor_id: int = Field(0, ge=0, le=15)
    width: int = Field(1920, ge=16, le=8192)
    height: int = Field(1080, ge=16, le=8192)
    fps: int = Field(30, ge=1, le=240)
    flip_method: int = Field(0, ge=0, le=7)
    elements: Elements = Field("nvidia", description=_ELEMENTS)


class GstRtspCamera(_CameraBase):
    """An RTSP stream decoded in hardware on a Jetson (GStreamer ``nvv4l2decoder``), NV12 pulled through
    PyGObject's appsink."""

    type: Literal["rtsp-hw"]
    url: StreamUrl
    codec: Literal["h264", "h265"] = "h264"
    latency_ms: int = Field(200, ge=0, le=10000)
    username: str | None = None
    password: SecretStr | None = None
    elements: Elements = Field("nvidia", description=_ELEMENTS)


CameraConfig = Annotated[
    FileCamera | V4L2Camera | UrlCamera | CsiCamera | GstRtspCamera, Field(discriminator="type")
]
