"""Camera sources behind one interface (:class:`FrameSource`), built from typed camera settings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import cv2

from edge_daemon.camera.base import (
    Backoff,
    CameraReader,
    DropPolicy,
    DropQueue,
    FrameSource,
    QueueClosed,
    as_bgr,
)
from edge_daemon.camera.gstreamer import csi_pipeline, rtsp_hw_pipeline
from edge_daemon.camera.opencv import OpenCVSource, ffmpeg_timeouts, with_credentials
from edge_daemon.errors import ConfigError
from edge_daemon.logs import redact_url

__all__ = [
    "Backoff",
    "CameraReader",
    "DropPolicy",
    "DropQueue",
    "FrameSource",
    "QueueClosed",
    "as_bgr",
    "check_opencv",
    "hardware_source",
    "open_source",
]

# Camera kinds that OpenCV opens through its GStreamer backend, and the NVIDIA element each needs.
GSTREAMER_KINDS = {"csi": "nvarguscamerasrc", "rtsp-hw": "nvv4l2decoder"}


def opencv_has_gstreamer() -> bool:
    return re.search(r"^\s*GStreamer:\s*YES", cv2.getBuildInformation(), re.M) is not None


def check_opencv(cameras: Sequence[Any]) -> None:
    """Refuse cameras this OpenCV cannot open: a ``csi`` or ``rtsp-hw`` camera needs OpenCV built with
    GStreamer (JetPack's; the PyPI wheel has none), else it would reconnect forever. One ConfigError line
    per such camera (exit 78)."""
    kinds = [(i, c) for i, c in enumerate(cameras) if c.type in GSTREAMER_KINDS]
    if not kinds or opencv_has_gstreamer():
        return
    raise ConfigError(
        [
            f"cameras.{i} ({c.name}): a {c.type} camera needs OpenCV built with GStreamer "
            f"({GSTREAMER_KINDS[c.type]}); this OpenCV {cv2.__version__} ({cv2.__file__}) has no GStreamer. "
            "On a Jetson use JetPack's OpenCV, not the opencv-python wheel (docs/deploy-container.md)"
            for i, c in kinds
        ]
    )


def hardware_source(cfg: Any, cpu: FrameSource, gpu: int = 0, pool: int = 8) -> FrameSource:
    """The NVDEC source for a file or URL camera whose ``decode`` allows it, reading what ``cpu`` (its
    :func:`open_source`) reads and falling back to it; probed once. Other cameras keep ``cpu``. Called
    when the CUDA pipeline runs."""
    if getattr(cfg, "decode", "cpu") == "cpu" or not isinstance(cpu, OpenCVSource):
        return cpu
    from edge_daemon.camera.nvdec import NvdecSource

    source = NvdecSource(
        str(cpu.target),
        cpu.description,
        cpu,
        gpu=gpu,
        pool=pool,
        finite=cpu.file,
        loop=cpu.loop,
        realtime=cpu.realtime,
        required=cfg.decode == "nvdec",
    )
    source.probe()
    return source


def _secret(value: Any) -> str | None:
    return None if value is None else str(value.get_secret_value())


def open_source(cfg: Any) -> FrameSource:
    """Build (not yet open) the FrameSource for one camera settings model (see settings.CameraConfig)."""
    if cfg.type == "file":
        return OpenCVSource(
            str(cfg.path),
            cv2.CAP_FFMPEG,
            f"file {cfg.path}",
            finite=True,
            loop=cfg.loop,
            realtime=cfg.realtime,
        )
    if cfg.type == "v4l2":
        props: dict[int, float] = {}
        if cfg.fourcc:
            props[cv2.CAP_PROP_FOURCC] = cv2.VideoWriter.fourcc(*cfg.fourcc)
        if cfg.width:
            props[cv2.CAP_PROP_FRAME_WIDTH] = cfg.width
        if cfg.height:
            props[cv2.CAP_PROP_FRAME_HEIGHT] = cfg.height
        if cfg.fps:
            props[cv2.CAP_PROP_FPS] = cfg.fps
        return OpenCVSource(cfg.device, cv2.CAP_V4L2, f"V4L2 device {cfg.device}", props=props)
    if cfg.type == "url":
        url = with_credentials(cfg.url, cfg.username, _secret(cfg.password))
        return OpenCVSource(
            url, cv2.CAP_FFMPEG, f"stream {redact_url(url)}", params=ffmpeg_timeouts(cfg.read_timeout_s)
        )
    if cfg.type == "csi":
        pipeline = csi_pipeline(cfg.sensor_id, cfg.width, cfg.height, cfg.fps, cfg.flip_method)
        return OpenCVSource(pipeline, cv2.CAP_GSTREAMER, f"CSI sensor {cfg.sensor_id}")
    if cfg.type == "rtsp-hw":
        url = with_credentials(cfg.url, cfg.username, _secret(cfg.password))
        pipeline = rtsp_hw_pipeline(url, cfg.codec, cfg.latency_ms)
        return OpenCVSource(pipeline, cv2.CAP_GSTREAMER, f"hw-decoded stream {redact_url(url)}")
    raise ValueError(f"unknown camera type {cfg.type!r}")
