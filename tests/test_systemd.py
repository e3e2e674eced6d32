"""systemd integration: the hardened unit file, credentials, READY/STATUS/WATCHDOG from service health."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from edge_daemon.app import run_daemon
from edge_daemon.config import Settings, load_settings
from edge_daemon.errors import ConfigError
from tests.conftest import ROOT, free_port

UNIT = ROOT / "systemd" / "edge-daemon.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="systemd-analyze not installed (make test installs it)"
)


def _unit_for_this_machine(tmp_path: Path) -> Path:
    """The shipped unit with its install path pointed at this checkout's entry point, so verify can run."""
    exe = Path(sys.executable).parent / "edge-daemon"
    text = UNIT.read_text().replace("/opt/edge-daemon/bin/edge-daemon", str(exe))
    unit = tmp_path / "edge-daemon.service"
    unit.write_text(text)
    return unit


@needs_analyze
def test_unit_file_verifies_clean(tmp_path) -> None:
    res = subprocess.run(
        [ANALYZE, "verify", str(_unit_for_this_machine(tmp_path))],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0 and res.stdout.strip() == "" and res.stderr.strip() == "", res.stderr


@needs_analyze
def test_unit_exposure_score_is_at_most_3(tmp_path) -> None:
    res = subprocess.run(
        [ANALYZE, "security", "--offline=true", str(_unit_for_this_machine(tmp_path))],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        check=False,
    )
    match = re.search(r"Overall exposure level for edge-daemon.service: ([0-9.]+)", res.stdout)
    assert match, res.stdout[-500:] + res.stderr
    assert float(match.group(1)) <= 3.0


def test_unit_file_contract() -> None:
    """What the daemon relies on: notify + watchdog, restart policy, credentials, directories."""
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "RestartPreventExitStatus=78 65",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "StateDirectory=edge-daemon",
        "CacheDirectory=edge-daemon",
        "LoadCredential=mqtt-password:",
        "DevicePolicy=closed",
        "User=edge-daemon",
        "StartLimitBurst=",
    ):
        assert line in text, line
    assert "MQTT__PASSWORD" not in text, "no secrets in the environment"


def _config(tmp_path: Path, clip: Path, model: Path, **extra: object) -> Path:
    data = {"cameras": [{"type": "file", "path": str(clip)}], "model": {"path": str(model)}, **extra}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_mqtt_password_comes_from_the_systemd_credential(tmp_path, clip, world_onnx, monkeypatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "mqtt-password").write_text("s3cret-from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    config = _config(
        tmp_path, clip, world_onnx, mqtt={"username": "edge", "allow_plaintext_credentials": True}
    )
    settings = load_settings(config)
    assert settings.mqtt.password is not None
    assert settings.mqtt.password.get_secret_value() == "s3cret-from-credential"
    with pytest.raises(ConfigError, match=r"mqtt\.username is not set"):
        load_settings(_config(tmp_path, clip, world_onnx))


