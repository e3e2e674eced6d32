"""Reading the config: the YAML file, validation errors as one line per problem, systemd credentials.

The single piece of I/O in the config layer is reading the YAML file (and a credential file) here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import SecretStr, ValidationError

from edge_daemon.config.settings import Settings
from edge_daemon.errors import ConfigError


def _printable(text: str) -> str:
    return text if text.isprintable() else repr(text)[1:-1]


def _format_error(err: Any) -> str:
    # A key from the file may hold control characters (a stray \r): escape them, one error stays one line.
    loc = ".".join(_printable(str(p)) for p in _strip_union_tags(err["loc"]))
    msg = _printable(
        str(err["msg"])
    )  # pydantic quotes a bad union tag in its message, control characters too
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


_UNION_TAGS = {"file", "v4l2", "url", "csi", "rtsp-hw", "onnxruntime", "openvino", "tensorrt", "torch"}


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
    odd = [key for key in data if not isinstance(key, str)]
    if odd:
        raise ConfigError(f"{path}: top-level keys must be names, got {_printable(repr(odd[0]))}")
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
