"""The double's network definition and ONNX parser: one layer per ONNX node, named after it."""

from __future__ import annotations

from typing import Any

import onnx

from . import PLUGINS, DataType, ILogger, _rules
from ._quant import names as node_names
from ._quant import session as ort_session
from ._quant import upcast

_DTYPES = {
    onnx.TensorProto.FLOAT: DataType.FLOAT,
    onnx.TensorProto.FLOAT16: DataType.HALF,
    onnx.TensorProto.INT8: DataType.INT8,
    onnx.TensorProto.INT32: DataType.INT32,
    onnx.TensorProto.INT64: DataType.INT64,
    onnx.TensorProto.BOOL: DataType.BOOL,
}


class ITensor:
    def __init__(self, name: str, shape: list[int], dtype: DataType = DataType.FLOAT) -> None:
        from . import Dims

        self.name = name
        self.shape = Dims(shape)
        self.dtype = dtype


class ILayer:
    """A layer with TensorRT's precision-constraint surface (``precision``, ``set_output_type``)."""

    def __init__(self, name: str, node: onnx.NodeProto, graph_float: str, types: dict[str, int]) -> None:
        self.name = name
        self._op = node.op_type
        self._inputs = list(node.input)
        self._outputs = [ITensor(o, [], _DTYPES.get(types.get(o, 1), DataType.FLOAT)) for o in node.output]
        self._precision: DataType | None = None
        self._output_types: dict[int, DataType] = {}
        self._graph_float = graph_float

    @property
    def type(self) -> str:
        return self._op

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]

    @property
    def precision(self) -> DataType:
        return self._precision if self._precision is not None else DataType.FLOAT

    @precision.setter
    def precision(self, value: DataType) -> None:
        if _rules.major() >= 11:
            raise AttributeError("TensorRT 11 removed ILayer.precision (strong typing only)")
        self._precision = DataType(value)

    @property
    def precision_is_set(self) -> bool:
        return self._precision is not None

    def reset_precision(self) -> None:
        self._precision = None

    def set_output_type(self, index: int, dtype: DataType) -> None:
        if not 0 <= index < len(self._outputs):
            raise IndexError(f"layer {self.name} has {len(self._outputs)} outputs")
        self._output_types[index] = DataType(dtype)

    def get_output_type(self, index: int) -> DataType:
        return self._output_types.get(index, DataType.FLOAT)

    def output_type_is_set(self, index: int) -> bool:
        return index in self._output_types


class INetworkDefinition:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.onnx: bytes | None = None
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []
        self.layers: list[ILayer] = []

    @property
    def num_inputs(self) -> int:
        return len(self.inputs)

    @property
    def num_outputs(self) -> int:
        return len(self.outputs)

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def get_input(self, i: int) -> ITensor:
        return self.inputs[i]

    def get_output(self, i: int) -> ITensor:
        return self.outputs[i]

    def get_layer(self, i: int) -> ILayer:
        return self.layers[i]


def _dim(d: Any) -> int:
    return d if isinstance(d, int) and d > 0 else -1


class ParserError:
    def __init__(self, desc: str, node: int = -1, name: str = "", op: str = "") -> None:
        self._desc = desc
        self._where = (node, name, op)

    def desc(self) -> str:
        return self._desc

    def __str__(self) -> str:
        node, name, op = self._where
        return f"In node {node} with name: {name} and operator: {op} (parseGraph): INVALID_NODE: {self._desc}"


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: ILogger) -> None:
        self.network = network
        self.logger = logger
        self._errors: list[ParserError] = []

    @property
    def num_errors(self) -> int:
        return len(self._errors)

    def get_error(self, i: int) -> ParserError:
        return self._errors[i]

    def parse(self, model: bytes, path: str | None = None) -> bool:
        self._errors.clear()
        try:
            session = ort_session(upcast(bytes(model)))
        except Exception as exc:  # what ORT cannot load, TensorRT's parser cannot either
            self._errors.append(ParserError(f"Failed to parse ONNX model: {exc}"))
            return False
        proto = onnx.load_from_string(bytes(model))
        plugin_ops = _rules.plugin_ops()
        for i, node in enumerate(proto.graph.node):
            registered = PLUGINS["initialised"] or _rules.parser_registers_plugins()
            if node.op_type in plugin_ops and not registered:
                plugin = _rules.PLUGIN_NAMES.get(node.op_type, node.op_type)
                self._errors.append(
                    ParserError(
                        f"Plugin not found, are the plugin name, version, and namespace correct? "
                        f"(creator {plugin} version 1)",
                        i,
                        node.name,
                        node.op_type,
                    )
                )
                return False
        half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
        inferred = onnx.shape_inference.infer_shapes(proto)
        types = {
            v.name: v.type.tensor_type.elem_type
            for v in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]
        }
        self.network.onnx = bytes(model)
        self.network.inputs = [ITensor(i.name, [_dim(d) for d in i.shape]) for i in session.get_inputs()]
        self.network.outputs = [ITensor(o.name, [_dim(d) for d in o.shape]) for o in session.get_outputs()]
        self.network.layers = [
            ILayer(name, node, "fp16" if half else "fp32", types)
            for name, node in zip(node_names(proto.graph.node), proto.graph.node, strict=True)
        ]
        return True
