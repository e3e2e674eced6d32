"""Camera sources behind one interface (:class:`FrameSource`), built from typed camera settings."""

from __future__ import annotations

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
    "check_gstreamer",
    "hardware_source",
    "open_source",
]

# Camera kinds read through a GStreamer pipeline and PyGObject's appsink (camera/appsink.py).
GSTREAMER_KINDS = ("csi", "rtsp-hw")


def gst_pipeline(cfg: Any) -> str:
    """The pipeline of a ``csi`` or ``rtsp-hw`` camera, from its typed settings."""
    if cfg.type == "csi":
        return csi_pipeline(cfg.sensor_id, cfg.width, cfg.height, cfg.fps, cfg.flip_method, cfg.elements)
    url = with_credentials(cfg.url, cfg.username, _secret(cfg.password))
    return rtsp_hw_pipeline(url, cfg.codec, cfg.latency_ms, cfg.elements)


def check_gstreamer(cameras: Sequence[Any]) -> None:
    """Refuse cameras this machine's GStreamer cannot run (no PyGObject, or an element missing, such as
    ``nvarguscamerasrc`` away from a Jetson), else they would reconnect forever. One ConfigError line per
    such camera (exit 78), at start and in check-config."""
    from edge_daemon.camera.appsink import missing_elements

    problems = []
    for i, c in enumerate(cameras):
        if c.type not in GSTREAMER_KINDS:
            continue
        missing = missing_elements(gst_pipeline(c))
        if missing:
            problems.append(
                f"cameras.{i} ({c.name}): a {c.type} camera with elements: {c.elements} needs GStreamer "
                f"{', '.join(missing)}, which this machine does not have. On a Jetson install JetPack's "
                "GStreamer plugins and python3-gi (docs/deploy-container.md); elsewhere elements: software "
                "runs Debian's stand-ins"
            )
    if problems:
        raise ConfigError(problems)


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
    if cfg.type in GSTREAMER_KINDS:
        from edge_daemon.camera.appsink import GstSource

        what = f"CSI sensor {cfg.sensor_id}" if cfg.type == "csi" else f"stream {redact_url(cfg.url)}"
        return GstSource(gst_pipeline(cfg), f"{what} (GStreamer)", timeout_s=cfg.read_timeout_s)
    raise ValueError(f"unknown camera type {cfg.type!r}")
