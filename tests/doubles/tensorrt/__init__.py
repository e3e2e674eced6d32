"""A test double of the ``tensorrt`` Python module (the subset edge-daemon uses), version by version.

No TensorRT runtime can be installed where this project is developed and tested, so the daemon's TensorRT
code runs against this double. It is never importable by the daemon: it lives in tests/doubles, which only
the test suite puts on sys.path. README.md beside this file lists every behaviour with its source (the
TensorRT developer guide, API reference and migration guides). In short:

- versions: ``__version__`` (tests set it; ``$TRT_DOUBLE_VERSION`` for a fresh process) selects 8.6,
  10.x or 11.x rules: EXPLICIT_BATCH on 8.x, no STRONGLY_TYPED before 10, no calibrators and no INT8/FP16
  builder flags on 11, plugin-backed ONNX ops per version;
- the ONNX parser really parses (ONNX Runtime loads the model) and makes one layer per ONNX node, named
  after it; ops imported as plugins fail to parse until ``init_libnvinfer_plugins`` was called;
- the builder checks profiles against static dimensions, DLA rules, calibrators and precision
  constraints, calibrates per tensor exactly as the bindings drive a calibrator (exceptions swallowed),
  and simulates each layer's precision on the graph (``_quant.py``): INT8 layers really quantize their
  inputs and weights, FP16 layers round their weights, constrained layers keep their precision;
- a plan records version, device and per-layer precision/device (``create_engine_inspector``);
  ``deserialize_cuda_engine`` returns None for another version's or device's plan or damaged bytes;
- contexts refuse unknown names, shapes outside the profile, missing addresses and a thread whose current
  CUDA device is not the engine's; ``execute_async_v3`` runs the simulated network with ONNX Runtime on
  the bytes at the bound addresses (host memory, or device memory through cuda-python: copy out, run, copy
  back), so outputs are real numbers.

Module state that tests set: ``__version__``, ``DEVICE``, ``FAST_INT8``, ``FAST_FP16``,
``NUM_DLA_CORES``; ``STATS`` counts builds, deserializations, calibration batches and executions.
``current_device`` is the simulated CUDA runtime's per-thread current device (the host-memory double sets
it in ``activate``). Environment: ``TRT_DOUBLE_BUILD_DELAY`` (seconds a build takes),
``TRT_DOUBLE_COUNTER`` (a file that gets one line per build, for tests across processes).
"""

from __future__ import annotations

import enum
import os
import threading
from typing import Any

__version__ = os.environ.get("TRT_DOUBLE_VERSION", "10.13.0.35")
DEVICE = {"name": "NVIDIA Test GPU", "compute_capability": "8.7"}
FAST_INT8 = True
FAST_FP16 = True
NUM_DLA_CORES = 0
STATS: dict[str, int] = {"builds": 0, "deserialized": 0, "calibration_batches": 0, "executions": 0}
PLUGINS: dict[str, bool] = {"initialised": False}
_THREAD = threading.local()
_LOG_SWALLOWED: list[str] = []


def reset() -> None:
    global __version__, FAST_INT8, FAST_FP16, NUM_DLA_CORES
    __version__ = "10.13.0.35"
    DEVICE.update(name="NVIDIA Test GPU", compute_capability="8.7")
    FAST_INT8 = FAST_FP16 = True
    NUM_DLA_CORES = 0
    for k in list(STATS):
        STATS[k] = 0
    PLUGINS["initialised"] = False
    _LOG_SWALLOWED.clear()


def set_current_device(index: int) -> None:
    """The simulated ``cudaSetDevice``: per thread, as in CUDA."""
    _THREAD.device = index


def current_device() -> int:
    return int(getattr(_THREAD, "device", 0))


# --------------------------------------------------------------------------------------------- enums


class _Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = _Severity
    INTERNAL_ERROR = _Severity.INTERNAL_ERROR
    ERROR = _Severity.ERROR
    WARNING = _Severity.WARNING
    INFO = _Severity.INFO
    VERBOSE = _Severity.VERBOSE

    def __init__(self) -> None:
        pass

    def log(self, severity: _Severity, msg: str) -> None:
        pass


