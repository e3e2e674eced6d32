"""What each simulated TensorRT version accepts and refuses, and how a build assigns precisions.

Every rule names its source in README.md beside this file.
"""

from __future__ import annotations

import sys
from typing import Any

# ONNX ops the ONNX parser imports as plugins, per major version. 8.6 imports InstanceNormalization through
# the InstanceNormalization_TRT plugin; 10.0 made the native INormalizationLayer the default (parser flag
# NATIVE_INSTANCENORM). RoiAlign stays a plugin (ROIAlign_TRT). 8.6's parser registers TensorRT's plugins
# itself (initLibNvInferPlugins in ModelImporter.cpp); from 10.0 the application must call
# ``init_libnvinfer_plugins`` or the parse fails with "Plugin not found".
PLUGIN_OPS = {8: {"InstanceNormalization", "RoiAlign"}, 10: {"RoiAlign"}, 11: {"RoiAlign"}}
PLUGIN_NAMES = {"InstanceNormalization": "InstanceNormalization_TRT", "RoiAlign": "ROIAlign_TRT"}

# ONNX ops whose layers a DLA core can run (developer guide, "DLA Supported Layers and Restrictions"),
# simplified: convolutions, pooling, activations, element-wise, concatenation on channels, resize. Shape
# manipulation (Reshape/Transpose/Split/Slice/Gather), MatMul, TopK and Softmax over anchors do not.
DLA_OPS = {
    "Conv",
    "ConvTranspose",
    "Relu",
    "Sigmoid",
    "Tanh",
    "MaxPool",
    "AveragePool",
    "BatchNormalization",
    "Add",
    "Sub",
    "Mul",
    "Concat",
    "Resize",
    "PRelu",
}


def state() -> Any:
    """The double's package module (tests set ``__version__`` and friends on it)."""
    return sys.modules[__package__]


def major() -> int:
    return int(str(state().__version__).split(".", maxsplit=1)[0])


def plugin_ops() -> set[str]:
    return PLUGIN_OPS[min(max(major(), 8), 11) if major() != 9 else 8]


def parser_registers_plugins() -> bool:
    return major() < 10


def check_implicit_int8_topk(layers: list[Any]) -> None:
    """10.2 and 10.3 fail an implicit INT8 build of a network with TopK (YOLO26's end-to-end head) while
    optimizing the calibration graph (ultralytics#23841 on JetPack 6; PR #24368: every other 10.x on
    x86 builds it, the top-k falling back to float)."""
    version = tuple(int(v) for v in str(state().__version__).split(".")[:2])
    if version in ((10, 2), (10, 3)) and any(la.type == "TopK" for la in layers):
        raise ValueError(
            "[checkSanity.cpp::checkLinks::218] Error Code 2: Internal Error (Assertion item.second != "
            "nullptr failed. region should have been removed from Graph::regions)"
        )


def plan_precisions(
    layers: list[Any], flags: set[Any], scales: dict[str, float], strongly_typed: bool, qdq: set[int]
) -> tuple[list[str], list[str]]:
    """``(precision per layer, warnings)``, or raise ValueError with TensorRT's error.

    Precision constraints (``layer.precision``, ``set_output_type``) bind only under
    OBEY_PRECISION_CONSTRAINTS (an unmeetable one fails the build) or PREFER_PRECISION_CONSTRAINTS (it
    falls back with a warning); without either flag TensorRT picks the fastest kernel and ignores them.
    In a strongly typed network the types in the graph decide: layers reading Q/DQ run INT8, the rest in
    the graph's float type (the double's float graphs are FP32 unless their initializers are FP16).
    """
    pkg = state()
    bf = pkg.BuilderFlag
    int8, fp16 = bf.INT8 in flags, bf.FP16 in flags
    obey, prefer = bf.OBEY_PRECISION_CONSTRAINTS in flags, bf.PREFER_PRECISION_CONSTRAINTS in flags
    out: list[str] = []
    warnings: list[str] = []
    floats = {pkg.DataType.FLOAT, pkg.DataType.HALF}
    for i, layer in enumerate(layers):
        if (obey or prefer) and any(
            layer.get_output(j).dtype not in floats and layer.get_output_type(j) in floats
            for j in layer._output_types
        ):
            raise ValueError(f"layer {layer.name}: a float output type was set on a non-float tensor")
        if strongly_typed:
            out.append("int8" if i in qdq else layer._graph_float)
            continue
        default_float = "fp16" if fp16 else "fp32"
        if qdq and i in qdq and int8:  # explicit quantization in a weakly typed network
            out.append("int8")
            continue
        capable = layer._op in _int8_capable() and any(x in scales for x in layer._inputs)
        chosen = "int8" if int8 and not qdq and capable else default_float
        if (obey or prefer) and layer.precision_is_set:
            want = {pkg.DataType.FLOAT: "fp32", pkg.DataType.HALF: "fp16", pkg.DataType.INT8: "int8"}[
                layer.precision
            ]
            if want == "int8" and not capable:
                msg = f"layer {layer.name}: INT8 requested but no scale (dynamic range) for its input"
                if obey:
                    raise ValueError(msg)
                warnings.append(msg + "; running it in " + default_float)
                want = default_float
            if want == "fp16" and not fp16 and obey:
                raise ValueError(f"layer {layer.name}: FP16 constraint without the FP16 builder flag")
            chosen = want
        out.append(chosen)
    return out, warnings


def _int8_capable() -> set[str]:
    from ._quant import INT8_CAPABLE

    return INT8_CAPABLE


def check_dla(config: Any, precisions: list[str], layers: list[Any], profile: Any) -> list[str]:
    """Device per layer on a DLA build ("dla" | "gpu"), or raise ValueError with TensorRT's error."""
    pkg = state()
    if config.DLA_core >= pkg.NUM_DLA_CORES:
        raise ValueError(f"DLA core {config.DLA_core} does not exist (this device has {pkg.NUM_DLA_CORES})")
    lo, _, hi = profile
    if lo != hi:
        raise ValueError(f"DLA does not support dynamic shapes: profile min {lo} != max {hi}")
    if getattr(config.int8_calibrator, "_algo", "") == "MinMaxCalibration":
        raise ValueError("DLA does not support the MinMax calibrator (use EntropyCalibration2)")
    fallback = pkg.BuilderFlag.GPU_FALLBACK in config.flags
    devices = []
    for layer, prec in zip(layers, precisions, strict=True):
        on_dla = layer._op in DLA_OPS and prec in {"fp16", "int8"}
        if not on_dla and not fallback:
            why = "FP32" if layer._op in DLA_OPS else f"a {layer._op} layer"
            raise ValueError(f"{layer.name}: DLA cannot run {why} and GPU fallback is off")
        devices.append("dla" if on_dla else "gpu")
    return devices
