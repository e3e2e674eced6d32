"""Q/DQ models cached per device, with the engine's key rules and atomic writes.

``<cache_dir>/qdq/<stem>-<format>-<exclude>-<digest12>.onnx`` plus a ``.json`` manifest. The key: model
sha256, input size, calibration data sha256, calibration method, the excluded-node set, the format, the
ONNX Runtime version and the machine. A changed calibration set (new frames) or any other part gives a new
key, so a stale Q/DQ model is never used; one that fails its checksum is moved aside and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_daemon.build import calibration
from edge_daemon.build.artifacts import build_lock, quarantine, sweep_stale_temp
from edge_daemon.build.quant.floatset import ExcludeSet
from edge_daemon.build.quant.qdq import Format, Method, quantize
from edge_daemon.build.quant.search import SearchTargets
from edge_daemon.errors import ModelError
from edge_daemon.files import read_manifest, sha256_bytes, write_manifest
from edge_daemon.model.onnxinfo import read_onnx_info

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QdqRequest:
    fp32: Path
    model_sha256: str
    model_stem: str
    cache_dir: Path
    calibration: Any  # config.CalibrationConfig
    camera: Any = None
    fmt: Format = "cpu"
    method: Method = "entropy"
    exclude: ExcludeSet | Literal["auto"] | list[str] = "head-final+attn"
    search: SearchTargets | None = None  # exclude "auto": what the mixed-precision search aims for


def _runtime_tag() -> str:
    import onnxruntime

    return f"onnxruntime-{onnxruntime.__version__}"


def cached(
    path: Path, digest: str, checksum: Callable[[Path], str] = lambda p: sha256_bytes(p.read_bytes())
) -> dict[str, Any] | None:
    """The manifest data of the quantized model at ``path`` if it was made for ``digest`` and its
    ``checksum`` holds; a file that fails either is moved aside (None)."""
    if not path.exists():
        return None
    manifest = read_manifest(path)
    if manifest is None or manifest.key_digest != digest:
        quarantine(path, "its manifest is missing or was written for another key")
    else:
        try:
            ok = checksum(path) == manifest.plan_sha256
        except OSError:  # a part of it is missing (an IR's .bin)
            ok = False
        if ok:
            return manifest.data
        quarantine(path, "its checksum does not match the manifest (corrupt, truncated or incomplete)")
    return None


def static_input(path: Path) -> tuple[dict[str, str], int, int]:
    """(metadata, H, W) of an ONNX model whose input size is fixed, as quantization needs."""
    meta, shape = read_onnx_info(path)
    if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape):
        raise ModelError(f"{path.name}: INT8 quantization needs a static input shape, got {shape}")
    return meta, int(shape[2]), int(shape[3])


def ensure_qdq(req: QdqRequest, status: calibration.StatusFn | None = None) -> tuple[Path, dict[str, Any]]:
    """The Q/DQ model for ``req``: from the cache, or quantized now (first boot). Returns (path, manifest)."""
    if req.exclude == "auto":
        from edge_daemon.build.quant.auto import ensure_auto

        return ensure_auto(req, status)
    meta, h, w = static_input(req.fp32)
    qdir = req.cache_dir / "qdq"
    exclude_tag = req.exclude if isinstance(req.exclude, str) else "custom"
    with build_lock(qdir / f".{req.model_stem}-{req.model_sha256[:12]}.lock"):
        sweep_stale_temp(qdir)
        cset = calibration.calibration_set(req.calibration, req.camera, req.cache_dir, status)
        key = {
            "model_sha256": req.model_sha256,
            "input_hw": [h, w],
            "calib_data_sha256": cset.sha256,
            "calib_method": req.method,
            "exclude": req.exclude,
            "format": req.fmt,
            "runtime": _runtime_tag(),
            "machine": platform.machine(),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        path = qdir / f"{req.model_stem}-{req.fmt}-{exclude_tag}-{digest[:12]}.onnx"
        data = cached(path, digest)
        if data is not None:
            return path, data
        if status is not None:
            status(f"quantizing {req.model_stem} to INT8 ({req.fmt})")
        started = time.monotonic()
        qdir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=qdir)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            result = quantize(
                req.fp32, tmp, calibration.batches(cset, (h, w), 1), req.fmt, req.method, req.exclude
            )
            with tmp.open("rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        data = {
            "key": key,
            "key_digest": digest,
            "plan_sha256": sha256_bytes(path.read_bytes()),
            "precision": "int8",
            "excluded_nodes": result.excluded,
            "calibration": {
                "images": len(cset),
                "source": cset.source,
                "batches": result.calibration_batches,
            },
            "names": meta.get("names", ""),
            "seconds": round(time.monotonic() - started, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_manifest(path, data)
        log.info("INT8 model %s ready in %.0fs", path.name, data["seconds"])
        return path, {"manifest_version": 1, **data}
