"""What precision each layer of a built plan actually got, from TensorRT's engine inspector.

Built with ``ProfilingVerbosity.DETAILED``, the inspector's JSON lists every layer with its output formats
(``"Format/Datatype": "Row major linear FP16 format"``, ``"... Int8 format"``, ``"Row major linear
FP32"``). The manifest keeps the totals and, per Ultralytics block (``/model.N/``), how many layers ran in
each precision, so "is the head still in float?" has an answer for every engine on disk.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from typing import Any

import tensorrt as trt

log = logging.getLogger(__name__)

_BLOCK = re.compile(r"^/model\.(\d+)/")


def precision_of(fmt: str) -> str:
    """``int8`` | ``fp16`` | ``fp32`` | ``other`` from an inspector format string."""
    low = fmt.lower()
    if "int8" in low:
        return "int8"
    if "fp16" in low or "half" in low:
        return "fp16"
    if "fp32" in low or "float" in low:
        return "fp32"
    return "other"


def summarize(info: dict[str, Any]) -> dict[str, Any]:
    """Totals and per-block counts of layer precisions from the inspector's JSON (layers given by name
    only, without DETAILED verbosity, are counted as ``unknown``)."""
    totals: Counter[str] = Counter()
    blocks: dict[str, Counter[str]] = {}
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):
            totals["unknown"] += 1
            continue
        outs = layer.get("Outputs") or [{}]
        prec = precision_of(str(outs[0].get("Format/Datatype", "")))
        totals[prec] += 1
        m = _BLOCK.match(str(layer.get("Name", "")))
        if m:
            blocks.setdefault(m.group(0), Counter())[prec] += 1
    return {"precision": dict(totals), "blocks": {k: dict(v) for k, v in sorted(blocks.items())}}


def layer_summary(plan: bytes, logger: Any) -> dict[str, Any]:
    """Deserialize ``plan`` and summarize its layers; an empty dict if TensorRT cannot say."""
    runtime = trt.Runtime(logger)
    engine: trt.ICudaEngine | None = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        return {}
    try:
        inspector = engine.create_engine_inspector()
        text = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
        return summarize(json.loads(text))
    except (AttributeError, ValueError, TypeError) as exc:
        log.warning("the engine inspector gave no layer information (%s)", exc)
        return {}
    finally:
        del engine
