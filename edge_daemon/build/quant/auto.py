"""The ``auto`` float set: the mixed-precision search run once per model and calibration set, cached.

``ensure_auto`` makes the naive (all-quantized) Q/DQ model through the ordinary cache, searches
(:mod:`edge_daemon.build.quant.search`) on the calibration frames, and writes the chosen model (the naive
one with the chosen groups back in float: no second calibration) with a manifest that records the float
set, the search's steps and its sensitivity table. TensorRT's routes read the float set from that manifest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from edge_daemon.build import calibration
from edge_daemon.build.artifacts import build_lock
from edge_daemon.build.quant.search import SearchTargets, restore_float, search
from edge_daemon.errors import ModelError
from edge_daemon.files import atomic_write, sha256_bytes, write_manifest
from edge_daemon.model.info import parse_names
from edge_daemon.model.onnxinfo import read_onnx_info

log = logging.getLogger(__name__)


def ensure_auto(req: Any, status: calibration.StatusFn | None = None) -> tuple[Path, dict[str, Any]]:
    """``req`` (a QdqRequest with ``exclude="auto"``): the searched Q/DQ model and its manifest."""
    import onnx

    from edge_daemon.build.quant.cache import cached, ensure_qdq

    naive_path, naive = ensure_qdq(dataclasses.replace(req, exclude="none"), status)
    targets: SearchTargets = req.search or SearchTargets()
    key = {"naive": naive["key_digest"], "search": dataclasses.asdict(targets), "version": 3}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    path = naive_path.with_name(f"{req.model_stem}-{req.fmt}-auto-{digest[:12]}.onnx")
    with build_lock(path.with_name(f".{path.stem}.lock")):
        data = cached(path, digest)
        if data is not None:
            return path, data
        meta, shape = read_onnx_info(req.fp32)
        h, w = int(shape[2]), int(shape[3])
        cset = calibration.calibration_set(req.calibration, req.camera, req.cache_dir, status)
        frames = list(calibration.batches(cset, (h, w), 1))
        if len(frames) < 4:
            raise ModelError("the mixed-precision search needs at least 4 calibration frames")
        step = max(1, len(frames) // targets.frames)
        frames = frames[::step][: targets.frames]
        nc = len(parse_names(meta.get("names"))) or 80
        started = time.monotonic()
        if status is not None:
            status(f"searching the layers {req.model_stem} keeps in float")
        fp32, naive_model = onnx.load(str(req.fp32)), onnx.load(str(naive_path))
        result = search(fp32, naive_model, frames, nc, targets, progress=status)
        chosen = restore_float(naive_model, fp32, set(result.float_set))
        atomic_write(path, chosen.SerializeToString())
        data = {
            "key": key,
            "key_digest": digest,
            "plan_sha256": sha256_bytes(path.read_bytes()),
            "precision": "int8",
            "excluded_nodes": result.float_set,
            "float_set": result.float_set,
            "search": result.as_dict(),
            "calibration": {"images": len(cset), "source": cset.source, "search_frames": len(frames)},
            "names": meta.get("names", ""),
            "seconds": round(time.monotonic() - started, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_manifest(path, data)
        log.info(
            "mixed-precision search chose %d float groups in %.0fs: %s",
            len(result.groups),
            data["seconds"],
            ", ".join(result.groups) or "(none)",
        )
        return path, {"manifest_version": 1, **data}


def float_set(req: Any, status: calibration.StatusFn | None = None) -> list[str]:
    """The searched float set (node names) for ``req``'s model and calibration frames."""
    _, manifest = ensure_auto(dataclasses.replace(req, exclude="auto"), status)
    return list(manifest["float_set"])
