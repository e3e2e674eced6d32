"""The ``mqtt`` section: broker, TLS, credentials, topics, QoS and the disk outbox."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, FilePath, SecretStr, model_validator

from edge_daemon.config.base import Strict, TopicPrefix


class MqttTls(Strict):
    ca_file: FilePath | None = None
    cert_file: FilePath | None = None
    key_file: FilePath | None = None
    insecure_skip_verify: bool = False

    @model_validator(mode="after")
    def _pair(self) -> MqttTls:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file must be given together")
        return self


class OutboxConfig(Strict):
    """Disk outbox for QoS >= 1: messages wait on disk until the broker acknowledges them."""

    enabled: bool = True
    path: Path = Path(".cache/edge-daemon/outbox.sqlite")
    max_messages: int = Field(100_000, ge=100, le=100_000_000)
    max_age_s: float = Field(7 * 86400, gt=0, description="Older undelivered messages are dropped (counted).")


class MqttConfig(Strict):
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
