"""OpenVINO INT8: the FP32 ONNX model quantized by NNCF's post-training quantization, cached as IR.

``<cache_dir>/openvino-int8/<stem>-<exclude>-<digest12>.xml`` (+ ``.bin``) and a ``.xml.json`` manifest. NNCF
(OpenVINO's own quantizer, the one Ultralytics' ``int8=True`` OpenVINO export uses) places the quantizers
where OpenVINO's CPU plugin runs integer kernels, calibrates them on the calibration frames (min/max with
its range estimators, the "mixed" preset: symmetric weights, asymmetric activations) and corrects the
biases the quantization shifts. The nodes of the float set (:mod:`edge_daemon.build.quant.floatset`, the
same answer as every other INT8 route) are its ignored scope. The key: model sha256, input size,
calibration data sha256, the float set, NNCF's and OpenVINO's versions and the machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_daemon.build import calibration
from edge_daemon.build.artifacts import build_lock, sweep_stale_temp
from edge_daemon.build.quant.cache import cached, static_input
from edge_daemon.build.quant.floatset import ExcludeSet, excluded_nodes
from edge_daemon.errors import ConfigError
from edge_daemon.files import sha256_bytes, write_manifest
from edge_daemon.runtime.base import Artifact

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OvInt8Request:
    fp32: Path
    model_sha256: str
    model_stem: str
    cache_dir: Path
    calibration: Any  # config.CalibrationConfig
    camera: Any = None
    exclude: ExcludeSet | list[str] = "head-final"


def _checksum(xml: Path) -> str:
    """One sha256 over the IR's two files (the graph and its weights)."""
    both = sha256_bytes(xml.read_bytes()) + sha256_bytes(xml.with_suffix(".bin").read_bytes())
    return hashlib.sha256(both.encode()).hexdigest()


def ensure_ov_int8(
    req: OvInt8Request,
    status: calibration.StatusFn | None = None,
    imgsz: tuple[int, int] | None = None,
    cache_dir: Path | None = None,
) -> tuple[Artifact, dict[str, Any]]:
    """The INT8 IR for ``req``, from the cache or quantized now (first boot), as the artifact OpenVINO loads
    (with the ONNX model's metadata, which the IR lacks; ``imgsz`` and ``cache_dir`` for its compiled
    blobs as for any OpenVINO model), and its manifest."""
    try:
        import nncf
        import openvino as ov
    except ImportError:
        raise ConfigError(
            "engine.precision: int8 on OpenVINO needs NNCF (pip install 'edge-daemon[openvino]')"
        ) from None
    meta, h, w = static_input(req.fp32)
    odir = req.cache_dir / "openvino-int8"
    exclude_tag = req.exclude if isinstance(req.exclude, str) else "custom"
    with build_lock(odir / f".{req.model_stem}-{req.model_sha256[:12]}.lock"):
        sweep_stale_temp(odir)
        cset = calibration.calibration_set(req.calibration, req.camera, req.cache_dir, status)
        key = {
            "model_sha256": req.model_sha256,
            "input_hw": [h, w],
            "calib_data_sha256": cset.sha256,
            "exclude": req.exclude,
            "quantizer": f"nncf-{nncf.__version__}",
            "runtime": f"openvino-{ov.get_version()}",
            "machine": platform.machine(),
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
        xml = odir / f"{req.model_stem}-{exclude_tag}-{digest[:12]}.xml"
        artifact = Artifact(xml, imgsz, precision="int8", metadata=meta, cache_dir=cache_dir)
        data = cached(xml, digest, _checksum)
        if data is not None:
            return artifact, data
        if status is not None:
            status(f"quantizing {req.model_stem} to INT8 (OpenVINO, NNCF)")
        started = time.monotonic()
        frames = list(calibration.batches(cset, (h, w), 1))
        quantized, excluded = nncf_quantize(req.fp32, frames, req.exclude)
        odir.mkdir(parents=True, exist_ok=True)
        tmp = odir / f".{xml.stem}.{os.getpid()}.tmpdir"
        tmp.mkdir(exist_ok=True)
        try:
            ov.save_model(quantized, str(tmp / "model.xml"), compress_to_fp16=False)
            os.replace(tmp / "model.bin", xml.with_suffix(".bin"))  # weights first: the .xml names a whole IR
            os.replace(tmp / "model.xml", xml)
        finally:
            for leftover in tmp.glob("*"):
                leftover.unlink(missing_ok=True)
            tmp.rmdir()
        data = {
            "key": key,
            "key_digest": digest,
            "plan_sha256": _checksum(xml),
            "precision": "int8",
            "excluded_nodes": excluded,
            "calibration": {"images": len(cset), "source": cset.source, "batches": len(frames)},
            "names": meta.get("names", ""),
            "seconds": round(time.monotonic() - started, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_manifest(xml, data)
        log.info("OpenVINO INT8 model %s ready in %.0fs", xml.name, data["seconds"])
        return artifact, {"manifest_version": 1, **data}


def nncf_quantize(fp32: Path, frames: list[Any], exclude: ExcludeSet | list[str]) -> tuple[Any, list[str]]:
    """NNCF's post-training quantization of the ONNX model at ``fp32`` on ``frames`` (NCHW float32 batches),
    the float set ``exclude`` its ignored scope: (the quantized ``openvino.Model``, the ONNX nodes kept in
    float)."""
    import nncf
    import openvino as ov

    nncf.set_log_level(logging.WARNING)  # its INFO lines list every op it leaves unquantized, on stdout
    model = ov.Core().read_model(str(fp32))
    onnx_names = _onnx_node_names(fp32)
    keep = set(excluded_nodes(onnx_names, exclude))
    ignored = [op.get_friendly_name() for op in model.get_ordered_ops() if op.get_friendly_name() in keep]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(frames),
        preset=nncf.QuantizationPreset.MIXED,
        subset_size=len(frames),
        ignored_scope=nncf.IgnoredScope(names=ignored, validate=False),
    )
    return quantized, [n for n in onnx_names if n in keep]


def _onnx_node_names(path: Path) -> list[str]:
    """The ONNX graph's node names (the float set is named in them; OpenVINO keeps them as op names)."""
    import onnx

    return [n.name for n in onnx.load(str(path), load_external_data=False).graph.node]
