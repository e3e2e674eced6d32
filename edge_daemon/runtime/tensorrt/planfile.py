"""Engine files: a plain TensorRT plan with the manifest beside it (what the build layer writes; what
trtexec and DeepStream load), a plain plan alone, or Ultralytics' ``.engine`` (length-prefixed JSON + plan).

No TensorRT import here: ``edge-daemon engine info`` reads these headers on machines without TensorRT.
"""

from __future__ import annotations

import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_daemon.errors import EngineError
from edge_daemon.files import read_manifest, sha256_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PlanFile:
    """A plan read from disk: its bytes, the model metadata it carries, and the precision it was built in."""

    plan: bytes
    metadata: dict[str, str]
    precision: str


def read_plan(path: Path, metadata: dict[str, str], precision: str | None = None) -> PlanFile:
    """Read ``path``: an Ultralytics ``.engine`` (its header gives metadata and precision), or a plain plan,
    checked against its manifest when it has one. ``metadata``/``precision``: what the caller knows from
    elsewhere (the ONNX model), used where the file says nothing. Raises EngineError on a checksum mismatch.
    """
    try:
        header, plan = split_ultralytics_engine(path.read_bytes())
    except OSError as exc:
        raise EngineError(f"{path}: cannot read the engine file: {exc}") from None
    own: dict[str, str] = {}
    if header is not None:
        own = {k: str(v) for k, v in header.items()}
        args = header.get("args") or {}
        precision = "int8" if args.get("int8") else "fp16" if args.get("half") else precision
        log.info("%s is an Ultralytics engine file; using its metadata header", path.name)
    else:
        manifest = read_manifest(path)
        if manifest is not None:
            if manifest.plan_sha256 and sha256_bytes(plan) != manifest.plan_sha256:
                raise EngineError(
                    f"{path.name}: its checksum does not match the manifest (corrupt or truncated)"
                )
            own = {k: str(manifest.data[k]) for k in ("names", "stride", "task") if manifest.data.get(k)}
            if manifest.data.get("input_hw"):
                own["imgsz"] = json.dumps(manifest.data["input_hw"])
            precision = manifest.precision or precision
    meta = {**metadata, **own} if own.get("names") else {**own, **metadata}
    return PlanFile(plan, meta, precision or "fp32")


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
