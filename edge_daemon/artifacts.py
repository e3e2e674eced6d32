"""On-disk artifacts: atomic writes, the build lock, quarantine, manifests, Ultralytics ``.engine`` files.

Every artifact is written to a temporary file in the same directory, fsynced, renamed into place, and the
directory fsynced, so a crash (or SIGKILL) at any moment leaves either the old file, the complete new file,
or a stray ``*.tmp`` that nothing ever loads. The plan is written before its manifest, and a plan without a
manifest is never loaded, so a half-finished build cannot be mistaken for a finished one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def atomic_write(path: Path, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


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


def manifest_path(plan: Path) -> Path:
    return plan.with_name(plan.name + ".json")


@dataclass(frozen=True)
class Manifest:
    """Sidecar of a plan: what it is, what it was built from, and its checksum."""

    data: dict[str, Any]

    @property
    def plan_sha256(self) -> str:
        return str(self.data.get("plan_sha256", ""))

    @property
    def key_digest(self) -> str:
        return str(self.data.get("key_digest", ""))

    @property
    def precision(self) -> str:
        return str(self.data.get("precision", ""))


def write_manifest(plan: Path, data: dict[str, Any]) -> None:
    body = {"manifest_version": MANIFEST_VERSION, **data}
    atomic_write(manifest_path(plan), (json.dumps(body, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def read_manifest(plan: Path) -> Manifest | None:
    """The plan's manifest, or None if missing or unreadable (then the plan is not trusted)."""
    try:
        data = json.loads(manifest_path(plan).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Manifest(data) if isinstance(data, dict) else None


def split_ultralytics_engine(blob: bytes) -> tuple[dict[str, Any] | None, bytes]:
    """Ultralytics writes ``int32 little-endian length + JSON metadata + plan``. Returns (metadata, plan).

    A plain plan (what this daemon writes; what trtexec and DeepStream load) returns (None, blob).
    """
    if len(blob) < 8:
        return None, blob
    (n,) = struct.unpack("<i", blob[:4])
    if 2 <= n <= min(len(blob) - 4, 1 << 20) and blob[4:5] == b"{":
        try:
            meta = json.loads(blob[4 : 4 + n].decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None, blob
        if isinstance(meta, dict):
            return meta, blob[4 + n :]
    return None, blob
