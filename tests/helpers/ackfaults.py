"""Crash rounds for the outbox acknowledgement tests and the fault-injection script: a publishing child
(``tests.helpers.publisher_child``) SIGKILLed again and again while the broker withholds acknowledgements,
an independent subscriber counting what arrives."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import ROOT, start_mosquitto
from tests.helpers.collector import Collector


def wait_until(predicate, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` every 20 ms until it is true or ``timeout`` passed; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


def _child(port: int, outbox: Path, first: int, count: int, rate: float, wrap: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.helpers.publisher_child", str(port), str(outbox)]
        + [str(v) for v in (first, count, rate, wrap)],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _read(proc: subprocess.Popen[str], produced: list[int], wraps: list[int]) -> threading.Thread:
    def run() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("p "):
                produced.append(int(line.split()[1]))
            elif line.startswith("w"):
                wraps.append(len(produced))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def kill_rounds(
    tmp_path: Path,
    rounds: int,
    wrap: int,
    rate: float,
    seed: int,
    min_messages: int = 0,
    life_s: tuple[float, float] = (1.0, 2.5),
) -> tuple[set[int], set[int], int]:
    """Publish through at least ``rounds`` daemon lives (more until ``min_messages`` were produced), each
    SIGKILLed after a random ``life_s`` while the broker holds back its acknowledgements (SIGSTOP), then
    one clean life. Returns (produced, received, how often the message ids wrapped)."""
    rng = random.Random(seed)
    broker = start_mosquitto(tmp_path, extra="max_queued_messages 0\n")
    collector = Collector(broker.port, "edge/child/+/detections", client_id=f"collector-{seed}")
    outbox = tmp_path / "outbox.sqlite"
    produced: list[int] = []
    wraps: list[int] = []
    try:
        lives = 0
        while lives < rounds or len(produced) < min_messages:
            lives += 1
            proc = _child(broker.port, outbox, len(produced) and max(produced) + 1, 10**9, rate, wrap)
            reader = _read(proc, produced, wraps)
            time.sleep(rng.uniform(*life_s))
            broker.proc.send_signal(signal.SIGSTOP)
            time.sleep(rng.uniform(0.1, 0.4))
            proc.kill()
            proc.wait(10)
            reader.join(10)
            broker.proc.send_signal(signal.SIGCONT)
        proc = _child(broker.port, outbox, max(produced) + 1, 50, rate, wrap)
        reader = _read(proc, produced, wraps)
        assert proc.wait(120) == 0
        reader.join(10)
        want = set(produced)
        wait_until(lambda: want <= set(collector.seqs), 60)
        return want, set(collector.seqs), len(wraps)
    finally:
        collector.stop()
        broker.proc.send_signal(signal.SIGCONT)
        broker.proc.terminate()
        broker.proc.wait(10)
