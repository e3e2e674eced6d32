"""The paho-mqtt 2.x client as the daemon configures it: id, bounded queue, jittered reconnects, TLS and
credentials. Bad TLS files are a PublishError at start, never a failure at the first publish."""

from __future__ import annotations

import logging
import random
import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_daemon.errors import PublishError

log = logging.getLogger(__name__)


def make_client(cfg: Any, device_id: str) -> mqtt.Client:
    """A paho client from an MqttConfig, not yet connected."""
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=cfg.client_id or f"edge-daemon-{device_id}",
        clean_session=True,
    )
    client.max_queued_messages_set(cfg.max_queued_messages)
    # paho doubles the delay from min to max without jitter; a random base per client spreads a fleet's
    # reconnects after a broker restart (delays differ by client at every step).
    client.reconnect_delay_set(min_delay=random.uniform(0.5, 1.5), max_delay=60)  # type: ignore[arg-type]
    if cfg.username is not None:
        password = cfg.password.get_secret_value() if cfg.password is not None else None
        client.username_pw_set(cfg.username, password)
    if cfg.tls is not None:
        try:
            client.tls_set(
                ca_certs=str(cfg.tls.ca_file) if cfg.tls.ca_file else None,
                certfile=str(cfg.tls.cert_file) if cfg.tls.cert_file else None,
                keyfile=str(cfg.tls.key_file) if cfg.tls.key_file else None,
                cert_reqs=ssl.CERT_NONE if cfg.tls.insecure_skip_verify else ssl.CERT_REQUIRED,
            )
        except (ssl.SSLError, OSError, ValueError) as exc:
            raise PublishError(f"mqtt.tls: cannot load certificates: {exc}") from None
        if cfg.tls.insecure_skip_verify:
            client.tls_insecure_set(True)
            log.warning("mqtt: TLS certificate verification is OFF (mqtt.tls.insecure_skip_verify)")
    return client
