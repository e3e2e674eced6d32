"""The double's runtime: deserialization checks, engine and context, the engine inspector, execution."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import onnxruntime as ort

from . import STATS, DataType, Dims, ILogger, LayerInformationFormat, TensorIOMode, _rules, _Severity, as_dims
from ._builder import MAGIC
from ._memory import read as _read
from ._memory import write as _write
from ._network import _dim
from ._quant import session, simulate, upcast


class Runtime:
    def __init__(self, logger: ILogger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        blob = bytes(serialized_engine)
        pkg = _rules.state()
        if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
            self.logger.log(
                _Severity.ERROR,
                "1: [runtime.cpp::parsePlan::314] Error Code 1: Serialization "
                "(Serialization assertion plan->header.magicTag == rt::kPLAN_MAGIC_TAG failed.)",
            )
            return None
        n = int.from_bytes(blob[len(MAGIC) : len(MAGIC) + 4], "little")
        try:
            header = json.loads(blob[len(MAGIC) + 4 : len(MAGIC) + 4 + n])
        except ValueError:
            self.logger.log(_Severity.ERROR, "Serialization: plan header is corrupt")
            return None
        if header["version"] != pkg.__version__:
            self.logger.log(
                _Severity.ERROR,
                "The engine plan file is not compatible with this version of "
                f"TensorRT, expecting library version {pkg.__version__} got {header['version']}",
            )
            return None
        if header["device"] != pkg.DEVICE:
            self.logger.log(
                _Severity.ERROR,
                "The engine plan file is generated on an incompatible device, "
                f"expecting compute {pkg.DEVICE['compute_capability']} got "
                f"{header['device']['compute_capability']}",
            )
            return None
        plugins = [la["type"] for la in header["layers"] if la["type"] in _rules.PLUGIN_NAMES]
        if plugins and not pkg.PLUGINS["initialised"]:  # every version: registered in this process
            self.logger.log(
                _Severity.ERROR,
                f"getPluginCreator could not find plugin {_rules.PLUGIN_NAMES[plugins[0]]} version 1",
            )
            return None
        try:
            graph = blob[len(MAGIC) + 4 + n :]
            if header["strongly_typed"]:  # the graph's own types decide; FP16 weights keep their values
                graph = upcast(graph)
            else:
                graph = simulate(graph, [la["precision"] for la in header["layers"]], header["scales"])
            sess = session(graph)
        except Exception:
            self.logger.log(_Severity.ERROR, "Serialization: plan payload is corrupt")
            return None
        STATS["deserialized"] += 1
        return ICudaEngine(header, sess, pkg.current_device())


class IEngineInspector:
    """Layer information as TensorRT's engine inspector gives it (names only unless built DETAILED)."""

    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine

    def get_engine_information(self, format: LayerInformationFormat) -> str:
        header = self.engine.header
        fmt = {"fp32": "Row major linear FP32", "fp16": "Row major linear FP16 format", "int8": "Int8 format"}
        layers: list[Any] = []
        for la in header["layers"]:
            if not header["detailed"]:
                layers.append(la["name"])
                continue
            layers.append(
                {
                    "Name": la["name"],
                    "LayerType": "ForeignNode" if la["device"] == "dla" else la["type"],
                    "Outputs": [{"Format/Datatype": fmt[la["precision"]]}],
                    "Origin": "DLA" if la["device"] == "dla" else "GPU",
                }
            )
        info = {"Layers": layers, "Bindings": [self.engine.input_name, *self.engine.output_names]}
        if format == LayerInformationFormat.JSON:
            return json.dumps(info)
        return "\n".join(str(la) for la in layers)


class ICudaEngine:
    def __init__(self, header: dict[str, Any], session: ort.InferenceSession, device: int) -> None:
        self.header = header
        self.session = session
        self.device = device
        self.input_name: str = header["input"]
        self.output_names: list[str] = header["outputs"]
        # Outputs produced in reduced precision are rounded through float16 (FP16 output formats).
        producers = {o: la["precision"] for la in header["layers"] for o in la["outputs"]}
        self.half_outputs = {n for n in self.output_names if producers.get(n, "fp32") != "fp32"}

    @property
    def num_io_tensors(self) -> int:
        return 1 + len(self.output_names)

    def get_tensor_name(self, index: int) -> str:
        return [self.input_name, *self.output_names][index]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        if name == self.input_name:
            return TensorIOMode.INPUT
        return TensorIOMode.OUTPUT if name in self.output_names else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType.FLOAT

    def get_tensor_shape(self, name: str) -> Dims:
        lo, _, hi = self.header["profile"]
        if name == self.input_name:
            return Dims([-1 if a != b else a for a, b in zip(lo, hi, strict=True)])
        out = next(o for o in self.session.get_outputs() if o.name == name)
        return Dims([-1 if lo[0] != hi[0] else hi[0], *[_dim(d) for d in out.shape[1:]]])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if name != self.input_name or profile_index != 0:
            raise IndexError("no such profile or input")
        return [Dims(s) for s in self.header["profile"]]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)

    def create_engine_inspector(self) -> IEngineInspector:
        return IEngineInspector(self)


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self.addresses: dict[str, int] = {}
        self.input_shape: list[int] | None = None
        self._inferred: dict[tuple[str, tuple[int, ...]], list[int]] = {}

    def set_input_shape(self, name: str, shape: Any) -> bool:
        if name != self.engine.input_name:
            return False
        s = as_dims(shape)
        lo, _, hi = self.engine.header["profile"]
        if len(s) != len(lo) or any(not a <= x <= b for a, x, b in zip(lo, s, hi, strict=True)):
            return False
        self.input_shape = s
        return True

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if self.engine.get_tensor_mode(name) == TensorIOMode.NONE:
            return False
        self.addresses[name] = int(memory)
        return True

    def get_tensor_shape(self, name: str) -> Dims:
        shape = self.engine.get_tensor_shape(name)
        if self.input_shape is None:
            return shape
        if name == self.engine.input_name:
            return Dims(self.input_shape)
        dims = [self.input_shape[0], *list(shape)[1:]]
        if -1 in dims:  # TensorRT infers output shapes from the input shape; here: run it once
            key = (name, tuple(self.input_shape))
            if key not in self._inferred:
                x = np.zeros(self.input_shape, np.float32)
                out = self.engine.session.run([name], {self.engine.input_name: x})[0]
                self._inferred[key] = list(out.shape)
            dims = self._inferred[key]
        return Dims(dims)

    def execute_async_v3(self, stream_handle: int) -> bool:
        if self.input_shape is None or any(
            n not in self.addresses for n in [self.engine.input_name, *self.engine.output_names]
        ):
            return False
        current = _rules.state().current_device()
        if current != self.engine.device:
            _rules.state()._LOG_SWALLOWED.append(
                f"engine on device {self.engine.device} enqueued while device {current} is current"
            )
            return False  # CUDA: the engine's memory is on another device (cudaErrorInvalidDevice)
        shape = self.input_shape
        x = _read(self.addresses[self.engine.input_name], shape, stream_handle)
        outs = self.engine.session.run(self.engine.output_names, {self.engine.input_name: x})
        for name, out in zip(self.engine.output_names, outs, strict=True):
            y = np.ascontiguousarray(out, dtype=np.float32)
            if name in self.engine.half_outputs:
                y = y.astype(np.float16).astype(np.float32)
            _write(self.addresses[name], y)
        STATS["executions"] += 1
        return True
