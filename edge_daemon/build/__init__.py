"""Build-time: everything that makes an artifact before serving, and its caches.

``.pt`` -> ONNX/TorchScript export (:mod:`.export`), Q/DQ INT8 quantization (:mod:`.quant`), calibration
data (:mod:`.calibration`), TensorRT plans with their keys, calibrator and build (:mod:`.tensorrt`), and the
lock, sweep and quarantine every writer uses (:mod:`.artifacts`). :func:`prepare` decides what the chosen
engine needs and builds it if the cache does not hold it; the engine (:mod:`edge_daemon.runtime`) then
only loads the artifact it is handed. Backends' build modules are imported only when chosen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edge_daemon.build.request import BuildRequest
from edge_daemon.runtime.base import Artifact

__all__ = ["BuildRequest", "prepare"]


def prepare(config: Any, request: BuildRequest, refused: str | None = None) -> tuple[Artifact, bool]:
    """The artifact the engine of ``config`` loads: ``(artifact, cached)``, built now if needed.

    ``cached``: the artifact came from the cache unchecked by a load; if the engine refuses it, call again
    with ``refused`` (the engine's reason) to move it aside and build it anew. TensorRT: a plan for this
    device (built and calibrated on first boot). ONNX Runtime ``int8``: the CPU-format Q/DQ model.
    OpenVINO ``int8``: the IR NNCF quantized. Every other case: the model file as it is (OpenVINO: with
    the folder its compiled blobs are cached in).
    """
    if config.backend == "tensorrt":
        from edge_daemon.build.tensorrt.provision import ensure_plan

        return ensure_plan(config, request, refused)
    if config.backend == "onnxruntime" and config.precision == "int8":
        from edge_daemon.build.quant.cache import QdqRequest, ensure_qdq
        from edge_daemon.build.quant.search import targets_from

        path, _ = ensure_qdq(
            QdqRequest(
                fp32=request.onnx_path,
                model_sha256=request.model_sha256 or "unknown",
                model_stem=request.model_stem,
                cache_dir=request.cache_dir,
                calibration=config.calibration,
                camera=request.camera,
                fmt="cpu",
                method=config.quantize.method,
                exclude=config.quantize.exclude,
                search=targets_from(config.quantize.search),
            ),
            request.status,
        )
        return Artifact(path, request.imgsz, precision="int8"), False
    if config.backend == "openvino":
        cache = openvino_cache_dir(config, request)
        if config.precision == "int8":
            return _openvino_int8(config, request, cache), False
        return Artifact(request.onnx_path, request.imgsz, cache_dir=cache), False
    return Artifact(request.onnx_path, request.imgsz, memory=request.memory), False


def _openvino_int8(config: Any, request: BuildRequest, cache: Path | None) -> Artifact:
    """The NNCF-quantized IR (OpenVINO ``int8``)."""
    from edge_daemon.build.quant.openvino import OvInt8Request, ensure_ov_int8
    from edge_daemon.errors import ConfigError

    if request.onnx_path.suffix.lower() != ".onnx":
        raise ConfigError(
            f"engine.precision: int8 on OpenVINO quantizes an ONNX model or .pt weights, not "
            f"{request.onnx_path.name}"
        )
    artifact, _ = ensure_ov_int8(
        OvInt8Request(
            fp32=request.onnx_path,
            model_sha256=request.model_sha256 or "unknown",
            model_stem=request.model_stem,
            cache_dir=request.cache_dir,
            calibration=config.calibration,
            camera=request.camera,
            exclude=config.quantize.exclude,
        ),
        request.status,
        request.imgsz,
        cache,
    )
    return artifact


def openvino_cache_dir(config: Any, request: BuildRequest) -> Path | None:
    """``<cache_dir>/openvino/<stem>-<sha16>[-HxW]-<precision>-<device>``: OpenVINO keys its blobs within
    by the model's own hash, the compile properties and its version; the folder keeps one model's blobs
    together, named like the other artifacts."""
    if not config.cache:
        return None
    size = f"-{request.imgsz[0]}x{request.imgsz[1]}" if request.imgsz else ""
    sha = (request.model_sha256 or "unknown")[:16]
    name = f"{request.model_stem}-{sha}{size}-{config.precision}-{config.device.lower()}"
    return request.cache_dir / "openvino" / name
