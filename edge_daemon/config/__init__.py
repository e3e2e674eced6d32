"""Typed configuration: a YAML file plus ``EDGE_*`` environment overrides, validated at the edge.

One module per section (cameras, model, engine, gpu, detect, mqtt, http, log, …), :class:`Settings` as the
root and :func:`load_settings` as the one reader. Validation only: no I/O but reading the file.
"""

from edge_daemon.config.analytics import (
    AnalyticsConfig,
    CameraAnalytics,
    LineConfig,
    MotionConfig,
    PublishConfig,
    SnapshotConfig,
    TrackingConfig,
    ZoneConfig,
)
from edge_daemon.config.cameras import (
    CameraConfig,
    CsiCamera,
    FileCamera,
    GstRtspCamera,
    UrlCamera,
    V4L2Camera,
)
from edge_daemon.config.detect import DetectConfig
from edge_daemon.config.engine import (
    CalibrationConfig,
    EngineConfig,
    OnnxRuntimeEngineConfig,
    OpenVinoEngineConfig,
    QuantizeConfig,
    TensorRTEngineConfig,
    TorchEngineConfig,
)
from edge_daemon.config.gpu import GpuConfig
from edge_daemon.config.http import HomeAssistantConfig, HttpConfig
from edge_daemon.config.load import MQTT_PASSWORD_CREDENTIAL, load_settings, redacted_dump
from edge_daemon.config.log import LogConfig
from edge_daemon.config.model import ModelConfig
from edge_daemon.config.mqtt import MqttConfig, MqttTls, OutboxConfig
from edge_daemon.config.service import ServiceConfig
from edge_daemon.config.settings import Settings

__all__ = [
    "MQTT_PASSWORD_CREDENTIAL",
    "AnalyticsConfig",
    "CalibrationConfig",
    "CameraAnalytics",
    "CameraConfig",
    "CsiCamera",
    "DetectConfig",
    "EngineConfig",
    "FileCamera",
    "GpuConfig",
    "GstRtspCamera",
    "HomeAssistantConfig",
    "HttpConfig",
    "LineConfig",
    "LogConfig",
    "ModelConfig",
    "MotionConfig",
    "MqttConfig",
    "MqttTls",
    "OnnxRuntimeEngineConfig",
    "OpenVinoEngineConfig",
    "OutboxConfig",
    "PublishConfig",
    "QuantizeConfig",
    "ServiceConfig",
    "Settings",
    "SnapshotConfig",
    "TensorRTEngineConfig",
    "TorchEngineConfig",
    "TrackingConfig",
    "UrlCamera",
    "V4L2Camera",
    "ZoneConfig",
    "load_settings",
    "redacted_dump",
]
