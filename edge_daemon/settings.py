"""Typed configuration: a YAML file plus ``EDGE_*`` environment overrides (nested with ``__``).

Validation only; the single piece of I/O is reading the YAML file in :func:`load_settings`.
Precedence, highest first: environment variables, then the YAML file, then the defaults here.
Example: ``EDGE_MQTT__HOST=broker.lan`` overrides ``mqtt.host``.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    FilePath,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from edge_daemon.errors import ConfigError

# Names that end up in MQTT topics: no '/', '+', '#', spaces or control characters.
TopicName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")]
TopicPrefix = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _default_device_id() -> str:
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "edge"
    return host[:64] if host[0].isalnum() else f"edge-{host}"[:64]


# ---------------------------------------------------------------------------------------------- cameras


class _CameraBase(_Strict):
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


class FileCamera(_CameraBase):
    """A video file, optionally looped and optionally paced at its native frame rate like a live camera."""

    type: Literal["file"]
    path: FilePath
    loop: bool = False
    realtime: bool = False


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


class CsiCamera(_CameraBase):
    """A Jetson CSI camera through GStreamer ``nvarguscamerasrc`` (needs OpenCV built with GStreamer)."""

    type: Literal["csi"]
    sensor_id: int = Field(0, ge=0, le=15)
    width: int = Field(1920, ge=16, le=8192)
    height: int = Field(1080, ge=16, le=8192)
    fps: int = Field(30, ge=1, le=240)
    flip_method: int = Field(0, ge=0, le=7)


class GstRtspCamera(_CameraBase):
    """An RTSP stream decoded in hardware on a Jetson (GStreamer ``nvv4l2decoder``)."""

    type: Literal["rtsp-hw"]
    url: StreamUrl
    codec: Literal["h264", "h265"] = "h264"
    latency_ms: int = Field(200, ge=0, le=10000)
    username: str | None = None
    password: SecretStr | None = None


CameraConfig = Annotated[
    FileCamera | V4L2Camera | UrlCamera | CsiCamera | GstRtspCamera, Field(discriminator="type")
]

# ----------------------------------------------------------------------------------------------- model


class ModelConfig(_Strict):
    """The YOLO model: ``.onnx`` is used as is, ``.pt`` exported to ONNX once (needs the ``export`` extra)."""

    path: FilePath
    imgsz: tuple[int, int] | None = Field(
        None,
        description="Model input (height, width) for .pt export and for dynamic ONNX models. "
        "Ignored for static ONNX models, whose own input size wins. Unset with a .pt model and the "
        "tensorrt backend: chosen from the first camera's aspect ratio at first boot (640 on the long side).",
    )
    cache_dir: Path = Path(".cache/edge-daemon")

    @field_validator("path")
    @classmethod
    def _suffix(cls, v: Path) -> Path:
        if v.suffix.lower() not in {".onnx", ".pt", ".torchscript"}:
            raise ValueError(
                f"model must be a .onnx, .pt or .torchscript file, got {v.suffix or 'no suffix'!r}"
            )
        return v

    @field_validator("imgsz", mode="before")
    @classmethod
    def _square(cls, v: Any) -> Any:
        return (v, v) if isinstance(v, int) else v

    @field_validator("imgsz")
    @classmethod
    def _stride(cls, v: tuple[int, int] | None) -> tuple[int, int] | None:
        if v is not None and any(s < 32 or s > 4096 or s % 32 for s in v):
            raise ValueError("each side must be a multiple of 32 between 32 and 4096")
        return v


# ---------------------------------------------------------------------------------------------- engines


class CalibrationConfig(_Strict):
    """INT8 calibration data: frames from the first camera at first boot (default), or images."""

    source: Literal["camera", "images"] = "camera"
    images: str | None = Field(None, description="A directory or glob of images, for source: images.")
    frames: int = Field(500, ge=8, le=20000, description="How many frames or images to calibrate on.")
    interval_s: float = Field(
        0.2, ge=0, le=3600, description="Live cameras: seconds between captured frames (spread over time)."
    )
    algorithm: Literal["entropy", "minmax"] = "entropy"

    @model_validator(mode="after")
    def _images_given(self) -> CalibrationConfig:
        if self.source == "images" and not self.images:
            raise ValueError("calibration.images is required when calibration.source is images")
        return self


class QuantizeConfig(_Strict):
    """How the INT8 Q/DQ model is made from the FP32 one (ONNX Runtime precision: int8)."""

    method: Literal["entropy", "minmax", "percentile"] = "entropy"
    exclude: Literal["head-final+attn", "head-final", "head", "none"] | list[str] = Field(
        "head-final+attn",
        description="Nodes kept in float: a named set (measured: docs/benchmarks.md) or node-name prefixes.",
    )


class OnnxRuntimeEngineConfig(_Strict):
    """ONNX Runtime: the embedded CPU default; CUDA / TensorRT execution providers when installed."""

    backend: Literal["onnxruntime"] = "onnxruntime"
    providers: list[Literal["cpu", "cuda", "tensorrt"]] = Field(default=["cpu"], min_length=1)
    precision: Literal["fp32", "int8"] = Field(
        "fp32", description="int8: a Q/DQ model quantized on first boot from the camera's frames (cached)."
    )
    calibration: CalibrationConfig = Field(default_factory=lambda: CalibrationConfig(frames=100))
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    intra_op_threads: int | None = Field(None, ge=1, le=256, description="None: one per usable core.")
    spin_wait: bool = Field(
        True,
        description="Let ONNX Runtime's worker threads busy-wait between operators (ORT's default). Measured "
        "faster end to end on 2 cores once OpenCV runs single-threaded; turn off to save power when idle.",
    )


class TensorRTEngineConfig(_Strict):
    """TensorRT (8.6 / 10.x): built for this device on first boot, loaded from the cache after."""

    backend: Literal["tensorrt"]
    precision: Literal["fp32", "fp16", "int8"] = "int8"
    allow_fp16_fallback: bool = Field(
        False, description="On a GPU without fast INT8, build FP16 (loudly) instead of failing."
    )
    workspace_gib: float = Field(1.0, gt=0, le=256)
    max_batch: int = Field(1, ge=1, le=64)
    opt_batch: int | None = Field(
        None, ge=1, le=64, description="Batch the profile optimizes for (default max)."
    )
    dla_core: int | None = Field(
        None, ge=0, le=3, description="Run on this DLA core (Xavier/Orin), GPU fallback on."
    )
    device_index: int = Field(0, ge=0, le=16)
    plan: FilePath | None = Field(
        None, description="Load this prebuilt plan (or Ultralytics .engine) instead of building one."
    )
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    int8_mode: Literal["auto", "implicit", "explicit"] = Field(
        "auto",
        description="implicit: calibrator + INT8 builder flag (TensorRT 8.6/10); explicit: strongly typed "
        "network from a Q/DQ ONNX made on first boot (the only INT8 route on TensorRT 11); "
        "auto: explicit on 11+, implicit before.",
    )
    quantize_exclude: Literal["head-final+attn", "head-final", "head", "none"] | list[str] = Field(
        "head-final+attn", description="explicit mode: nodes kept in float in the Q/DQ model."
    )
    build_lock_timeout_s: float = Field(
        3600, gt=0, description="How long to wait for another process's build."
    )

    @model_validator(mode="after")
    def _batches(self) -> TensorRTEngineConfig:
        if self.opt_batch is not None and self.opt_batch > self.max_batch:
            raise ValueError("opt_batch must be <= max_batch")
        return self


class TorchEngineConfig(_Strict):
    """PyTorch on a CUDA GPU: a TorchScript file (Ultralytics ``export(format="torchscript")``; ``.pt``
    weights are exported once and cached). For NVIDIA GPUs without TensorRT; needs the torch extra."""

    backend: Literal["torch"]
    precision: Literal["fp32", "fp16"] = Field("fp16", description="fp16 needs a CUDA device.")
    device_index: int | None = Field(0, ge=0, le=16, description="CUDA device; None runs on the CPU.")
    max_batch: int = Field(1, ge=1, le=64, description="Largest batch (several cameras in one call).")
    cuda_graphs: bool = Field(
        True,
        description="In the CUDA pipeline, replay the model as a CUDA graph (one launch per batch instead of "
        "hundreds; measured in docs/benchmarks.md).",
    )


EngineConfig = Annotated[
    OnnxRuntimeEngineConfig | TensorRTEngineConfig | TorchEngineConfig, Field(discriminator="backend")
]


class GpuConfig(_Strict):
    """The CUDA pipeline (pinned frame ring, GPU letterbox, engine on the same stream) for GPU engines."""

    preprocess: Literal["auto", "gpu", "cpu"] = Field(
        "auto",
        description="gpu: frames go through pinned memory and the GPU letterbox kernel straight into the "
        "engine's device input; cpu: OpenCV letterbox on the camera threads; auto: gpu when the engine "
        "runs on device memory.",
    )
    mapped_frames: Literal["auto", "on", "off"] = Field(
        "auto", description="Zero-copy mapped pinned frame slots; auto: on integrated GPUs (Jetson)."
    )
    in_flight: int = Field(2, ge=1, le=8, description="Batches queued on the GPU at once (output slots).")
    cpu_fallback: bool = Field(
        True,
        description="With no usable GPU (no driver, no cuda-python / TensorRT / torch), run the CPU engine "
        "(ONNX Runtime, fp32) instead of exiting; said once in the log and in the MQTT info topic.",
    )


# ----------------------------------------------------------------------------------------- postprocess


class DetectConfig(_Strict):
    conf: float = Field(0.25, ge=0.0, le=1.0, description="Minimum class confidence.")
    iou: float = Field(0.7, gt=0.0, le=1.0, description="IoU above which NMS suppresses a box (per class).")
    classes: list[Annotated[int, Field(ge=0)]] | None = Field(None, description="Keep only these class ids.")
    max_det: int = Field(300, ge=1, le=10000)


# ------------------------------------------------------------------------------------------------- mqtt


class MqttTls(_Strict):
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class OutboxConfig(_Strict):
    """Disk outbox for QoS >= 1: messages wait on disk until the broker acknowledges them."""

    enabled: bool = True
    path: Path = Path(".cache/edge-daemon/outbox.sqlite")
    max_messages: int = Field(100_000, ge=100, le=100_000_000)
    max_age_s: float = Field(7 * 86400, gt=0, description="Older undelivered messages are dropped (counted).")


class MqttConfig(_Strict):
    host: str = Field("localhost", min_length=1)
    port: int = Field(1883, ge=1, le=65535)
    client_id: str | None = Field(None, max_length=128)
    username: str | None = None
    password: SecretStr | None = None
    tls: MqttTls | None = None
    allow_plaintext_credentials: bool = Field(
        False,
        description="Send username/password without TLS. Off by default: the broker would see them "
        "and so would anyone on the network.",
    )
    topic_prefix: TopicPrefix = "edge"
    qos: Literal[0, 1, 2] = 1
    keepalive_s: int = Field(30, ge=5, le=3600)
    max_queued_messages: int = Field(10000, ge=0, description="0: unbounded (paho's default).")
    connect_timeout_s: float = Field(10.0, gt=0, le=600)
    outbox: OutboxConfig = Field(default_factory=OutboxConfig)

    @model_validator(mode="after")
    def _credentials(self) -> MqttConfig:
        if self.password is not None and self.username is None:
            raise ValueError("password is set but username is not")
        if self.username is not None and self.tls is None and not self.allow_plaintext_credentials:
            raise ValueError(
                "username/password without tls would be sent in plain text; "
                "configure mqtt.tls or set mqtt.allow_plaintext_credentials: true"
            )
        return self


class LogConfig(_Strict):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    stats_interval_s: float = Field(10.0, gt=0, le=3600, description="How often throughput is logged.")


# ------------------------------------------------------------------------------------------------- root


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
    mqtt: MqttConfig = Field(default_factory=MqttConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @model_validator(mode="after")
    def _unique_cameras(self) -> Settings:
        names = [c.name for c in self.cameras]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"camera names must be unique, repeated: {', '.join(dupes)}")
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


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)[1:-1]


def _format_error(err: Any) -> str:
    # A key from the file may hold control characters (a stray \r): escape them, one error stays one line.
    loc = ".".join(_printable(str(p)) for p in _strip_union_tags(err["loc"]))
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required but missing"
    elif "input" in err and err["type"] not in {"value_error"} and not isinstance(err["input"], dict | list):
        shown = err["input"]
        if "password" in loc:
            shown = "**********"
        msg = f"{msg} (got {shown!r})"
    return f"{loc or '<root>'}: {msg}"


_UNION_TAGS = {"file", "v4l2", "url", "csi", "rtsp-hw", "onnxruntime", "tensorrt", "torch"}


def _strip_union_tags(loc: tuple[Any, ...]) -> list[Any]:
    """Drop the discriminator value pydantic inserts into a location (``cameras.0.url.path``), keeping
    real field names that happen to equal a tag (the ``url`` field of a ``url`` camera)."""
    out: list[Any] = []
    for i, part in enumerate(loc):
        prev = loc[i - 1] if i else None
        if part in _UNION_TAGS and (isinstance(prev, int) or prev == "engine"):
            continue
        out.append(part)
    return out


def load_settings(path: Path | str, base_dir: Path | None = None) -> Settings:
    """Read, merge and validate the config. Raises ConfigError with one line per problem.

    Relative paths in the file stay relative to the working directory, as systemd's WorkingDirectory= sets it.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError([_format_error(e) for e in exc.errors()]) from None
    return _with_credentials(settings)


