"""Threads named for the kernel, and the host CPU added up by kind of thread (what the streams bench
reports per stream)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from edge_daemon.threads import cpu_by_thread, kind, thread


def test_a_thread_carries_its_name_to_the_kernel() -> None:
    seen: list[str] = []

    def look() -> None:
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())

    t = thread(look, "camera-a-very-long-camera-name")
    t.start()
    t.join()
    assert t.name == "camera-a-very-long-camera-name" and t.daemon
    assert seen == ["camera-a-very-lo"[:15]]  # the kernel keeps 15 bytes


def test_kinds_of_threads() -> None:
    assert kind("camera-cam12") == "camera" and kind("camera-front door") == "camera"
    assert kind("decode-3") == "decode" and kind("publish") == "publish"
    assert kind("cuda00001400006") == "cuda" and kind("42") == "42"


def test_cpu_is_added_up_by_kind_over_the_live_threads() -> None:
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            sum(range(1000))

    def idle() -> None:
        stop.wait()

    busy = [thread(spin, f"camera-c{i}") for i in range(2)] + [thread(idle, "publish")]
    for t in busy:
        t.start()
    try:
        before = cpu_by_thread([os.getpid()])
        time.sleep(1.0)
        after = cpu_by_thread([os.getpid()])
    finally:
        stop.set()
        for t in busy:
            t.join()
    camera = after["camera"] - before.get("camera", 0.0)
    # Two spinning threads under one interpreter lock share about one core between them (and the lock).
    assert 0.3 < camera < 2.2, (before, after)
    assert after["publish"] - before.get("publish", 0.0) < 0.1
    assert cpu_by_thread([2**22 + 7]) == {}  # no such process: nothing, no error
