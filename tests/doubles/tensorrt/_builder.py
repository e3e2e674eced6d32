"""The double's builder: checks what TensorRT checks, calibrates per tensor, plans each layer's precision."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import onnx

from . import (
    DEVICE,
    STATS,
    BuilderFlag,
    DeviceType,
    ILogger,
    MemoryPoolType,
    NetworkDefinitionCreationFlag,
    ProfilingVerbosity,
    _rules,
    as_dims,
    swallowed,
)
from ._memory import read
from ._network import INetworkDefinition
from ._quant import cache_bytes, calibrate, parse_cache, qdq_inputs

MAGIC = b"TRTDOUBLE1\n"


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[list[int], list[int], list[int]]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
        lo, mid, hi = as_dims(min), as_dims(opt), as_dims(max)
        if (
            not (len(lo) == len(mid) == len(hi))
            or any(a > b for a, b in zip(lo, mid, strict=True))
            or any(a > b for a, b in zip(mid, hi, strict=True))
        ):
            raise ValueError(f"profile for {input}: need min <= opt <= max, got {lo} {mid} {hi}")
        self.shapes[input] = (lo, mid, hi)


class ITimingCache:
    def __init__(self, data: bytes) -> None:
        self.entries: dict[str, Any] = json.loads(data) if data else {}

    def serialize(self) -> bytes:
        return json.dumps(self.entries, sort_keys=True).encode()


class IBuilderConfig:
    def __init__(self) -> None:
        self.flags: set[BuilderFlag] = set()
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self.calibration_profile: IOptimizationProfile | None = None
        self.int8_calibrator: Any = None
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1
        self.profiling_verbosity = ProfilingVerbosity.LAYER_NAMES_ONLY
        self._timing: ITimingCache | None = None

    def set_flag(self, flag: BuilderFlag) -> None:
        if _rules.major() >= 11 and flag in {BuilderFlag.INT8, BuilderFlag.FP16}:
            raise AttributeError(f"TensorRT 11 has no BuilderFlag.{flag.name} (implicit precision removed)")
        self.flags.add(flag)

    def get_flag(self, flag: BuilderFlag) -> bool:
        return flag in self.flags

    def can_run_on_DLA(self, layer: Any) -> bool:
        """Whether ``layer`` can run on a DLA core under this config (type and precision flags)."""
        reduced = BuilderFlag.FP16 in self.flags or BuilderFlag.INT8 in self.flags
        return layer._op in _rules.DLA_OPS and reduced

    def get_device_type(self, layer: Any) -> DeviceType:
        return self.default_device_type

    def set_memory_pool_limit(self, pool: MemoryPoolType, size: int) -> None:
        if size <= 0:
            raise ValueError("memory pool limit must be positive")
        self.pools[pool] = size

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        self.calibration_profile = profile
        return True

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache:
        return ITimingCache(bytes(serialized_timing_cache))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        self._timing = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._timing


class Builder:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger
        self.device = _rules.state().current_device()

    @property
    def platform_has_fast_int8(self) -> bool:
        if _rules.major() >= 11:
            raise AttributeError("TensorRT 11 removed platform_has_fast_int8")
        return bool(_rules.state().FAST_INT8)

    @property
    def platform_has_fast_fp16(self) -> bool:
        if _rules.major() >= 11:
            raise AttributeError("TensorRT 11 removed platform_has_fast_fp16")
        return bool(_rules.state().FAST_FP16)

    @property
    def num_DLA_cores(self) -> int:
        return int(_rules.state().NUM_DLA_CORES)

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        major = _rules.major()
        if major < 10 and not flags & (1 << NetworkDefinitionCreationFlag.EXPLICIT_BATCH):
            raise RuntimeError("TensorRT 8.x: ONNX networks need the EXPLICIT_BATCH flag")
        if major < 10 and flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED):
            raise AttributeError("TensorRT 8.x has no NetworkDefinitionCreationFlag.STRONGLY_TYPED")
        return INetworkDefinition(flags)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig()

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def _error(self, msg: str) -> None:
        from . import _Severity

        self.logger.log(_Severity.ERROR, msg)

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
        try:
            return self._build(network, config)
        except ValueError as exc:  # TensorRT logs the reason and returns None
            self._error(str(exc))
            return None

    def _build(self, network: INetworkDefinition, config: IBuilderConfig) -> bytes | None:
        if network.onnx is None:
            raise ValueError("network is empty")
        inp = network.inputs[0]
        prof = config.profiles[0].shapes.get(inp.name) if config.profiles else None
        if prof is None:
            if any(d == -1 for d in inp.shape):
                raise ValueError(
                    f"Network has dynamic or shape inputs, but no optimization profile for {inp.name}"
                )
            static = list(inp.shape)
            prof = (static, static, static)
        for i, d in enumerate(inp.shape):
            if d != -1 and any(s[i] != d for s in prof):
                raise ValueError(
                    f"{inp.name}: optimization profile {prof} contradicts the static dimension {i} = {d}"
                )
        strongly_typed = bool(network.flags & (1 << NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        int8, fp16 = BuilderFlag.INT8 in config.flags, BuilderFlag.FP16 in config.flags
        if strongly_typed and (int8 or fp16):
            raise ValueError("precision builder flags are not allowed on a strongly typed network")
        delay = float(os.environ.get("TRT_DOUBLE_BUILD_DELAY", "0") or 0)
        if delay:
            time.sleep(delay)
        model = onnx.load_from_string(network.onnx)
        qdq = qdq_inputs(model)
        scales: dict[str, float] = {}
        tag = ""
        if int8 and not qdq:  # implicit quantization: a calibrator supplies the scales
            if config.int8_calibrator is None:
                raise ValueError("INT8 requested but no calibrator set")
            _rules.check_implicit_int8_topk(network.layers)
            if config.default_device_type == DeviceType.DLA:
                _rules.check_dla(config, [], [], prof)  # DLA refusals come before calibration
            tag, scales = self._calibrate(network, config)
        precisions, warnings = _rules.plan_precisions(
            network.layers, config.flags, scales, strongly_typed, qdq
        )
        for w in warnings:
            from . import _Severity

            self.logger.log(_Severity.WARNING, w)
        devices = ["gpu"] * len(precisions)
        if config.default_device_type == DeviceType.DLA:
            devices = _rules.check_dla(config, precisions, network.layers, prof)
        if config._timing is not None:
            config._timing.entries[f"{DEVICE['compute_capability']}:{len(network.onnx)}"] = "timed"
        header = {
            "version": _rules.state().__version__,
            "device": dict(DEVICE),
            "input": inp.name,
            "outputs": [o.name for o in network.outputs],
            "profile": prof,
            "scales": scales,
            "calibration": tag,
            "strongly_typed": strongly_typed,
            "detailed": config.profiling_verbosity == ProfilingVerbosity.DETAILED,
            "layers": [
                {
                    "name": layer.name,
                    "type": layer.type,
                    "precision": p,
                    "device": d,
                    "outputs": [o.name for o in layer._outputs],
                }
                for layer, p, d in zip(network.layers, precisions, devices, strict=True)
            ],
        }
        STATS["builds"] += 1
        counter = os.environ.get("TRT_DOUBLE_COUNTER")
        if counter:
            with open(counter, "a", encoding="utf-8") as fh:
                fh.write(f"build {os.getpid()}\n")
        head = json.dumps(header).encode()
        return MAGIC + len(head).to_bytes(4, "little") + head + network.onnx

    def _calibrate(self, network: INetworkDefinition, config: IBuilderConfig) -> tuple[str, dict[str, float]]:
        """Read the cache or drive the calibrator; returns (cache header tag, scales per tensor)."""
        cal = config.int8_calibrator
        algo = getattr(cal, "_algo", "EntropyCalibration2")
        tag = f"TRT-{_rules.state().__version__.replace('.', '')[:4]}-{algo}"
        cache = swallowed(cal.read_calibration_cache)
        if cache:
            scales = parse_cache(bytes(cache), tag)
            if scales is None:
                raise ValueError(
                    "Calibration table does not match calibrator algorithm type or TensorRT version"
                )
            return tag, scales
        inp = network.inputs[0]
        cal_prof = config.calibration_profile or (config.profiles[0] if config.profiles else None)
        prof = cal_prof.shapes.get(inp.name) if cal_prof else None
        shape = prof[2] if prof else list(inp.shape)
        if cal.get_batch_size() != shape[0]:
            raise ValueError(
                f"calibrator batch size {cal.get_batch_size()} does not match the profile {shape}"
            )

        def next_batch() -> Any:
            ptrs = swallowed(cal.get_batch, [inp.name], default=[])
            if not ptrs:
                return None
            STATS["calibration_batches"] += 1
            return read(int(ptrs[0]), shape, 0)

        assert network.onnx is not None
        scales, used = calibrate(network.onnx, inp.name, next_batch, algo)
        if not used or not scales:
            raise ValueError("calibration produced no data")
        swallowed(cal.write_calibration_cache, cache_bytes(tag, scales))
        return tag, scales
