"""The root of the configuration: :class:`Settings`, one field per section.

Precedence, highest first: ``EDGE_*`` environment variables (nested with ``__``), then the YAML file, then
the defaults. Example: ``EDGE_MQTT__HOST=broker.lan`` overrides ``mqtt.host``.
"""

from __future__ import annotations

import re
import socket

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from edge_daemon.config.analytics import AnalyticsConfig, PublishConfig
from edge_daemon.config.base import TopicName
from edge_daemon.config.cameras import CameraConfig
from edge_daemon.config.detect import DetectConfig
from edge_daemon.config.engine import EngineConfig, OnnxRuntimeEngineConfig
from edge_daemon.config.gpu import GpuConfig
from edge_daemon.config.http import HomeAssistantConfig, HttpConfig
from edge_daemon.config.log import LogConfig
from edge_daemon.config.model import ModelConfig
from edge_daemon.config.mqtt import MqttConfig
from edge_daemon.config.service import ServiceConfig


def _default_device_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "edge"
    return host[:64] if host[0].isalnum() else f"edge-{host}"[:64]


class Settings(BaseSettings):
    """The whole daemon configuration. See configs/demo.yaml for a commented example."""

    model_config = SettingsConfigDict(
        env_prefix="EDGE_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    device_id: TopicName = Field(default_factory=_default_device_id)
    cameras: list[CameraConfig] = Field(min_length=1, max_length=16)
    model: ModelConfig
    engine: EngineConfig = Field(default_factory=OnnxRuntimeEngineConfig)
    gpu: GpuConfig = Field(default_factory=GpuConfig)
    detect: DetectConfig = Field(default_factory=DetectConfig)
    analytics: AnalyticsConfig = Field(default_factory=AnalyticsConfig)
    publish: PublishConfig = Field(default_factory=PublishConfig)
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    http: HttpConfig = Field(default_factory=HttpConfig)
    homeassistant: HomeAssistantConfig = Field(default_factory=HomeAssistantConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)

    @model_validator(mode="after")
    def _unique_cameras(self) -> Settings:
        names = [c.name for c in self.cameras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique, repeated: {', '.join(dupes)}")
        return self

    @model_validator(mode="after")
    def _live_view_in_process(self) -> Settings:
        if self.service.workers > 1 and self.http.enabled and self.http.live_view:
            raise ValueError(
                "http.live_view needs service.workers: 1 (with workers the frames stay in their processes)"
            )
        return self

    @model_validator(mode="after")
    def _model_fits_backend(self) -> Settings:
        suffix = self.model.path.suffix.lower()
        if suffix == ".xml" and self.engine.backend != "openvino":
            raise ValueError("an OpenVINO .xml model runs only with engine.backend: openvino")
        if suffix == ".xml" and self.engine.backend == "openvino" and self.engine.precision == "int8":
            raise ValueError(
                "engine.precision: int8 on OpenVINO quantizes the ONNX model or .pt weights; an OpenVINO "
                ".xml export runs as it was exported (precision: auto, bf16 or fp32)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first so that EDGE_* overrides whatever the YAML file (passed as init kwargs) says.
        return env_settings, init_settings, file_secret_settings