class _NotifySocket:
    """A real notify socket, read on its own thread so every message keeps its arrival time."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.timed: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.timed.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue

    @property
    def messages(self) -> list[str]:
        return [m for _, m in self.timed]

    def drain(self) -> list[str]:
        time.sleep(0.1)
        self._stop.set()
        self._thread.join(2)
        return self.messages

    def pings(self) -> list[float]:
        return [t for t, m in self.timed if m == "WATCHDOG=1"]


def _run_for(settings: Settings, seconds: float) -> None:
    stop = threading.Event()
    runner = threading.Thread(target=run_daemon, args=(settings, stop))
    runner.start()
    time.sleep(seconds)
    stop.set()
    runner.join(60)
    assert not runner.is_alive()


def test_ready_and_watchdog_while_frames_flow(tmp_path, clip, world_onnx, broker, monkeypatch) -> None:
    sock = _NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # 1 s: a ping at least every 0.5 s while healthy
    settings = Settings(
        cameras=[{"type": "file", "path": str(clip), "loop": True, "realtime": True}],
        model={"path": str(world_onnx)},
        mqtt={"host": "127.0.0.1", "port": broker.port},
        log={"stats_interval_s": 1},
    )
    _run_for(settings, 4.0)
    msgs = sock.drain()
    assert sum("READY=1" in m for m in msgs) == 1
    assert sum(m == "WATCHDOG=1" for m in msgs) >= 4
    assert any(m.startswith("STATUS=running at") for m in msgs)
    assert msgs.index(next(m for m in msgs if "READY=1" in m)) < msgs.index("WATCHDOG=1")


def test_a_camera_down_is_reported_not_restarted(tmp_path, world_onnx, broker, monkeypatch) -> None:
    """A camera down at boot and for longer than the watchdog interval: READY once the engine runs, the
    outage in STATUS (and health), and not one missed watchdog ping (systemd must not restart us)."""
    sock = _NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "500000")  # 0.5 s, the camera stays down for 3 s
    settings = Settings(
        cameras=[
            {
                "type": "url",
                "url": f"rtsp://127.0.0.1:{free_port()}/none",
                "read_timeout_s": 1,
                "reconnect_initial_s": 0.1,
                "reconnect_max_s": 0.2,
            }
        ],
        model={"path": str(world_onnx)},
        mqtt={"host": "127.0.0.1", "port": broker.port},
    )
    started = time.monotonic()
    _run_for(settings, 3.0)
    msgs = sock.drain()
    assert sum("READY=1" in m for m in msgs) == 1, msgs
    assert any("STATUS=" in m and "cam0" in m and "down" in m for m in msgs), msgs
    pings = sock.pings()
    assert len(pings) >= 5, msgs
    gaps = [b - a for a, b in zip([started, *pings], pings, strict=False)]
    assert max(gaps[1:]) < 0.5, f"a watchdog ping came late: gaps {gaps}"


def test_hung_inference_stops_the_pings_and_its_buffers_stay(
    tmp_path, clip, world_onnx, broker, monkeypatch, caplog
) -> None:
    """Inference stuck on one batch longer than service.stuck_batch_s: the pings stop (systemd restarts
    the service). At shutdown the stuck thread is abandoned and the engine it is inside is not closed."""
    import logging

    from edge_daemon.runtime.onnxruntime import OnnxRuntimeEngine

    sock = _NotifySocket(tmp_path / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    release = threading.Event()
    calls = {"infer": 0, "inside": 0, "closed_while_inside": 0}
    real_run, real_close = OnnxRuntimeEngine.run, OnnxRuntimeEngine.close

    def run(self, batch):  # type: ignore[no-untyped-def]
        calls["infer"] += 1
        calls["inside"] += 1
        try:
            if calls["infer"] == 5:
                release.wait(30)  # the hang
            return real_run(self, batch)
        finally:
            calls["inside"] -= 1

    def close(self) -> None:  # type: ignore[no-untyped-def]
        if calls["inside"]:
            calls["closed_while_inside"] += 1
        real_close(self)

    monkeypatch.setattr(OnnxRuntimeEngine, "run", run)
    monkeypatch.setattr(OnnxRuntimeEngine, "close", close)
    settings = Settings(
        cameras=[{"type": "file", "path": str(clip), "loop": True, "realtime": True}],
        model={"path": str(world_onnx)},
        mqtt={"host": "127.0.0.1", "port": broker.port},
        service={"stuck_batch_s": 1.0, "drain_timeout_s": 1.0},
    )
    try:
        with caplog.at_level(logging.WARNING):
            _run_for(settings, 5.0)
        msgs = sock.drain()
    finally:
        release.set()
    assert calls["infer"] >= 5
    hang_seen = next(t for t, m in sock.timed if "STATUS=" in m and "stuck" in m)
    assert sock.pings() and max(sock.pings()) < hang_seen, "no ping once inference is stuck"
    assert sum("READY=1" in m for m in msgs) == 1
    assert calls["closed_while_inside"] == 0, "the engine was closed under a running inference"
    assert any("still inside the engine" in r.getMessage() for r in caplog.records)