MQTT_PASSWORD_CREDENTIAL = "mqtt-password"


def _with_credentials(settings: Settings) -> Settings:
    """Fill secrets from systemd credentials (``LoadCredential=``), which never appear in the environment.

    ``$CREDENTIALS_DIRECTORY/mqtt-password`` sets ``mqtt.password`` when the config does not.
    """
    directory = os.environ.get("CREDENTIALS_DIRECTORY")
    if not directory or settings.mqtt.password is not None:
        return settings
    path = Path(directory) / MQTT_PASSWORD_CREDENTIAL
    try:
        secret = path.read_text(encoding="utf-8").rstrip("\n")
    except FileNotFoundError:
        return settings
    except OSError as exc:
        raise ConfigError(f"credential {MQTT_PASSWORD_CREDENTIAL}: cannot read: {exc}") from None
    if settings.mqtt.username is None:
        raise ConfigError(f"credential {MQTT_PASSWORD_CREDENTIAL} is given but mqtt.username is not set")
    mqtt = settings.mqtt.model_copy(update={"password": SecretStr(secret)})
    return settings.model_copy(update={"mqtt": mqtt})


def redacted_dump(settings: Settings) -> dict[str, Any]:
    """The resolved config as plain data with every secret masked (SecretStr and URL credentials)."""
    from edge_daemon.logs import redact_url

    data = settings.model_dump(mode="json")
    for cam in data["cameras"]:
        if "url" in cam:
            cam["url"] = redact_url(cam["url"])
    return data
