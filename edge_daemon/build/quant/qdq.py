"""Explicit INT8 quantization: an FP32 ONNX -> a Q/DQ ONNX, with ONNX Runtime's quantization tools.

Two formats from one calibration set, because the fast integer paths of the two runtimes differ:

- ``cpu``: uint8 activations (asymmetric) and int8 per-channel weights. ONNX Runtime's CPU provider runs
  it with integer kernels (VNNI-class CPUs). This is the embedded INT8 default.
- ``tensorrt``: int8 symmetric activations and int8 symmetric per-channel weights, what TensorRT's explicit
  quantization requires (and the only INT8 route on TensorRT 11). On the CPU it is slower than FP32.

Activation ranges (``method``): ONNX Runtime's calibrators (``entropy``, which with its default histogram
keeps each tensor's whole symmetric range; ``minmax``; ``percentile``), or ``mse``: least squared error
from our own 2048-bin histograms (:mod:`edge_daemon.build.quant.ranges`), what TensorRT's format uses.

Sensitive layers stay in floating point (``nodes_to_exclude``): which ones is decided in one place,
:mod:`edge_daemon.build.quant.floatset`, that the TensorRT builds use too.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from edge_daemon.build.quant.floatset import ExcludeSet, excluded_nodes
from edge_daemon.build.quant.ranges import collect_histograms, mse_overrides
from edge_daemon.errors import ModelError

log = logging.getLogger(__name__)

Format = Literal["cpu", "tensorrt"]
Method = Literal["entropy", "minmax", "percentile", "mse"]
CALIB_CHUNK = 8  # calibration frames whose activations are held at once


class _Reader:
    """ONNX Runtime CalibrationDataReader over float32 NCHW batches, read in chunks.

    ``__len__`` and ``set_range`` let ``quantize_static`` (option ``CalibStridedMinMax``, which despite its
    name works for every calibrator) collect a chunk, fold it into the histograms and free its activations
    before the next chunk.
    """

    def __init__(self, input_name: str, batches: list[npt.NDArray[np.float32]]) -> None:
        self.input_name = input_name
        self._batches = batches
        self._pos = self._end = 0
        self.count = 0

    def __len__(self) -> int:
        return len(self._batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._pos, self._end = start_index, end_index

    def get_next(self) -> dict[str, npt.NDArray[np.float32]] | None:
        if self._pos >= min(self._end, len(self._batches)):
            return None
        batch = self._batches[self._pos]
        self._pos += 1
        self.count += 1
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._pos = 0


@dataclass(frozen=True)
class QuantResult:
    path: Path
    excluded: list[str]
    calibration_batches: int


def quantize(
    fp32: Path,
    out: Path,
    batches: Iterable[npt.NDArray[np.float32]],
    fmt: Format = "cpu",
    method: Method = "entropy",
    exclude: ExcludeSet | list[str] = "head-final+attn",
) -> QuantResult:
    """Write the Q/DQ model to ``out`` (not atomically: the caller writes to a temp path and renames)."""
    try:
        import onnx
        from onnxruntime.quantization import (
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quantize_static,
        )
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        raise ModelError(
            f"INT8 quantization needs the onnx package: pip install 'edge-daemon[quant]' ({exc})"
        ) from None
    model = onnx.load(str(fp32))
    names = [n.name for n in model.graph.node]
    input_name = model.graph.input[0].name
    excluded = excluded_nodes(names, exclude)
    with tempfile.TemporaryDirectory(prefix=".qdq-", dir=out.parent) as tmp:
        pre = Path(tmp) / "pre.onnx"
        data = list(batches)
        if not data:
            raise ModelError("INT8 quantization: no calibration data")
        chunk = min(CALIB_CHUNK, len(data))
        if len(data) % chunk:
            log.info(
                "calibration: using %d of %d frames (a multiple of %d)",
                len(data) // chunk * chunk,
                len(data),
                chunk,
            )
            data = data[: len(data) // chunk * chunk]
        reader = _Reader(input_name, data)
        chatter = io.StringIO()  # ONNX Runtime's quantizer prints progress; keep it out of stdout
        with contextlib.redirect_stdout(chatter):
            # Symbolic shape inference fails on a Reshape in these models; ONNX shape inference suffices.
            quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        overrides = None
        if method == "mse":  # ranges from our own histograms; ONNX Runtime's MinMax pass is then overridden
            hists = collect_histograms(pre, reader, chunk)
            overrides = mse_overrides(hists, symmetric=fmt == "tensorrt")
            reader.count = 0
        with contextlib.redirect_stdout(chatter):
            _quantize_static(
                quantize_static,
                CalibrationMethod,
                QuantFormat,
                QuantType,
                pre,
                out,
                reader,
                fmt,
                method,
                excluded,
                chunk,
                overrides,
            )
        for line in chatter.getvalue().splitlines():
            log.debug("onnxruntime.quantization: %s", line)
    _carry_metadata(model, out)
    log.info(
        "quantized %s -> %s (%s format, %s calibration on %d batches, %d nodes kept in float)",
        fp32.name,
        out.name,
        fmt,
        method,
        reader.count,
        len(excluded),
    )
    return QuantResult(out, excluded, reader.count)


def _quantize_static(
    quantize_static: Any,
    methods: Any,
    formats: Any,
    types: Any,
    pre: Path,
    out: Path,
    reader: _Reader,
    fmt: Format,
    method: Method,
    excluded: list[str],
    chunk: int,
    overrides: dict[str, list[dict[str, Any]]] | None = None,
) -> None:
    quantize_static(
        str(pre),
        str(out),
        reader,  # duck-typed CalibrationDataReader
        quant_format=formats.QDQ,
        activation_type=types.QUInt8 if fmt == "cpu" else types.QInt8,
        weight_type=types.QInt8,
        per_channel=True,
        calibrate_method={
            "entropy": methods.Entropy,
            "minmax": methods.MinMax,
            "percentile": methods.Percentile,
            "mse": methods.MinMax,  # every activation's range comes from ``overrides``
        }[method],
        nodes_to_exclude=excluded,
        extra_options={
            "ActivationSymmetric": fmt == "tensorrt",
            "WeightSymmetric": True,
            "CalibMovingAverage": method == "minmax",
            # Calibrate in chunks of ``chunk`` frames, folding each into the histograms. Without it ONNX
            # Runtime keeps every intermediate tensor of every calibration frame in memory: 100 frames of a
            # 480x576 YOLOv8s exceeded 23 GiB and the process was killed.
            "CalibStridedMinMax": chunk,
            **({"TensorQuantOverrides": overrides} if overrides else {}),
        },
    )


def _carry_metadata(src: Any, out: Path) -> None:
    """Keep the FP32 model's metadata (class names, stride, task) in the Q/DQ model."""
    import onnx

    q = onnx.load(str(out))
    have = {p.key for p in q.metadata_props}
    for prop in src.metadata_props:
        if prop.key not in have:
            entry = q.metadata_props.add()
            entry.key, entry.value = prop.key, prop.value
    onnx.save(q, str(out))
