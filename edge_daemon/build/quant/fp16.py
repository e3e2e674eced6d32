"""An FP16 float graph around a Q/DQ model's INT8 nodes, for TensorRT 11's strongly typed builds.

A strongly typed network runs each layer in the type its tensors have in the graph, and TensorRT 11 has
no FP16 builder flag: the FP32 parts of a Q/DQ model would run in FP32, slow on Orin. So the Q/DQ model's
float tensors, weights and Q/DQ scales are converted to FP16 (onnxconverter-common, the converter ONNX
Runtime's own tools use; the model's input and outputs stay FP32, with casts at the edges). FP16 Q/DQ
scales need opset 19, so the model is converted to opset 21 first (onnx's version converter).
NVIDIA ModelOpt's ONNX PTQ does the same and more, but pins onnxruntime-gpu and onnx versions that cannot
live beside the CPU runtime (docs/engine.md).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from edge_daemon.errors import ModelError
from edge_daemon.files import atomic_write

log = logging.getLogger(__name__)

OPSET = 21


def float16_around_qdq(src: Path) -> Path:
    """``<src stem>-fp16.onnx`` beside ``src`` (made once, atomically), the float part in FP16."""
    dst = src.with_name(f"{src.stem}-fp16.onnx")
    if dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
        return dst
    try:
        import onnx
        from onnx import version_converter
        from onnxconverter_common import float16
    except ImportError as exc:
        raise ModelError(
            f"an FP16 Q/DQ model needs onnxconverter-common: pip install 'edge-daemon[quant]' ({exc})"
        ) from None
    model = onnx.load(str(src))
    main = next((o for o in model.opset_import if o.domain in {"", "ai.onnx"}), None)
    if main is not None and main.version < OPSET:
        model = version_converter.convert_version(model, OPSET)
    with warnings.catch_warnings():  # "the float32 number ... will be truncated": what FP16 means
        warnings.simplefilter("ignore")
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    atomic_write(dst, half.SerializeToString())
    log.info("converted the float part of %s to FP16 (%s)", src.name, dst.name)
    return dst
