"""Crash-safe files: atomic writes, content hashes, and the JSON manifest that sits beside an artifact.

Every artifact (exported model, Q/DQ model, TensorRT plan, calibration cache, compiled kernel) is written
to a temporary file in the same directory, fsynced, renamed into place, and the directory fsynced, so a
crash (or SIGKILL) at any moment leaves either the old file, the complete new file, or a stray ``*.tmp``
that nothing ever loads. An artifact's manifest (``<name>.json``) is written after the artifact, and an
artifact without a manifest is never trusted, so a half-finished build cannot be mistaken for a finished
one. Foundation layer: imports nothing from the daemon, so every layer may use it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
