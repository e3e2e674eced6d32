"""Bad input through the real CLI: a clear line and a sysexits code, never a traceback, never a bad cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_cli


def _run(tmp_path: Path, clip: Path, model: Path, command: str = "run") -> subprocess.CompletedProcess[str]:
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "cameras": [{"type": "file", "path": str(clip), "max_frames": 2}],
                "model": {"path": str(model), "imgsz": [320, 320], "cache_dir": str(tmp_path / "cache")},
                "mqtt": {"connect_timeout_s": 0.5},
            }
        )
    )
    return run_cli(command, "-c", str(config), timeout=300)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("empty.onnx", b""),
        ("garbage.onnx", b"\x00\x01not a model" * 50),
        ("truncated.onnx", None),
        ("garbage.pt", b"PK\x03\x04 not a checkpoint"),
    ],
)
def test_bad_model_files_exit_65_with_one_clear_line(tmp_path, clip, world_onnx, name, content) -> None:
    model = tmp_path / name
    model.write_bytes(world_onnx.read_bytes()[: 1 << 20] if content is None else content)
    res = _run(tmp_path, clip, model)
    assert res.returncode == 65, res.stderr[-1500:]
    assert "Traceback" not in res.stderr + res.stdout
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and model.name in errors[0], res.stderr[-1500:]
    onnx_cache = tmp_path / "cache" / "onnx"
    assert not onnx_cache.exists() or not [p for p in onnx_cache.iterdir() if p.suffix == ".onnx"], (
        "a failed export leaves nothing in the cache"
    )


def test_unreadable_config_and_unknown_command(tmp_path) -> None:
    res = run_cli("run", "-c", str(tmp_path / "missing.yaml"))
    assert res.returncode == 78 and res.stderr.strip().endswith("config file not found")
    res = run_cli("frobnicate")
    assert res.returncode == 2 and "invalid choice" in res.stderr and "Traceback" not in res.stderr
