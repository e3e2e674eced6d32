"""Generated configs (hypothesis): whatever the YAML holds, loading it gives Settings or one ConfigError
with readable lines — never another exception — and the secret in it never appears in the message.
A few generated files also go through the real CLI: exit 0 or 78 (EX_CONFIG), no traceback."""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from edge_daemon.config import Settings, load_settings
from edge_daemon.errors import ConfigError
from tests.conftest import run_cli

SECRET = "hunter2-XYZZY"

junk = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**9), 10**9)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)


def maybe(valid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Mostly plausible values, sometimes anything at all."""
    return st.one_of(valid, valid, valid, junk)


camera = st.fixed_dictionaries(
    {"type": maybe(st.sampled_from(["file", "v4l2", "url", "csi", "rtsp-hw"]))},
    optional={
        "name": maybe(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,10}", fullmatch=True)),
        "path": maybe(st.sampled_from([".assets/vtest.avi", "/nonexistent.mp4"])),
        "url": maybe(st.sampled_from(["rtsp://cam/s", f"rtsp://u:{SECRET}@cam/s", "ftp://x", "rtsp://"])),
        "password": maybe(st.just(SECRET)),
        "device": maybe(st.sampled_from(["/dev/video0", 3, "/etc/passwd", -1])),
        "queue_size": maybe(st.integers(-2, 100)),
        "drop_policy": maybe(st.sampled_from(["latest", "block", "oldest"])),
        "read_timeout_s": maybe(st.floats(-1, 400)),
        "reconnect_initial_s": maybe(st.floats(0, 100)),
        "reconnect_max_s": maybe(st.floats(0, 100)),
        "max_frames": maybe(st.integers(-1, 10)),
    },
)

config = st.fixed_dictionaries(
    {},
    optional={
        "device_id": maybe(st.text(max_size=70)),
        "cameras": maybe(st.lists(camera, max_size=3)),
        "model": maybe(
            st.fixed_dictionaries(
                {"path": maybe(st.sampled_from(["m.onnx", "m.pt", "m.torchscript", "m.txt", ""]))},
                optional={"imgsz": maybe(st.lists(st.integers(-32, 4000), max_size=3))},
            )
        ),
        "engine": maybe(
            st.fixed_dictionaries(
                {"backend": maybe(st.sampled_from(["onnxruntime", "tensorrt", "torch", "tflite"]))},
                optional={
                    "precision": maybe(st.sampled_from(["fp32", "fp16", "int8", "int4"])),
                    "max_batch": maybe(st.integers(-1, 100)),
                    "opt_batch": maybe(st.integers(-1, 100)),
                },
            )
        ),
        "gpu": maybe(
            st.fixed_dictionaries({}, optional={"preprocess": maybe(st.sampled_from(["gpu", "cpu"]))})
        ),
        "detect": maybe(st.fixed_dictionaries({}, optional={"conf": maybe(st.floats(-1, 2))})),
        "mqtt": maybe(
            st.fixed_dictionaries(
                {},
                optional={
                    "port": maybe(st.integers(-1, 70000)),
                    "username": maybe(st.just("edge")),
                    "password": maybe(st.just(SECRET)),
                    "qos": maybe(st.integers(-1, 3)),
                },
            )
        ),
        "log": maybe(st.fixed_dictionaries({}, optional={"level": maybe(st.sampled_from(["INFO", "LOUD"]))})),
        "bogus": junk,
    },
)


def _load(tmp: Path, data: object) -> Settings | ConfigError:
    path = tmp / "gen.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        return load_settings(path)
    except ConfigError as exc:
        return exc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=config)
@example(data={"engine": {"backend": "\x1e\r"}})  # a bad tag with line breaks, quoted by pydantic's message
def test_any_config_loads_or_fails_with_one_config_error(tmp_path: Path, data: dict[str, object]) -> None:
    result = _load(tmp_path, data)
    if isinstance(result, ConfigError):
        text = str(result)
        assert text.strip() and SECRET not in text
        assert all(line.strip() for line in text.splitlines())
    else:
        assert isinstance(result, Settings) and result.cameras


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200))
def test_any_text_as_yaml_is_a_config_error_or_a_config(tmp_path: Path, text: str) -> None:
    path = tmp_path / "gen.yaml"
    path.write_text(text, encoding="utf-8")
    try:
        load_settings(path)
    except ConfigError as exc:
        assert str(exc).strip()


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=config)
def test_generated_configs_through_the_cli(tmp_path: Path, data: dict[str, object]) -> None:
    path = tmp_path / "gen.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    done = run_cli("check-config", str(path), timeout=60)
    out = done.stdout + done.stderr
    assert done.returncode in (0, 78), out
    assert "Traceback" not in out and SECRET not in out
