"""Config: YAML + EDGE_* overrides, strict validation, one clear line per problem, exit 78, secrets masked."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from edge_daemon.config import FileCamera, UrlCamera, load_settings, redacted_dump
from edge_daemon.errors import ConfigError
from tests.conftest import run_cli


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.onnx"
    path.write_bytes(b"not really a model; settings only check that the file exists")
    return path


@pytest.fixture
def write(tmp_path: Path, model_file: Path, clip: Path):
    def _write(overrides: dict | None = None, text: str | None = None) -> Path:
        path = tmp_path / "config.yaml"
        if text is None:
            data: dict = {
                "device_id": "dev1",
                "cameras": [{"name": "cam0", "type": "file", "path": str(clip)}],
                "model": {"path": str(model_file)},
            }
            for key, value in (overrides or {}).items():
                data[key] = value
            text = yaml.safe_dump(data)
        path.write_text(text, encoding="utf-8")
        return path

    return _write


def test_minimal_config_gets_defaults(write) -> None:
    s = load_settings(write())
    assert s.device_id == "dev1"
    assert isinstance(s.cameras[0], FileCamera) and s.cameras[0].drop_policy == "latest"
    assert s.engine.backend == "onnxruntime" and s.engine.providers == ["cpu"]
    assert (s.detect.conf, s.detect.iou, s.mqtt.qos, s.mqtt.port) == (0.25, 0.7, 1, 1883)
    assert s.gpu.wait == "block"  # a waiting thread sleeps instead of spinning a core


def test_environment_overrides_yaml(write, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write({"mqtt": {"host": "from-yaml", "port": 1884}})
    monkeypatch.setenv("EDGE_MQTT__HOST", "from-env")
    monkeypatch.setenv("EDGE_DETECT__CONF", "0.5")
    s = load_settings(path)
    assert s.mqtt.host == "from-env"
    assert s.mqtt.port == 1884, "keys the environment does not name keep their YAML value"
    assert s.detect.conf == 0.5


def test_camera_discriminator_picks_the_model(write) -> None:
    s = load_settings(
        write({"cameras": [{"name": "door", "type": "url", "url": "rtsp://u:p@10.0.0.9/stream"}]})
    )
    assert isinstance(s.cameras[0], UrlCamera)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"bogus": 1}, "bogus: unknown key"),
        ({"mqtt": {"port": "eighty"}}, "mqtt.port: Input should be a valid integer"),
        ({"mqtt": {"port": 70000}}, "mqtt.port: Input should be less than or equal to 65535"),
        ({"detect": {"conf": 1.5}}, "detect.conf: Input should be less than or equal to 1"),
        ({"model": {"path": "/nonexistent/model.onnx"}}, "model.path: Path does not point to a file"),
        (
            {"cameras": [{"type": "webcam"}]},
            "cameras.0: Input tag 'webcam' found using 'type' does not match",
        ),
        (
            {"cameras": [{"type": "url", "url": "rtsp://x/a b"}]},
            "cameras.0.url: Value error, must be an rtsp",
        ),
        ({"cameras": []}, "cameras: List should have at least 1 item"),
        ({"mqtt": {"username": "u", "password": "p"}}, "would be sent in plain text"),
        ({"device_id": "a/b"}, "device_id: String should match pattern"),
        ({"gpu": {"wait": "sleep"}}, "gpu.wait: Input should be 'block', 'spin', 'yield' or 'auto'"),
        ({"model": {"path": "x.onnx", "imgsz": [480, 500]}}, "model.imgsz: Value error, each side must be"),
    ],
)
def test_bad_values_name_the_field(write, overrides, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(overrides))
    assert any(expected in p for p in info.value.problems), info.value.problems


def test_every_problem_is_reported_once(write) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write({"bogus": 1, "mqtt": {"port": 0, "qos": 3}}))
    assert len(info.value.problems) == 3
    assert all(p.count(":") >= 1 and "\n" not in p for p in info.value.problems)


def test_missing_and_malformed_files(tmp_path: Path, write) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: malformed YAML"):
        load_settings(write(text="cameras:\n  - [unclosed\n"))
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_settings(write(text="- just\n- a list\n"))


def test_redacted_dump_masks_secrets(write, tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    s = load_settings(
        write(
            {
                "cameras": [
                    {"type": "url", "url": "rtsp://admin:hunter2@cam.lan/live", "password": "s3cret"}
                ],
                "mqtt": {"username": "edge", "password": "mqtt-pass", "tls": {"ca_file": str(ca)}},
            }
        )
    )
    text = yaml.safe_dump(redacted_dump(s))
    for secret in ("hunter2", "s3cret", "mqtt-pass", "admin"):
        assert secret not in text
    assert "rtsp://***@cam.lan/live" in text and "**********" in text


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli(*args, timeout=60, env=env)


def test_check_config_cli_valid(write) -> None:
    res = _cli(
        "check-config",
        str(write({"mqtt": {"password": "pw", "username": "u", "allow_plaintext_credentials": True}})),
    )
    assert res.returncode == 0, res.stderr
    loaded = yaml.safe_load(res.stdout)
    assert loaded["mqtt"]["password"] == "**********"
    assert "pw" not in res.stdout.replace("password", "")


def test_check_config_cli_bad_exits_78_without_traceback(write) -> None:
    res = _cli("check-config", str(write({"bogus": 1, "detect": {"iou": 0}})))
    assert res.returncode == 78
    lines = res.stderr.strip().splitlines()
    assert lines == [
        "config error: detect.iou: Input should be greater than 0 (got 0)",
        "config error: bogus: unknown key",
    ] or sorted(lines) == sorted(
        [
            "config error: detect.iou: Input should be greater than 0 (got 0)",
            "config error: bogus: unknown key",
        ]
    )
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("text", ["model: [", "cameras: 3\n"])
def test_check_config_cli_malformed(write, text: str) -> None:
    res = _cli("check-config", str(write(text=text)))
    assert res.returncode == 78 and "Traceback" not in res.stderr
    assert res.stderr.startswith("config error: ")


def test_a_key_with_control_characters_gives_a_one_line_error(tmp_path) -> None:
    """Found by tests/test_generated_configs.py: a key holding a carriage return split the message."""
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"model": {"\x1e\r": None}}), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    assert all(line.strip() for line in lines)
    assert any("model.\\x1e\\r: unknown key" in line for line in lines)


@pytest.mark.parametrize("text", ["?\n", "1: a\n", "null: 3\n"])
def test_a_top_level_key_that_is_not_text_is_a_config_error(tmp_path, text: str) -> None:
    """Found by tests/test_generated_configs.py: ``?`` parses to {None: None}, which crashed (TypeError)."""
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match="top-level keys must be names"):
        load_settings(path)
