"""Build a serialized TensorRT plan from an ONNX model (TensorRT Python API, 8.6 and 10.x)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorrt as trt

from edge_daemon.build.quant.floatset import ExcludeSet, excluded_nodes
from edge_daemon.build.tensorrt.inspect import layer_summary
from edge_daemon.build.tensorrt.keys import BatchProfile
from edge_daemon.errors import EngineError
from edge_daemon.runtime.tensorrt import compat

log = logging.getLogger(__name__)

GIB = 1 << 30


@dataclass(frozen=True)
class BuildOptions:
    precision: str  # fp32 | fp16 | int8
    workspace_gib: float
    batch: BatchProfile
    input_hw: tuple[int, int] | None  # None: the model's own static size
    dla_core: int | None = None
    allow_fp16_fallback: bool = False
    calibration_batch: int = 2
    explicit: bool = False  # explicit INT8: a Q/DQ model; the Q/DQ nodes decide what runs in INT8
    keep_float: ExcludeSet | list[str] = "none"  # implicit INT8: layers pinned to FP16 (floatset)


@dataclass(frozen=True)
class BuildResult:
    plan: bytes
    timing_cache: bytes
    precision: str  # what was actually built
    input_name: str
    input_hw: tuple[int, int]
    seconds: float
    batch_min: int = 1
    layers: dict[str, Any] | None = None  # what the engine inspector reports (manifest "layers")


def build_plan(
    onnx_path: Path,
    opts: BuildOptions,
    logger: trt.ILogger,
    calibrator: Any = None,
    timing_cache: bytes = b"",
) -> BuildResult:
    """Parse ``onnx_path`` and build a plan; precision is never downgraded silently (allow_fp16_fallback)."""
    started = time.monotonic()
    compat.check_supported(opts.precision, explicit=opts.explicit)
    strongly_typed = opts.explicit and compat.strongly_typed_only()
    # TensorRT's own plugins (ROIAlign_TRT, ...): 8.6's ONNX parser registered them itself, 10.0 stopped.
    trt.init_libnvinfer_plugins(logger, "")
    builder = trt.Builder(logger)
    network = builder.create_network(compat.network_flags(strongly_typed=strongly_typed))
    parser = trt.OnnxParser(network, logger)
    parsed: bool = parser.parse(onnx_path.read_bytes())
    if not parsed:
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path.name}: {errors or 'unknown parser error'}")
    if network.num_inputs != 1:
        raise EngineError(f"{onnx_path.name}: expected one image input, found {network.num_inputs}")
    inp = network.get_input(0)
    shape = compat.dims(inp.shape)
    if len(shape) != 4:
        raise EngineError(f"{onnx_path.name}: input must be NCHW, got shape {shape}")
    input_hw = _input_hw(shape, opts.input_hw, onnx_path.name)
    batch = _batch_profile(shape[0], opts.batch, onnx_path.name)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_gib * GIB))
    profile = builder.create_optimization_profile()
    h, w = input_hw
    # A static batch fixes the profile's min too (TensorRT: min = opt = max = the static dimension), and
    # DLA runs static shapes only: its profile is the max batch and smaller batches are padded.
    batch_min = batch.max if shape[0] != -1 or opts.dla_core is not None else 1
    profile.set_shape(
        inp.name,
        compat.make_dims((batch_min, 3, h, w)),
        compat.make_dims((max(batch.opt, batch_min), 3, h, w)),
        compat.make_dims((batch.max, 3, h, w)),
    )
    config.add_optimization_profile(profile)

    precision = opts.precision if strongly_typed else _set_precision(builder, config, opts)
    if precision == "int8" and not opts.explicit:
        pinned = keep_in_float(network, opts.keep_float)
        if pinned:
            config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
            log.info("INT8 build: %d layers pinned to FP16 (%s)", pinned, _describe(opts.keep_float))
    if precision == "int8" and not opts.explicit:
        if calibrator is None:
            raise EngineError("INT8 build needs a calibrator")
        cal_batch = calibration_batch(shape[0], batch)
        cal_profile = builder.create_optimization_profile()
        cal_dims = compat.make_dims((cal_batch, 3, h, w))
        cal_profile.set_shape(inp.name, cal_dims, cal_dims, cal_dims)
        config.set_calibration_profile(cal_profile)
        config.int8_calibrator = calibrator
    if opts.dla_core is not None:
        if builder.num_DLA_cores <= opts.dla_core:
            raise EngineError(
                f"DLA core {opts.dla_core} requested but this device has {builder.num_DLA_cores}"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = opts.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # layers the DLA cannot run go to the GPU
        all_layers = [network.get_layer(i) for i in range(network.num_layers)]
        dla_layers = sum(bool(config.can_run_on_DLA(la)) for la in all_layers)
        if not dla_layers:
            raise EngineError(
                f"no layer of {onnx_path.name} can run on DLA core {opts.dla_core}: every one would fall "
                "back to the GPU under a -dla name; remove engine.dla_core"
            )
        log.info(
            "DLA core %d runs %d of %d layers; the rest fall back to the GPU",
            opts.dla_core,
            dla_layers,
            len(all_layers),
        )

    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # per-layer precision for the manifest
    cache = config.create_timing_cache(timing_cache)
    config.set_timing_cache(cache, ignore_mismatch=False)
    log.info(
        "building TensorRT %s engine for %s at %dx%d, batch %d..%d (this takes minutes on a Jetson)",
        precision,
        onnx_path.name,
        h,
        w,
        batch_min,
        batch.max,
    )
    # None on failure (the stubs do not say so; TensorRT does).
    serialized: trt.IHostMemory | None = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build {onnx_path.name}; its log above says why")
    new_cache: trt.ITimingCache | None = config.get_timing_cache()
    layers = layer_summary(bytes(serialized), logger)
    if opts.dla_core is not None:
        layers["dla_layers"] = dla_layers
    return BuildResult(
        plan=bytes(serialized),
        timing_cache=bytes(new_cache.serialize()) if new_cache is not None else b"",
        precision=precision,
        input_name=inp.name,
        input_hw=input_hw,
        seconds=time.monotonic() - started,
        batch_min=batch_min,
        layers=layers,
    )


def calibration_batch(dim: int, batch: BatchProfile) -> int:
    """The calibrator's batch: a static batch dimension as it is, else twice the profile's max."""
    return dim if dim != -1 else 2 * batch.max


def keep_in_float(network: Any, which: ExcludeSet | list[str]) -> int:
    """Pin the layers of the float set (:mod:`edge_daemon.build.quant.floatset`) and their float outputs
    to FP16; the number pinned. Binding only with OBEY_PRECISION_CONSTRAINTS, which the caller sets.
    Layers without a float output (index arithmetic of an end-to-end head's top-k, shape ops) are left
    to TensorRT: an FP16 constraint on integer work has no implementation to obey."""
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    keep = set(excluded_nodes([la.name for la in layers], which)) if which != "none" else set()
    floats = {trt.DataType.FLOAT, trt.DataType.HALF}

    def computes_float(layer: Any) -> bool:
        return any(layer.get_output(j).dtype in floats for j in range(layer.num_outputs))

    keep = {la.name for la in layers if la.name in keep and computes_float(la)}
    for layer in layers:
        if layer.name not in keep:
            continue
        layer.precision = trt.float16
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in floats:  # shape tensors stay integers
                layer.set_output_type(j, trt.float16)
    return sum(la.name in keep for la in layers)


def _describe(which: ExcludeSet | list[str]) -> str:
    return which if isinstance(which, str) else f"{len(which)} names or prefixes"


def _input_hw(shape: tuple[int, ...], wanted: tuple[int, int] | None, name: str) -> tuple[int, int]:
    h, w = shape[2], shape[3]
    if h > 0 and w > 0:
        if wanted is not None and (h, w) != tuple(wanted):
            raise EngineError(
                f"{name} has a fixed input of {h}x{w}; the config asks for {wanted[0]}x{wanted[1]}"
            )
        return h, w
    if wanted is None:
        raise EngineError(f"{name} has a dynamic input size; set model.imgsz")
    return wanted


def _batch_profile(dim: int, wanted: BatchProfile, name: str) -> BatchProfile:
    if dim == -1:
        return wanted
    if wanted.max != dim:
        raise EngineError(
            f"{name} has a fixed batch of {dim} but engine.max_batch is {wanted.max}; "
            "export the model with a dynamic batch (a .pt model is, when max_batch > 1) or set max_batch: 1"
        )
    return BatchProfile(dim, dim)


def _set_precision(builder: Any, config: Any, opts: BuildOptions) -> str:
    precision = opts.precision
    if precision == "int8" and not compat.platform_has_fast(builder, "int8"):
        if not opts.allow_fp16_fallback:
            raise EngineError(
                "this GPU has no fast INT8; refusing to build a slower engine silently. "
                "Set engine.precision: fp16, or engine.allow_fp16_fallback: true"
            )
        log.warning("THIS GPU HAS NO FAST INT8: building FP16 instead (engine.allow_fp16_fallback is true)")
        precision = "fp16"
    if precision == "fp16" and not compat.platform_has_fast(builder, "fp16"):
        raise EngineError("this GPU has no fast FP16; set engine.precision: fp32")
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)  # layers without INT8 kernels run FP16 rather than FP32
    elif precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    return precision
