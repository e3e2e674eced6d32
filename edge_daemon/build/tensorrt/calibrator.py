"""INT8 post-training calibrators (TensorRT 8.6 and 10.x implicit quantization), made on first use.

TensorRT drives a calibrator like this: ``read_calibration_cache()``; if that returns non-empty bytes, it
uses them and never asks for data; otherwise it calls ``get_batch(names)`` until it returns an empty list,
then ``write_calibration_cache(cache)``. Batches are letterboxed exactly like inference frames and copied
into a device buffer the calibrator owns. The cache file lives under the key's calibration digest (model,
shape, batch profile, algorithm, calibration data, TensorRT version, GPU, L4T), never per ONNX file alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tensorrt as trt

from edge_daemon.build.calibration import Progress, StatusFn
from edge_daemon.errors import EngineError
from edge_daemon.files import atomic_write
from edge_daemon.gpu.memory import DeviceView, HostView, Memory

log = logging.getLogger(__name__)


class _CalibratorCore:
    """The shared half of both calibrators: batches in, device pointer out, cache file in and out.

    Listed first among the bases, its ``super().__init__()`` runs the TensorRT calibrator base's
    constructor, which TensorRT's Python bindings require.
    """

    def __init__(
        self,
        batches: Iterator[npt.NDArray[np.float32]],
        total_batches: int,
        batch_shape: tuple[int, int, int, int],
        cache_path: Path,
        memory: Memory,
        status: StatusFn | None = None,
    ) -> None:
        super().__init__()
        self.batch_shape = batch_shape
        self.cache_path = cache_path
        self.batches_used = 0
        self.cache_read = False
        self.cache_written = False
        self.error: BaseException | None = None  # the first exception TensorRT swallowed
        self._batches = batches
        self._memory = memory
        self._host: HostView = memory.host(batch_shape, np.float32)
        self._device: DeviceView = memory.device(int(np.prod(batch_shape)) * 4)
        self._progress = Progress(total_batches, "calibrating INT8, batch", status)

    def get_batch_size(self) -> int:
        return self.batch_shape[0]

    def get_batch(self, names: list[str]) -> list[int]:
        """Device pointers of the next batch, one per input; an empty list when the data is exhausted.

        TensorRT's bindings swallow an exception raised here and take it for the end of the data, so the
        first one is kept in ``error`` for the caller to see after the build."""
        try:
            batch = next(self._batches, None)
            if batch is None:
                return []
            if batch.shape != self.batch_shape:
                raise ValueError(f"calibration batch {batch.shape} does not match {self.batch_shape}")
            self._host.write(batch)
            self._memory.upload(self._device, self._host)
            self._memory.synchronize()
        except Exception as exc:
            self.error = self.error or exc
            raise
        self.batches_used += 1
        self._progress.update(self.batches_used)
        return [self._device.ptr]

    def read_calibration_cache(self) -> bytes | None:
        """The cache's bytes, or None: TensorRT's documented "no cache" (it then calibrates from data)."""
        try:
            data = self.cache_path.read_bytes()
        except OSError:
            return None
        if not data:
            return None
        self.cache_read = True
        log.info("using INT8 calibration cache %s", self.cache_path.name)
        return data

    def write_calibration_cache(self, cache: Any) -> None:
        try:
            atomic_write(self.cache_path, bytes(cache))
        except Exception as exc:  # swallowed by the bindings: keep it for the caller
            self.error = self.error or exc
            raise
        self.cache_written = True
        log.info("wrote INT8 calibration cache %s (%d batches)", self.cache_path.name, self.batches_used)

    def close(self) -> None:
        self._host.close()
        self._device.close()


# TensorRT's base class per algorithm. Looked up when a calibrator is made, never at import: TensorRT 11 has
# no calibrators at all, and this module must import there (the explicit-INT8 route does not use them).
_BASES = {"entropy": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator"}
_CLASSES: dict[str, type] = {}


def calibrator_class(algorithm: str) -> type:
    """The calibrator class for ``algorithm`` (entropy: TensorRT's recommended default for CNNs; minmax:
    keeps the full activation range), made on first use. EngineError where this TensorRT has none."""
    cls = _CLASSES.get(algorithm)
    if cls is None:
        base = getattr(trt, _BASES[algorithm], None)
        if base is None:
            raise EngineError(
                f"TensorRT {trt.__version__} has no {_BASES[algorithm]} (implicit INT8 was removed in "
                "TensorRT 11); use engine.int8_mode: explicit"
            )
        cls = _CLASSES[algorithm] = type(f"{algorithm.title()}Calibrator", (_CalibratorCore, base), {})
        cls.algorithm = algorithm  # type: ignore[attr-defined]
    return cls
