"""The disk outbox: nothing the daemon produced is lost to a broker outage or a crash."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edge_daemon.publish.outbox import Outbox
from tests.conftest import ROOT, free_port, start_mosquitto
from tests.helpers.collector import Collector


def test_rows_in_order_acked_rows_gone(tmp_path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    ids = [box.add("t", f"m{i}".encode()) for i in range(5)]
    box.ack(ids[1])
    assert [p for _, _, p in box.iter_pending()] == [b"m0", b"m2", b"m3", b"m4"]
    box.close()
    reopened = Outbox(tmp_path / "o.sqlite")  # survives a restart
    assert reopened.pending() == 4
    reopened.close()


def test_bounds_drop_the_oldest_and_count_them(tmp_path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_messages=100)
    for i in range(512):
        box.add("t", str(i).encode())
    assert box.pending() <= 356 and box.dropped >= 156  # bounds are enforced every 256 inserts
    first = next(box.iter_pending())[2]
    assert int(first) > 0, "the oldest went first"
    dropped = box.dropped
    box.close()
    assert Outbox(tmp_path / "o.sqlite").dropped == dropped, "the drop count is persistent"


def test_unwritable_outbox_is_a_clear_error(tmp_path) -> None:
    from edge_daemon.errors import PublishError

    (tmp_path / "ro").mkdir()
    (tmp_path / "ro" / "o.sqlite").mkdir()  # a directory where the file should be
    with pytest.raises(PublishError, match="cannot open"):
        Outbox(tmp_path / "ro" / "o.sqlite")


def _daemon(tmp_path: Path, port: int, clip: Path, model: Path, device: str) -> subprocess.Popen[str]:
    config = tmp_path / f"{device}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device_id": device,
                # block: every captured frame is published, so the sequence numbers have no policy gaps
                "cameras": [
                    {
                        "type": "file",
                        "path": str(clip),
                        "loop": True,
                        "realtime": True,
                        "drop_policy": "block",
                    }
                ],
                "model": {"path": str(model)},
                "mqtt": {"host": "127.0.0.1", "port": port, "connect_timeout_s": 2},
            }
        )
    )
    return subprocess.Popen(
        [sys.executable, "-m", "edge_daemon", "run", "-c", str(config)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(os.environ),
    )


def _published(out: str) -> int:
    return int(out.split("stopped: ")[1].split(" frames published", maxsplit=1)[0])


def test_broker_outage_mid_stream_loses_nothing(tmp_path, clip, world_onnx) -> None:
    port = free_port()
    extra = f"persistence true\npersistence_location {tmp_path}/\n"
    broker = start_mosquitto(tmp_path, extra=extra.replace("persistence false\n", ""), port=port)
    collector = Collector(port, "edge/outage/+/detections")
    proc = _daemon(tmp_path, port, clip, world_onnx, "outage")
    try:
        deadline = time.monotonic() + 120
        while len(collector.seqs) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert collector.seqs, "nothing arrived before the outage"
        broker.proc.send_signal(signal.SIGTERM)  # the broker goes away for 4 s while frames keep coming
        broker.proc.wait(10)
        before = max(collector.seqs)
        time.sleep(4)
        broker = start_mosquitto(tmp_path, extra=extra, port=port)
        deadline = time.monotonic() + 60  # new frames after the outage (however slow the machine)
        while max(collector.seqs) < before + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        produced = _published(out)
        deadline = time.monotonic() + 30
        while len(set(collector.seqs)) < produced and time.monotonic() < deadline:
            time.sleep(0.1)
        received = set(collector.seqs)
        assert produced >= before + 20, "frames were produced during and after the outage"
        assert received == set(range(produced)), (
            f"lost: {sorted(set(range(produced)) - received)[:20]}\n{out}"
        )
        assert "replayed" in out
    finally:
        proc.kill()
        collector.stop()
        broker.proc.terminate()
        broker.proc.wait(10)


def test_messages_left_at_a_crash_go_out_on_the_next_start(tmp_path, clip, world_onnx) -> None:
    """The next run re-counts seq from 0, so only (run, seq) tells a replayed message from a new one: every
    stored message of the killed run must arrive under its own run id (what the README tells consumers to
    deduplicate on)."""
    port = free_port()  # no broker at first: everything the daemon produces stays in the outbox
    proc = _daemon(tmp_path, port, clip, world_onnx, "crash")
    time.sleep(6)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    box = Outbox(Path(os.environ["EDGE_MQTT__OUTBOX__PATH"]))
    first_run = {(body["run"], body["seq"]) for body in (json.loads(p) for _, _, p in box.iter_pending())}
    box.close()
    assert len(first_run) >= 5, "frames were produced and kept on disk"
    assert len({run for run, _ in first_run}) == 1
    broker = start_mosquitto(tmp_path, port=port)
    collector = Collector(port, "edge/crash/+/detections")
    proc = _daemon(tmp_path, port, clip, world_onnx, "crash")
    try:
        deadline = time.monotonic() + 60

        def arrived() -> bool:  # the first run's messages, and at least one of the new run's
            runs = set(collector.runs)
            return first_run <= runs and any(run != first for run, _ in runs)

        first = next(iter(first_run))[0]
        while not arrived() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first_run <= set(collector.runs), "the first run's messages arrived after the restart"
        assert {run for run, _ in collector.runs} - {first}, "the new run has its own id"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)
        collector.stop()
        broker.proc.terminate()
        broker.proc.wait(10)
