"""The double's INT8: TensorRT's implicit quantization simulated on the ONNX graph ONNX Runtime executes.

What TensorRT does (developer guide, "Working with Quantized Types", implicit quantization; README.md
beside this file cites each point):

- calibration runs the network in FP32 on the calibrator's batches and records a dynamic range for every
  tensor an INT8 layer may read; the calibration cache is a header line (``TRT-<version>-<algorithm>``)
  and one line per tensor, ``<name>: <scale as the hex of its float32 bits>``;
- a layer that runs in INT8 reads INT8 activations (quantized with its input tensor's scale) and, for
  convolutions and matrix multiplies, weights quantized per output channel (symmetric, max-abs);
- a layer that runs in FP16 keeps its weights and outputs in half precision; one constrained to FP32 is
  untouched.

Simulation: per INT8 layer, a QuantizeLinear/DequantizeLinear pair on each activation input that has a
scale (ONNX Runtime really executes the rounding and clamping) and weights rounded per channel to int8
levels; per FP16 layer, weights rounded through float16. Entropy calibration is approximated by the
99.99th percentile of |x| (minmax: the maximum); the daemon never depends on the exact scales.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

# Layer types TensorRT has INT8 kernels for (inputs quantized when the layer runs INT8).
INT8_CAPABLE = {
    "Conv",
    "ConvTranspose",
    "MatMul",
    "Gemm",
    "Sigmoid",
    "Relu",
    "Add",
    "Mul",
    "Concat",
    "MaxPool",
    "Resize",
}
WEIGHTED = {"Conv", "ConvTranspose", "MatMul", "Gemm"}


def calibration_tensors(model: onnx.ModelProto) -> list[str]:
    """Activation tensors an INT8 layer may read: non-constant inputs of INT8-capable nodes."""
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    seen: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type in INT8_CAPABLE:
            for name in node.input:
                if name and name not in consts:
                    seen[name] = None
    return list(seen)


def calibrate(
    onnx_bytes: bytes, input_name: str, next_batch: Callable[[], Any], algorithm: str
) -> tuple[dict[str, float], int]:
    """Scales (amax / 127) of every calibration tensor over the batches ``next_batch`` yields (until it
    returns None), and the number of batches used."""
    model = onnx.load_from_string(onnx_bytes)
    names = calibration_tensors(model)
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:
            model.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    sess = session(model.SerializeToString())
    floats = [n for n in names if _is_float(sess, n)]
    amax: dict[str, float] = {}
    batches = 0
    while (batch := next_batch()) is not None:
        outs = sess.run(floats, {input_name: batch})
        for name, out in zip(floats, outs, strict=True):
            a = np.abs(np.asarray(out, np.float32))
            v = float(a.max() if algorithm == "MinMaxCalibration" else np.percentile(a, 99.99))
            amax[name] = max(amax.get(name, 0.0), v)
        batches += 1
    return {k: v / 127.0 for k, v in amax.items() if v > 0}, batches


def _is_float(session: ort.InferenceSession, name: str) -> bool:
    out = next(o for o in session.get_outputs() if o.name == name)
    return out.type in {"tensor(float)", "tensor(float16)"}


def cache_bytes(tag: str, scales: dict[str, float]) -> bytes:
    lines = [tag] + [f"{k}: {struct.unpack('>I', struct.pack('>f', v))[0]:08x}" for k, v in scales.items()]
    return ("\n".join(lines) + "\n").encode("latin-1")


def parse_cache(data: bytes, tag: str) -> dict[str, float] | None:
    """The scales in a calibration cache; None if its header is not ``tag`` or a line is malformed."""
    lines = data.decode("latin-1").splitlines()
    if not lines or lines[0] != tag:
        return None
    scales: dict[str, float] = {}
    for line in lines[1:]:
        name, sep, hexbits = line.rpartition(": ")
        if not sep:
            return None
        try:
            scales[name] = struct.unpack(">f", struct.pack(">I", int(hexbits, 16)))[0]
        except (ValueError, struct.error):
            return None
    return scales


def simulate(onnx_bytes: bytes, precisions: list[str], scales: dict[str, float]) -> bytes:
    """The network as built: node ``i`` runs at ``precisions[i]`` (int8 | fp16 | fp32)."""
    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes: list[onnx.NodeProto] = []
    zero = "__trtdouble_zp"
    graph.initializer.append(numpy_helper.from_array(np.array(0, np.int8), zero))
    for idx, node in enumerate(graph.node):
        prec = precisions[idx]
        if prec == "int8" and node.op_type in INT8_CAPABLE:
            for j, name in enumerate(node.input):
                if name in scales and name not in inits:
                    s = f"__trtdouble_s{idx}_{j}"
                    graph.initializer.append(numpy_helper.from_array(np.array(scales[name], np.float32), s))
                    q, dq = f"{name}__q{idx}_{j}", f"{name}__dq{idx}_{j}"
                    nodes.append(helper.make_node("QuantizeLinear", [name, s, zero], [q]))
                    nodes.append(helper.make_node("DequantizeLinear", [q, s, zero], [dq]))
                    node.input[j] = dq
            if node.op_type in WEIGHTED and len(node.input) > 1 and node.input[1] in inits:
                axis = -1 if node.op_type == "MatMul" else 0  # the output channels
                node.input[1] = _replace(
                    graph, inits[node.input[1]], f"{idx}", functools.partial(_int8_per_channel, axis=axis)
                )
        elif prec == "fp16":
            for j, name in enumerate(node.input):
                if name in inits and inits[name].data_type == TensorProto.FLOAT:
                    node.input[j] = _replace(graph, inits[name], f"{idx}", _fp16)
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {x for n in graph.node for x in n.input}
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model.SerializeToString()


def session(model: bytes) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # ONNX Runtime's warnings are not TensorRT's
    # Run Q/DQ pairs as the arithmetic they define: ONNX Runtime's own Q/DQ fusions are x86 CPU kernels
    # (and one of them mistypes opset-21 FP16 Q/DQ models).
    opts.add_session_config_entry("session.disable_quant_qdq", "1")
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _replace(graph: Any, init: Any, tag: str, fn: Callable[[np.ndarray], np.ndarray]) -> str:
    name = f"{init.name}__sim{tag}"
    graph.initializer.append(numpy_helper.from_array(fn(numpy_helper.to_array(init)), name))
    return name


def _int8_per_channel(w: np.ndarray, axis: int) -> np.ndarray:
    w = w.astype(np.float32)
    if w.ndim < 2:
        return w
    axes = tuple(a for a in range(w.ndim) if a != axis % w.ndim)
    s = np.abs(w).max(axis=axes, keepdims=True) / 127.0
    s[s == 0] = 1.0
    return (np.clip(np.round(w / s), -127, 127) * s).astype(np.float32)


def _fp16(w: np.ndarray) -> np.ndarray:
    return w.astype(np.float16).astype(np.float32)


def qdq_inputs(model: onnx.ModelProto) -> set[int]:
    """Indices of nodes that read a DequantizeLinear output: the INT8 layers of a Q/DQ (explicit) model."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {i for i, n in enumerate(model.graph.node) if any(x in dq for x in n.input)}


def names(nodes: Iterable[onnx.NodeProto]) -> list[str]:
    return [n.name or f"(Unnamed Layer* {i}) [{n.op_type}]" for i, n in enumerate(nodes)]


def upcast(onnx_bytes: bytes) -> bytes:
    """An FP16 graph made executable by ONNX Runtime's CPU kernels (which lack FP16 convolutions and FP16
    Q/DQ scales): the same graph in FP32, its FP16 weights keeping their FP16-rounded values. Activations
    are then computed in FP32 between layers, a simplification the README names."""
    model = onnx.load_from_string(onnx_bytes)
    if not any(i.data_type == TensorProto.FLOAT16 for i in model.graph.initializer):
        return onnx_bytes
    graph = model.graph
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT16:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float32), init.name))
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT16:
                attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float32)))
    for value in [*graph.value_info, *graph.input, *graph.output]:
        if value.type.tensor_type.elem_type == TensorProto.FLOAT16:
            value.type.tensor_type.elem_type = TensorProto.FLOAT
    return model.SerializeToString()
