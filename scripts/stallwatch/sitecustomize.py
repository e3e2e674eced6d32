"""Where a process stands when its interpreter lock is stuck: put this folder first on PYTHONPATH and set
STALL_MS (and STALL_DIR, default the working directory); every Python process started then, worker
processes included, runs a thread that wakes every 10 ms. When it cannot run for STALL_MS (another thread
holds the lock in C code, or the process is starved), faulthandler's own C thread, which needs no lock,
writes every thread's stack to STALL_DIR/stall-<pid>.txt; once the thread runs again it writes how
long it waited and from when (monotonic clock) below them.

    STALL_MS=150 STALL_DIR=/tmp/stalls PYTHONPATH=scripts/stallwatch:$PYTHONPATH edge-daemon bench ...

A diagnostic for benchmarks, not part of the daemon. The thread in C code holding the lock is the one
not waiting in ``take_gil``; faulthandler cannot mark it, so read the stacks together.
"""

from __future__ import annotations

import faulthandler
import os
import threading
import time

_MS = int(os.environ.get("STALL_MS", "0") or 0)


def _watch(ms: int) -> None:
    path = os.path.join(os.environ.get("STALL_DIR", "."), f"stall-{os.getpid()}.txt")
    out = open(path, "a", buffering=1)  # noqa: SIM115 - open for the life of the process
    while True:
        armed = time.monotonic()
        faulthandler.dump_traceback_later(ms / 1000.0, repeat=False, file=out)
        time.sleep(0.01)
        faulthandler.cancel_dump_traceback_later()
        waited = time.monotonic() - armed
        if waited > ms / 1000.0:  # the stacks above were written while this thread could not run
            out.write(f"--- stall from {armed:.3f} (monotonic) for {waited * 1000:.0f} ms\n")


if _MS > 0:
    threading.Thread(target=_watch, args=(_MS,), name="stallwatch", daemon=True).start()
