"""Threads the kernel knows by their Python names, and the host CPU each kind of thread used.

Python before 3.14 leaves every thread's kernel name as the process's, so ``top -H``, ``ps -L``, py-spy
and ``/proc/<pid>/task/*/comm`` cannot tell a camera's reader from the publish thread or from a thread of
CUDA's. :func:`thread` makes a thread that sets its kernel name (15 bytes, Linux's limit) when it starts;
:func:`cpu_by_thread` adds up the CPU time of the threads of some processes by that name, which is how
``edge-daemon bench --cameras`` reports where the host CPU per stream goes.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def set_os_name(name: str) -> None:
    """The calling thread's kernel name (Linux; elsewhere nothing)."""
    with contextlib.suppress(OSError):
        Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text(name[:15])


def thread(target: Callable[[], Any], name: str, daemon: bool = True) -> threading.Thread:
    """A thread named ``name`` for Python and for the kernel."""

    def run() -> None:
        set_os_name(name)
        target()

    return threading.Thread(target=run, name=name, daemon=daemon)


def kind(name: str) -> str:
    """What a thread does, from its kernel name: ``camera-cam12`` -> ``camera``, ``decode-3`` ->
    ``decode``; numbers at the end are dropped (CUDA's and the C libraries' own threads number theirs)."""
    if name.startswith("camera-"):
        return "camera"
    return re.sub(r"[-_ ]?\d+$", "", name) or name


def cpu_by_thread(pids: Iterable[int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by the live threads of ``pids``, added up by :func:`kind`.
    Threads that ended are not counted; a process that ended counts nothing. Linux only (else empty)."""
    seconds: dict[str, float] = {}
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*") if Path(f"/proc/{pid}/task").is_dir() else ():
            try:
                stat = (task / "stat").read_text()
                name = (task / "comm").read_text().strip()
            except OSError:  # the thread ended meanwhile
                continue
            fields = stat.rpartition(")")[2].split()  # after "pid (comm)": state is field 3
            used = (int(fields[11]) + int(fields[12])) / _TICK  # utime, stime: fields 14 and 15
            seconds[kind(name)] = seconds.get(kind(name), 0.0) + used
    return seconds
