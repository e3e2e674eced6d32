"""Every difference between the TensorRT versions we target, in one place.

- 8.6 (JetPack 6.0): networks need the EXPLICIT_BATCH creation flag.
- 10.x (JetPack 6.1/6.2/7, x86): explicit batch is implied (the flag is deprecated and ignored);
  ``platform_has_fast_int8``/``fp16`` are deprecated but still answer; implicit INT8 through calibrators
  still works.
- 11.x: implicit INT8 and FP16 are gone (no calibrators, no INT8/FP16 builder flags): reduced precision
  means a strongly typed network from a Q/DQ (or FP16) ONNX. INT8 is built that way from the Q/DQ model
  of edge_daemon.build.quant with its float part converted to FP16 (edge_daemon.build.quant.fp16);
  fp16 alone is refused with a clear message.
- explicit INT8 before 11 (8.6 and 10.x, int8_mode: explicit): the Q/DQ model in a weakly typed network
  with the INT8 and FP16 flags and no calibrator, so the layers outside Q/DQ run in FP16, not FP32.
Both 8.6 and 10.x share the named-tensor execution API used here (set_input_shape, set_tensor_address,
execute_async_v3) and build_serialized_network.
"""

from __future__ import annotations

import re
from typing import Any

import tensorrt as trt

from edge_daemon.errors import EngineError

MIN_SUPPORTED = (8, 6)


def version() -> tuple[int, int, int]:
    return parse_version(trt.__version__)


def parse_version(text: str) -> tuple[int, int, int]:
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        raise EngineError(f"cannot parse the TensorRT version {text!r}")
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def explicit_int8(mode: str, ver: tuple[int, int, int] | None = None) -> bool:
    """Whether INT8 is built explicitly (strongly typed, from Q/DQ): always on 11+, else if asked."""
    v = ver or version()
    return mode == "explicit" or (mode == "auto" and v[0] >= 11)


def check_supported(precision: str, ver: tuple[int, int, int] | None = None, explicit: bool = False) -> None:
    """Raise EngineError if this TensorRT cannot build ``precision`` the way this daemon builds it."""
    v = ver or version()
    if v[:2] < MIN_SUPPORTED:
        raise EngineError(f"TensorRT {'.'.join(map(str, v))} is too old; 8.6 or newer is needed (JetPack 6)")
    if v[0] >= 11 and (precision == "fp16" or (precision == "int8" and not explicit)):
        raise EngineError(
            f"TensorRT {v[0]}.{v[1]} removed implicit {precision.upper()} (calibrators and builder "
            "precision flags). INT8 there is built from a Q/DQ model (engine.int8_mode: explicit or auto); "
            "FP16 would need an FP16 ONNX, which edge-daemon does not produce: use int8 or fp32."
        )


def implicit_int8_topk_fails(ver: tuple[int, int, int] | None = None) -> bool:
    """TensorRT 10.3 and older cannot build implicit INT8 for a network with an end-to-end head's TopK
    (YOLO26, YOLOv10): the calibration graph's optimization dies with ``checkLinks::218``
    (ultralytics#23841, JetPack 6); 10.7 builds it (what Ultralytics installs on JetPack 6, PR #24368)."""
    return (ver or version())[:2] <= (10, 3)


def strongly_typed_only(ver: tuple[int, int, int] | None = None) -> bool:
    """TensorRT 11 builds strongly typed networks only (no precision builder flags); before it, a Q/DQ
    model is built weakly typed with the INT8 and FP16 flags, so layers outside Q/DQ run in FP16."""
    return (ver or version())[0] >= 11


def network_flags(ver: tuple[int, int, int] | None = None, strongly_typed: bool = False) -> int:
    """Creation flags for ``Builder.create_network``: EXPLICIT_BATCH on 8.x; STRONGLY_TYPED for Q/DQ."""
    v = ver or version()
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if v[0] < 10 else 0
    if strongly_typed:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def platform_has_fast(builder: Any, precision: str) -> bool:
    """``platform_has_fast_int8``/``fp16``; deprecated in 10.x but present; absent means 'assume yes'."""
    attr = {"int8": "platform_has_fast_int8", "fp16": "platform_has_fast_fp16"}.get(precision)
    if attr is None:
        return True
    return bool(getattr(builder, attr, True))


def dims(value: Any) -> tuple[int, ...]:
    """A ``trt.Dims`` (or any sequence) as a tuple of ints; -1 marks a dynamic dimension."""
    return tuple(int(value[i]) for i in range(len(value)))


def make_dims(shape: tuple[int, ...]) -> trt.Dims:
    return trt.Dims(list(shape))