class Logger(ILogger):
    def __init__(self, min_severity: _Severity = _Severity.WARNING) -> None:
        super().__init__()
        self.min_severity = min_severity


class NetworkDefinitionCreationFlag(enum.IntEnum):
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 5  # TensorRT 10.0+; create_network refuses the bit on 8.x


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1
    GPU_FALLBACK = 3
    OBEY_PRECISION_CONSTRAINTS = 11
    PREFER_PRECISION_CONSTRAINTS = 12


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class DeviceType(enum.IntEnum):
    GPU = 0
    DLA = 1


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    INT64 = 12


float32 = DataType.FLOAT
float16 = DataType.HALF
int8 = DataType.INT8


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class ProfilingVerbosity(enum.IntEnum):
    LAYER_NAMES_ONLY = 0
    NONE = 1
    DETAILED = 2


class LayerInformationFormat(enum.IntEnum):
    ONELINE = 0
    JSON = 1


class Dims:
    def __init__(self, shape: list[int] | tuple[int, ...] = ()) -> None:
        self._d = [int(x) for x in shape]

    def __len__(self) -> int:
        return len(self._d)

    def __getitem__(self, i: int) -> int:
        return self._d[i]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._d)

    def __eq__(self, other: object) -> bool:
        return list(self) == list(other) if isinstance(other, Dims | list | tuple) else NotImplemented

    def __repr__(self) -> str:
        return f"Dims({self._d})"

    __hash__ = None  # type: ignore[assignment]  # mutable, like TensorRT's Dims


def as_dims(shape: Any) -> list[int]:
    return [int(shape[i]) for i in range(len(shape))]


# ------------------------------------------------------------------------------------- calibrators


class _IInt8Calibrator:
    def __init__(self) -> None:
        pass


class _IInt8EntropyCalibrator2(_IInt8Calibrator):
    _algo = "EntropyCalibration2"


class _IInt8MinMaxCalibrator(_IInt8Calibrator):
    _algo = "MinMaxCalibration"


_CALIBRATORS = {
    "IInt8Calibrator": _IInt8Calibrator,
    "IInt8EntropyCalibrator2": _IInt8EntropyCalibrator2,
    "IInt8MinMaxCalibrator": _IInt8MinMaxCalibrator,
}


def __getattr__(name: str) -> Any:
    """The calibrator classes exist before TensorRT 11 only (PEP 562 module attribute)."""
    if name in _CALIBRATORS and _major() < 11:
        return _CALIBRATORS[name]
    raise AttributeError(f"module 'tensorrt' has no attribute {name!r}")


def _major() -> int:
    return int(__version__.split(".", maxsplit=1)[0])


def swallowed(call: Any, *args: Any, default: Any = None) -> Any:
    """A calibrator callback as the bindings run it: an exception is logged and swallowed."""
    try:
        return call(*args)
    except Exception as exc:  # what pybind11 does in the C++ trampoline: report and go on
        STATS["swallowed"] = STATS.get("swallowed", 0) + 1
        _LOG_SWALLOWED.append(f"{type(exc).__name__}: {exc}")
        return default


def init_libnvinfer_plugins(logger: Any, namespace: str) -> bool:
    """Register TensorRT's own plugins (InstanceNormalization_TRT, ROIAlign_TRT, ...) in the registry."""
    PLUGINS["initialised"] = True
    return True


from ._builder import Builder, IBuilderConfig, IOptimizationProfile, ITimingCache  # noqa: E402
from ._network import ILayer, INetworkDefinition, ITensor, OnnxParser, ParserError  # noqa: E402
from ._runtime import ICudaEngine, IEngineInspector, IExecutionContext, Runtime  # noqa: E402

__all__ = [
    "Builder",
    "IBuilderConfig",
    "ICudaEngine",
    "IEngineInspector",
    "IExecutionContext",
    "ILayer",
    "INetworkDefinition",
    "IOptimizationProfile",
    "ITensor",
    "ITimingCache",
    "OnnxParser",
    "ParserError",
    "Runtime",
]
