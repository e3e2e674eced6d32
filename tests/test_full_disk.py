"""A full disk under the outbox: the daemon keeps publishing (from memory), says so once, loses nothing
while the broker is up, and exits cleanly; and SQLite's own "database or disk is full" is handled."""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import time
from pathlib import Path

import pytest
import yaml

from edge_daemon.errors import PublishError
from edge_daemon.publish.outbox import Outbox
from tests.conftest import Broker, run_cli, subscribed


def test_sqlite_full_is_a_publish_error_and_the_outbox_recovers(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    page_count = box._db.execute("PRAGMA page_count").fetchone()[0]
    box._db.execute(f"PRAGMA max_page_count = {page_count + 2}")  # SQLite's own "disk is full" (SQLITE_FULL)
    with pytest.raises(PublishError, match="cannot store a message: database or disk is full"):
        for _ in range(200):
            box.add("t", os.urandom(4096))
    stored = box.pending()
    box._db.execute("PRAGMA max_page_count = 1073741823")  # space again
    box.add("t", b"after")
    assert box.pending() == stored + 1
    assert box._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    box.close()


def _limit_file_size() -> None:
    # The kernel refuses writes past 200 kB in this process (EFBIG), as a full disk refuses them (ENOSPC);
    # SIGXFSZ ignored so that the write fails instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))


def test_daemon_keeps_publishing_when_the_outbox_disk_is_full(
    tmp_path: Path, broker: Broker, clip: Path, world_onnx: Path
) -> None:
    frames = 40
    config = tmp_path / "full.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "device_id": "fulldisk",
                "cameras": [
                    {"type": "file", "path": str(clip), "drop_policy": "block", "max_frames": frames}
                ],
                "model": {"path": str(world_onnx)},
                "mqtt": {
                    "host": "127.0.0.1",
                    "port": broker.port,
                    "outbox": {"path": str(tmp_path / "outbox.sqlite")},
                },
                "log": {"stats_interval_s": 1},
                "publish": {"detections": "all"},  # one message per frame, counted below
                "analytics": {"snapshots": {"dir": str(tmp_path / "snapshots")}},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_")}
    with subscribed(broker, "edge/fulldisk/#") as sub:
        proc = run_cli("run", "-c", str(config), timeout=300, env=env, preexec_fn=_limit_file_size)
        assert sub.wait_for(lambda m: len([1 for t, _, _ in m if t.endswith("/detections")]) >= frames, 30)
        time.sleep(0.5)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if "publishing without the disk outbox" in line]
    assert len(errors) == 1, out  # said once, not once per frame
    seqs = sorted(json.loads(p)["seq"] for p in sub.on("/detections"))
    assert seqs == list(range(frames)), "every frame published exactly once"
    health = [json.loads(p) for p in sub.on("/health")]
    assert health and health[-1]["outbox"]["write_errors"] > 0 and not health[-1]["outbox"]["writable"]
    with sqlite3.connect(tmp_path / "outbox.sqlite") as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
