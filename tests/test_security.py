"""MQTT over TLS with CA verification, client certificates, a password file and an ACL (real mosquitto),
and no secret in any output of a full run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, Broker, free_port, run_cli, wait_port

PASSWORD = "broker-pw-7f3a9c"
RTSP_PASSWORD = "rtsp-secret-51be"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _make_ca(folder: Path, cn: str, days: int) -> None:
    """A self-signed CA in ``folder``: ca.key and ca.pem."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        str(days),
        "-subj",
        f"/CN={cn}",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        cwd=folder,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA, a server certificate for 127.0.0.1/localhost, and a client certificate."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed for the TLS tests")
    d = tmp_path_factory.mktemp("pki")
    _make_ca(d, "edge-test-ca", 2)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn in (("server", "localhost"), ("client", "edge-daemon")):
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            f"/CN={cn}",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            cwd=d,
        )
        extra = ["-extfile", "san.ext"] if name == "server" else []
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            f"{name}.pem",
            *extra,
            cwd=d,
        )
    return d


@pytest.fixture(scope="module")
def tls_broker(pki: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """mosquitto with TLS (client certificates required), a password file and an ACL."""
    d = tmp_path_factory.mktemp("tlsbroker")
    passwd = d / "passwd"
    passwd.write_text("")
    for user, pw in (("edge", PASSWORD), ("watcher", "watcher-pw"), ("controller", "controller-pw")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwd), user, pw], check=True, capture_output=True)
    # The daemon reads and writes under its prefix only (it reads its own control topics); the controller may
    # switch detection and nothing else; the watcher only reads.
    (d / "acl").write_text(
        "user edge\ntopic readwrite edge/secure/#\n\nuser watcher\ntopic read edge/#\n\n"
        "user controller\ntopic write edge/secure/secure/+/detect/set\ntopic read edge/#\n"
    )
    port = free_port()
    conf = d / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\nacl_file {d / 'acl'}\n"
        f"cafile {pki / 'ca.pem'}\ncertfile {pki / 'server.pem'}\nkeyfile {pki / 'server.key'}\n"
        "require_certificate true\npersistence false\n" + ("user root\n" if os.geteuid() == 0 else "")
        # Started as root, mosquitto drops to its own user and could not read the keys in pytest's tmp dirs.
    )
    proc = subprocess.Popen(
        ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port)
    yield Broker("127.0.0.1", port, proc, conf)
    proc.terminate()
    proc.wait(10)


