"""The build half of the TensorRT engine life cycle: first boot builds, every later boot finds the plan.

Sequence (docs/engine.md has the timings and the layout; :func:`edge_daemon.app.boot.open_engine` runs it)::

    fingerprint device -> take the model's provisioning lock
      -> INT8: calibration set (persisted from an earlier boot, or captured now / read from images)
      -> key -> plan on disk with a manifest for this key?  hand it over (the runtime loads it in seconds,
         checking its checksum; if the runtime refuses it, it is moved aside and rebuilt here)
      -> otherwise: move stale plans aside, build (calibrating), write plan + manifest atomically

Layout under ``<cache_dir>/tensorrt/``: ``engines/<name>.plan`` + ``.plan.json`` manifest,
``calibration-cache/<digest>.cache``, ``timing-cache/<digest>.cache``, ``locks/``; calibration frames are
shared with the Q/DQ quantizer under ``<cache_dir>/calibration/<camera>-<n>/``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorrt as trt

from edge_daemon.build import calibration
from edge_daemon.build.artifacts import build_lock, quarantine, sweep_stale_temp
from edge_daemon.build.request import BuildRequest
from edge_daemon.build.tensorrt.calibrator import calibrator_class
from edge_daemon.build.tensorrt.keys import BatchProfile, DeviceInfo, EngineKey, read_l4t_release
from edge_daemon.build.tensorrt.plan import BuildOptions, BuildResult, build_plan, calibration_batch
from edge_daemon.errors import EngineError
from edge_daemon.files import atomic_write, read_manifest, sha256_bytes, write_manifest
from edge_daemon.gpu.memory import Memory
from edge_daemon.model.onnxinfo import read_onnx_info
from edge_daemon.model.tasks import is_end2end
from edge_daemon.runtime.base import Artifact
from edge_daemon.runtime.tensorrt import compat
from edge_daemon.runtime.tensorrt.logger import TrtLogger

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Store:
    root: Path

    @property
    def engines(self) -> Path:
        return self.root / "engines"

    def calibration_cache(self, key: EngineKey) -> Path:
        return self.root / "calibration-cache" / f"{key.calibration_digest()[:24]}.cache"

    def timing_cache(self, key: EngineKey) -> Path:
        return self.root / "timing-cache" / f"{key.device.short()}-{key.timing_digest()[:16]}.cache"

    def lock(self, name: str) -> Path:
        return self.root / "locks" / f"{name}.lock"


def probe_device(memory: Memory) -> DeviceInfo:
    name, cc, integrated = memory.device_identity()
    return DeviceInfo(trt.__version__, name, cc, read_l4t_release(), integrated)


def ensure_plan(config: Any, request: BuildRequest, refused: str | None = None) -> tuple[Artifact, bool]:
    """The plan for this device: ``(artifact, cached)``, building (and calibrating) it first if needed.

    ``cached`` is True when the plan came from the cache as it was: if the runtime then refuses it, call
    again with ``refused`` (the runtime's reason): the plan is moved aside and rebuilt. A plan the user
    supplied (``engine.plan``) is handed over as it is. ``request.memory`` must be set (the calibrator and
    the device fingerprint use it).
    """
    memory: Memory = request.memory
    meta, shape = read_onnx_info(request.onnx_path)
    if config.plan is not None:
        return Artifact(Path(config.plan), metadata=meta, memory=memory), False
    logger = TrtLogger()
    memory.activate()  # TensorRT builds for the device current on this thread (engine.device_index)
    device = probe_device(memory)
    explicit = config.precision == "int8" and compat.explicit_int8(config.int8_mode)
    compat.check_supported(config.precision, explicit=explicit)
    if config.precision == "int8" and not explicit and is_end2end(meta) and compat.implicit_int8_topk_fails():
        raise EngineError(
            f"TensorRT {trt.__version__} cannot build implicit INT8 for an end-to-end head (YOLO26/YOLOv10 "
            "top-k: the build dies with checkLinks::218, ultralytics#23841): set engine.int8_mode: explicit "
            "(Q/DQ), or engine.precision: fp16, or install TensorRT 10.7+ (as Ultralytics does on JetPack 6)"
        )
    if explicit and config.dla_core is not None:
        raise EngineError(
            f"DLA runs implicit INT8 only and TensorRT {trt.__version__} builds INT8 from Q/DQ models: "
            "use precision fp16 on the DLA, or remove engine.dla_core"
        )
    batch = BatchProfile(config.opt_batch or config.max_batch, config.max_batch)
    store = Store(request.cache_dir / "tensorrt")
    lock = store.lock(f"{request.model_stem}-{request.model_sha256[:12]}-{device.short()}")
    with build_lock(lock, config.build_lock_timeout_s):
        sweep_stale_temp(store.engines)
        cset = (
            calibration.calibration_set(config.calibration, request.camera, request.cache_dir, request.status)
            if config.precision == "int8"
            else None
        )
        if config.precision == "int8" and config.quantize_exclude == "auto":
            config = config.model_copy(update={"quantize_exclude": _searched_float_set(config, request)})
        key = EngineKey(
            model_sha256=request.model_sha256,
            input_hw=request.imgsz or _static_hw(shape),
            batch=batch,
            precision=config.precision,
            calib_algorithm=(
                f"qdq-{config.calibration.algorithm}" if explicit else config.calibration.algorithm
            )
            if cset
            else "",
            calib_data_sha256=cset.sha256 if cset else "",
            device=device,
            dla_core=config.dla_core,
            quantization=_quantization(config, explicit),
        )
        plan_path = store.engines / f"{key.engine_name(request.model_stem)}.plan"
        artifact = Artifact(plan_path, metadata=meta, memory=memory)
        if refused is not None:
            quarantine(plan_path, refused)
        elif _cached(plan_path, key):
            return artifact, True
        _quarantine_stale(store, request.model_stem, key)
        request.status(f"building {config.precision} TensorRT engine")
        if explicit:
            _build_explicit(config, request, store, key, plan_path, logger, meta)
        else:
            _build(config, request, store, key, plan_path, cset, memory, logger, meta, shape)
        return artifact, False


def _searched_float_set(config: Any, request: BuildRequest) -> list[str]:
    """``quantize_exclude: auto``: the float set the mixed-precision search measured (on the CPU, with
    ONNX Runtime, on the same calibration frames), shared by both INT8 routes."""
    from edge_daemon.build.quant.auto import float_set
    from edge_daemon.build.quant.search import targets_from

    req = _qdq_request(config, request, "cpu", "entropy", "auto", targets_from(config.quantize_search))
    return float_set(req, request.status)


def _qdq_request(
    config: Any, request: BuildRequest, fmt: Any, method: Any, exclude: Any, search: Any = None
) -> Any:
    """The Q/DQ model request for this build: the same model, calibration frames and cache."""
    from edge_daemon.build.quant.cache import QdqRequest

    return QdqRequest(
        request.onnx_path,
        request.model_sha256,
        request.model_stem,
        request.cache_dir,
        config.calibration,
        request.camera,
        fmt,
        method,
        exclude,
        search,
    )


def _quantization(config: Any, explicit: bool) -> str:
    """What decides which layers stay in float, for INT8 keys: the route and the float set."""
    if config.precision != "int8":
        return ""
    route = "explicit" if explicit else "implicit"
    return json.dumps({"exclude": config.quantize_exclude, "int8_mode": route}, sort_keys=True)


def _static_hw(shape: tuple[int | str, ...]) -> tuple[int, int]:
    if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int) and shape[2] > 0:
        return shape[2], shape[3]
    raise EngineError(f"the model's input size is dynamic ({shape}); set model.imgsz")


def _cached(plan_path: Path, key: EngineKey) -> bool:
    """Whether a plan for this key is on disk with its manifest. A plan without one (an interrupted build)
    or with one for another key is moved aside. The checksum is checked when the plan is read to load."""
    if not plan_path.exists():
        return False
    manifest = read_manifest(plan_path)
    if manifest is None:
        quarantine(plan_path, "it has no readable manifest (an interrupted build?)")
        return False
    if manifest.key_digest != key.digest():
        quarantine(plan_path, "its manifest was written for another key")
        return False
    return True


def _quarantine_stale(store: Store, model_stem: str, key: EngineKey) -> None:
    """Move aside plans of this model and config that were built for another device or TensorRT."""
    if not store.engines.is_dir():
        return
    for plan in sorted(store.engines.glob(f"{model_stem}-*.plan")):
        manifest = read_manifest(plan)
        old = manifest.data.get("key") if manifest else None
        if not isinstance(old, dict):
            continue
        mine = key.as_dict()
        same_config = all(
            old.get(k) == mine[k] for k in ("model_sha256", "input_hw", "precision", "dla_core")
        )
        if same_config and old.get("device") != mine["device"]:
            theirs = old.get("device") or {}
            quarantine(plan, f"built for {_describe(theirs)}; this device runs {_describe(mine['device'])}")


def _describe(device: Any) -> str:
    d = device if isinstance(device, dict) else {}
    l4t = f", L4T {d['l4t']}" if d.get("l4t") else ""
    return f"TensorRT {d.get('trt_version')} on {d.get('gpu_name')} (sm {d.get('compute_capability')}{l4t})"


def _build(
    config: Any,
    request: BuildRequest,
    store: Store,
    key: EngineKey,
    plan_path: Path,
    cset: calibration.CalibrationSet | None,
    memory: Memory,
    logger: Any,
    meta: dict[str, str],
    shape: tuple[int | str, ...],
) -> None:
    timing_path = store.timing_cache(key)
    timing = timing_path.read_bytes() if timing_path.is_file() else b""
    cal_batch = calibration_batch(
        shape[0] if shape and isinstance(shape[0], int) and shape[0] > 0 else -1, key.batch
    )
    opts = BuildOptions(
        precision=config.precision,
        workspace_gib=config.workspace_gib,
        batch=key.batch,
        input_hw=request.imgsz,
        dla_core=config.dla_core,
        allow_fp16_fallback=config.allow_fp16_fallback,
        calibration_batch=cal_batch,
        keep_float=config.quantize_exclude,
    )

    def make_calibrator() -> Any:
        if cset is None:
            return None
        h, w = key.input_hw if key.input_hw[0] > 0 else _static_hw(shape)
        return calibrator_class(config.calibration.algorithm)(
            calibration.batches(cset, (h, w), cal_batch),
            len(cset) // cal_batch,
            (cal_batch, 3, h, w),
            store.calibration_cache(key),
            memory,
            request.status,
        )

    calibrator = make_calibrator()
    try:
        try:
            result = build_plan(request.onnx_path, opts, logger, calibrator, timing)
        except EngineError:
            if calibrator is None or not calibrator.cache_read:
                raise
            # TensorRT rejected the stored calibration cache: move it aside and calibrate from the data.
            quarantine(calibrator.cache_path, "TensorRT rejected this INT8 calibration cache")
            calibrator.close()
            calibrator = make_calibrator()
            result = build_plan(request.onnx_path, opts, logger, calibrator, timing)
        _check_calibration(calibrator, len(cset) // cal_batch if cset else 0, result.precision)
    finally:
        if calibrator is not None:
            calibrator.close()
    _write(plan_path, result, key, config, request, meta, cset, timing_path)


def _check_calibration(calibrator: Any, planned: int, precision: str) -> None:
    """TensorRT takes an exception in the calibrator for the end of the data and builds on: a plan
    calibrated on fewer batches than planned must not be cached under the full-data key, nor its cache."""
    if calibrator is None or precision != "int8" or calibrator.cache_read:
        return
    error = calibrator.error
    if error is None and calibrator.batches_used >= planned:
        return
    if calibrator.cache_written:
        calibrator.cache_path.unlink(missing_ok=True)
    why = f" (stopped by {type(error).__name__}: {error})" if error is not None else ""
    raise EngineError(
        f"INT8 calibration used {calibrator.batches_used} of {planned} batches{why}; "
        "nothing was built or cached"
    )


def _write(
    plan_path: Path,
    result: BuildResult,
    key: EngineKey,
    config: Any,
    request: BuildRequest,
    meta: dict[str, str],
    cset: calibration.CalibrationSet | None,
    timing_path: Path,
    extra: dict[str, Any] | None = None,
) -> None:
    """Plan first, manifest last (a plan without its manifest is never loaded), then the timing cache."""
    atomic_write(plan_path, result.plan)
    write_manifest(
        plan_path,
        {
            "key": key.as_dict(),
            "key_digest": key.digest(),
            "plan_sha256": sha256_bytes(result.plan),
            "precision": result.precision,
            "precision_requested": config.precision,
            "input_name": result.input_name,
            "input_hw": list(result.input_hw),
            "batch": {"min": result.batch_min, "opt": key.batch.opt, "max": key.batch.max},
            "names": meta.get("names", ""),
            "stride": meta.get("stride", ""),
            "task": meta.get("task", "detect"),
            "model": request.model_stem,
            "onnx": request.onnx_path.name,
            "build_seconds": round(result.seconds, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "calibration": {"algorithm": key.calib_algorithm, "images": len(cset), "source": cset.source}
            if cset
            else None,
            "float_set": config.quantize_exclude if config.precision == "int8" else None,
            "layers": result.layers or {},
            **(extra or {}),
        },
    )
    if result.timing_cache:
        atomic_write(timing_path, result.timing_cache)
    log.info("built %s in %.0fs", plan_path.name, result.seconds)


def _build_explicit(
    config: Any,
    request: BuildRequest,
    store: Store,
    key: EngineKey,
    plan_path: Path,
    logger: Any,
    meta: dict[str, str],
) -> None:
    """Explicit INT8: a strongly typed network from the TensorRT-format Q/DQ model (symmetric int8)."""
    from edge_daemon.build.quant.cache import ensure_qdq
    from edge_daemon.build.quant.qdq import Method

    # Symmetric ranges by least squared error: ONNX Runtime's entropy calibrator keeps max|x| here, which
    # measured a third more output error (docs/benchmarks.md); minmax stays minmax.
    method: Method = "minmax" if config.calibration.algorithm == "minmax" else "mse"
    qdq, qmanifest = ensure_qdq(
        _qdq_request(config, request, "tensorrt", method, config.quantize_exclude),
        request.status,
    )
    if compat.strongly_typed_only():  # TensorRT 11: no FP16 flag, so the graph itself must be FP16
        from edge_daemon.build.quant.fp16 import float16_around_qdq

        qdq = float16_around_qdq(qdq)
    timing_path = store.timing_cache(key)
    opts = BuildOptions(
        precision="int8",
        workspace_gib=config.workspace_gib,
        batch=key.batch,
        input_hw=request.imgsz,
        dla_core=config.dla_core,
        explicit=True,
    )
    result = build_plan(qdq, opts, logger, None, timing_path.read_bytes() if timing_path.is_file() else b"")
    _write(
        plan_path,
        result,
        key,
        config,
        request,
        meta,
        None,
        timing_path,
        extra={"qdq_model": qdq.name, "excluded_nodes": len(qmanifest.get("excluded_nodes", []))},
    )
