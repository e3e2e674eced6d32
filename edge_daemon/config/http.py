"""The ``http`` section (metrics, health, the live view) and the ``homeassistant`` section (discovery)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from edge_daemon.config.base import Strict, TopicPrefix


class HttpConfig(Strict):
    """A small HTTP server: ``/metrics`` (Prometheus), ``/healthz``, and, when ``live_view`` is on, the
    status page and each camera's annotated MJPEG stream. Localhost only unless ``host`` says otherwise."""

    enabled: bool = Field(True, description="Serve /metrics and /healthz.")
    host: str = Field("127.0.0.1", min_length=1, description="Address to bind; 0.0.0.0 for every interface.")
    port: int = Field(9820, ge=1, le=65535)
    live_view: bool = Field(False, description="The status page (/) and /cameras/<name>/stream.mjpeg.")
    live_fps: float = Field(
        5.0, gt=0, le=60, description="Most frames per second drawn and encoded for viewers, per camera."
    )
    max_width: int = Field(960, ge=160, le=7680, description="Live frames are scaled down to this width.")
    jpeg_quality: int = Field(75, ge=10, le=100)
    max_viewers: int = Field(4, ge=1, le=64, description="Live streams open at once; more are refused (503).")


class HomeAssistantConfig(Strict):
    """Home Assistant MQTT discovery: retained ``<discovery_prefix>/<component>/<node>/<object>/config``
    messages, so that the device and its entities appear in Home Assistant by themselves."""

    discovery: bool = True
    discovery_prefix: TopicPrefix = "homeassistant"
    state_file: Path | None = Field(
        None,
        description="Where the discovery topics published last are remembered (to remove those of cameras "
        "and zones no longer configured); default <model.cache_dir>/ha-discovery/<device_id>.json.",
    )