def _tls_client_watch(broker: Broker, pki: Path, topic: str, user: str = "watcher"):  # type: ignore[no-untyped-def]
    """A subscriber on the TLS broker (user watcher, read-only by ACL; or another user)."""
    import ssl
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got: list[tuple[str, bytes]] = []
    ready = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    client.tls_set(
        ca_certs=str(pki / "ca.pem"),
        certfile=str(pki / "client.pem"),
        keyfile=str(pki / "client.key"),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    client.username_pw_set(user, f"{user}-pw")
    client.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload)))
    client.on_subscribe = lambda *a: ready.set()
    client.connect("localhost", broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    assert ready.wait(10)
    return client, got


def _start_daemon(config: Path) -> subprocess.Popen[str]:
    """``edge-daemon run -c config`` with its output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "edge_daemon", "run", "-c", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ),
    )


def _config(tmp_path: Path, clip: Path, model: Path, pki: Path, port: int, prefix: str = "edge") -> Path:
    data = {
        "device_id": "secure",
        "cameras": [
            {"name": "cam0", "type": "file", "path": str(clip), "max_frames": 6, "drop_policy": "block"},
            # A camera whose credentials must never surface, although it fails and retries all the time.
            {
                "name": "door",
                "type": "url",
                "url": f"rtsp://admin:{RTSP_PASSWORD}@127.0.0.1:{free_port()}/s",
                "read_timeout_s": 1,
                "reconnect_initial_s": 0.1,
                "reconnect_max_s": 0.2,
                "max_frames": 1,
            },
        ],
        "model": {"path": str(model)},
        "mqtt": {
            "host": "localhost",
            "port": port,
            "username": "edge",
            "password": PASSWORD,
            "topic_prefix": prefix,
            "connect_timeout_s": 5,
            "tls": {
                "ca_file": str(pki / "ca.pem"),
                "cert_file": str(pki / "client.pem"),
                "key_file": str(pki / "client.key"),
            },
        },
        "log": {"level": "DEBUG", "stats_interval_s": 0.5},
    }
    path = tmp_path / "secure.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_tls_password_acl_full_run_and_no_secret_anywhere(
    tmp_path, clip, world_onnx, pki, tls_broker
) -> None:
    import signal
    import time

    config = _config(tmp_path, clip, world_onnx, pki, tls_broker.port, prefix="edge/secure")
    watcher, got = _tls_client_watch(tls_broker, pki, "edge/#")
    try:
        proc = _start_daemon(config)
        try:
            deadline = time.monotonic() + 90  # the door camera never ends: stop once cam0's frames are in
            while len([t for t, _ in got if t.endswith("/detections")]) < 6 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.0)  # a few more reconnect attempts of the door camera make it into the log
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        finally:
            proc.kill()
        check = run_cli("check-config", str(config))
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    detections = [json.loads(p) for t, p in got if t.endswith("/detections")]
    assert proc.returncode == 0, out[-2000:]
    assert len(detections) == 6, "published over TLS, with a client certificate and a password, under the ACL"
    assert all(t.startswith("edge/secure/secure/") for t, _ in got)
    # No secret in the daemon's whole output (DEBUG level), in any message, or in check-config's output.
    everything = out + check.stdout + check.stderr + "".join(p.decode(errors="replace") for _, p in got)
    for secret in (PASSWORD, RTSP_PASSWORD):
        assert secret not in everything
    assert "rtsp://***@127.0.0.1" in out, "the failing camera is logged, with its credentials masked"


def test_acl_outside_the_prefix_is_refused(tmp_path, clip, world_onnx, pki, tls_broker) -> None:
    """The broker's ACL lets the daemon's user write only under edge/secure/: elsewhere nothing arrives."""
    data = yaml.safe_load(
        _config(tmp_path, clip, world_onnx, pki, tls_broker.port, prefix="other").read_text()
    )
    data["cameras"] = data["cameras"][:1]  # the file camera only: the run ends by itself
    data["mqtt"]["outbox"] = {"enabled": False}  # never acknowledged messages would hold shutdown
    config = tmp_path / "other.yaml"
    config.write_text(yaml.safe_dump(data))
    watcher, got = _tls_client_watch(tls_broker, pki, "#")
    try:
        res = run_cli("run", "-c", str(config), timeout=90)
    finally:
        watcher.disconnect()
        watcher.loop_stop()
    assert res.returncode == 0, res.stderr[-2000:]
    assert not [t for t, _ in got if t.startswith("other/")], "mosquitto dropped what the ACL forbids"


def test_wrong_ca_is_refused(tmp_path, clip, world_onnx, pki, tls_broker) -> None:
    """A broker certificate that does not chain to the configured CA: no connection, nothing sent."""
    other = tmp_path / "other"
    other.mkdir()
    _make_ca(other, "evil-ca", 1)
    data = yaml.safe_load(_config(tmp_path, clip, world_onnx, pki, tls_broker.port).read_text())
    data["mqtt"]["tls"]["ca_file"] = str(other / "ca.pem")
    data["mqtt"]["connect_timeout_s"] = 1
    data["mqtt"]["outbox"] = {"enabled": False}
    data["cameras"] = data["cameras"][:1]
    config = tmp_path / "wrongca.yaml"
    config.write_text(yaml.safe_dump(data))
    res = run_cli("run", "-c", str(config), timeout=90)
    assert "connected to" not in res.stderr
    assert PASSWORD not in res.stderr + res.stdout


def test_plain_broker_never_sees_credentials_unless_allowed(tmp_path, clip, world_onnx) -> None:
    data = {
        "cameras": [{"type": "file", "path": str(clip)}],
        "model": {"path": str(world_onnx)},
        "mqtt": {"username": "edge", "password": PASSWORD},
    }
    config = tmp_path / "plain.yaml"
    config.write_text(yaml.safe_dump(data))
    res = run_cli("check-config", str(config))
    assert res.returncode == 78 and "would be sent in plain text" in res.stderr
    assert PASSWORD not in res.stderr + res.stdout


def test_control_under_the_acl(tmp_path, clip, world_onnx, pki, tls_broker) -> None:
    """MQTT control through the broker's ACL: the daemon subscribes under its own prefix only (and the
    broker grants it); a user allowed to write ``…/detect/set`` switches detection off; a read-only user
    cannot switch it back on."""
    import signal
    import time

    data = yaml.safe_load(
        _config(tmp_path, clip, world_onnx, pki, tls_broker.port, prefix="edge/secure").read_text()
    )
    data["cameras"] = [{**data["cameras"][0], "max_frames": None, "loop": True, "realtime": True}]
    config = tmp_path / "control.yaml"
    config.write_text(yaml.safe_dump(data))
    set_topic = "edge/secure/secure/cam0/detect/set"
    watcher, got = _tls_client_watch(tls_broker, pki, "edge/secure/#")
    controller, _ = _tls_client_watch(tls_broker, pki, "edge/secure/#", user="controller")

    def states() -> list[bytes]:
        return [p for t, p in got if t == "edge/secure/secure/cam0/detect/state"]

    def status() -> list[bytes]:
        return [p for t, p in got if t == "edge/secure/secure/status"]

    proc = _start_daemon(config)
    try:
        deadline = time.monotonic() + 90
        while b"online" not in status() and time.monotonic() < deadline:
            time.sleep(0.1)
        # It subscribed before saying online (one connection: the broker has taken the subscription).
        assert b"online" in status() and states()[-1] == b"ON", "detection is on at start"
        controller.publish(set_topic, b"OFF", qos=1).wait_for_publish(10)
        deadline = time.monotonic() + 15
        while states()[-1] != b"OFF" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert states()[-1] == b"OFF", "the controller switched detection off"
        watcher.publish(set_topic, b"ON", qos=1).wait_for_publish(10)  # the ACL drops it
        time.sleep(2.0)
        assert states()[-1] == b"OFF", "a read-only user cannot switch detection"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
        for client in (watcher, controller):
            client.disconnect()
            client.loop_stop()
    assert proc.returncode == 0, out[-2000:]
    assert "refused subscriptions" not in out and "detection off (over MQTT)" in out
