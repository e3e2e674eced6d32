"""Build-time safety for artifacts: the build lock, sweeping what a killed build left, quarantine.

Writers hold :func:`build_lock` for the whole build, so two daemons started together build once and a
temporary file seen under the lock is stale. A cached artifact that is damaged, or that the runtime
refuses, is moved aside (:func:`quarantine`), never deleted, and rebuilt. Atomic writes and manifests
are in :mod:`edge_daemon.files`.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

from edge_daemon.files import manifest_path

log = logging.getLogger(__name__)


@contextlib.contextmanager
def build_lock(path: Path, timeout_s: float = 3600.0, poll_s: float = 0.5) -> Iterator[bool]:
    """Exclusive lock on ``path`` (flock: released by the kernel if the holder dies).

    Yields True if the lock was free at once, False if this process had to wait for another one, which
    then usually finished the very build this process wanted: the caller should look again before building.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        waited = False
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not waited:
                    log.info("another process is building this engine; waiting for it (%s)", path.name)
                waited = True
                if time.monotonic() > deadline:
                    raise TimeoutError(f"gave up waiting {timeout_s:.0f}s for build lock {path}") from None
                time.sleep(poll_s)
        try:
            yield not waited
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def sweep_stale_temp(directory: Path) -> int:
    """Remove ``.*.tmp`` files and ``.*.tmpdir`` / ``.qdq-*`` work folders left by a writer that was
    killed. Call only while holding the build lock (every writer holds it, so any temporary seen then is
    stale). Returns how many were removed."""
    removed = 0
    if directory.is_dir():
        for tmp in directory.glob(".*.tmp"):
            with contextlib.suppress(OSError):
                tmp.unlink()
                removed += 1
        for work in [*directory.glob(".qdq-*"), *directory.glob(".*.tmpdir")]:
            if work.is_dir():
                shutil.rmtree(work, ignore_errors=True)
                removed += 1
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted build in %s", removed, directory)
    return removed


def quarantine(path: Path, reason: str) -> Path | None:
    """Move ``path`` (and its manifest) aside as ``<name>.bad-<timestamp>``; log one line saying why."""
    if not path.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = path.with_name(f"{path.name}.bad-{stamp}")
    n = 1
    while target.exists():
        target = path.with_name(f"{path.name}.bad-{stamp}-{n}")
        n += 1
    os.replace(path, target)
    manifest = manifest_path(path)
    if manifest.exists():
        os.replace(manifest, manifest_path(target))
    log.warning("moved %s aside to %s: %s; it will be rebuilt", path.name, target.name, reason)
    return target
