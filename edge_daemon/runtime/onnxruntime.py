"""ONNX Runtime backend: the embedded CPU default, with the CUDA and TensorRT providers when installed."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from edge_daemon.errors import EngineError, ModelError
from edge_daemon.runtime.base import Artifact, EngineInfo, InferenceEngine, Outputs

log = logging.getLogger(__name__)

PROVIDERS = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
}


def _physical_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware), the usual best ORT thread count on CPUs."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _per_image(shape: list[Any]) -> tuple[int | None, ...]:
    """An output's shape without the batch dimension; None where ONNX names a size (dynamic)."""
    return tuple(d if isinstance(d, int) else None for d in shape[1:])


class OnnxRuntimeEngine(InferenceEngine):
    """Runs an ONNX detect model with one ``InferenceSession``. Build it with :meth:`from_config`."""

    def __init__(self, session: ort.InferenceSession, info: EngineInfo) -> None:
        self._session: ort.InferenceSession | None = session
        self.info = info
        self._output_names = list(info.output_names)

    @classmethod
    def from_config(cls, config: Any, artifact: Artifact) -> OnnxRuntimeEngine:
        """Open ``artifact.path`` (FP32 or Q/DQ ONNX); ``artifact.imgsz`` (H, W) applies only to
        dynamic-size models. The Q/DQ model for ``precision: int8`` is made before, by the build layer."""
        model_path, imgsz = artifact.path, artifact.imgsz
        available = set(ort.get_available_providers())
        wanted = [PROVIDERS[p] for p in config.providers]
        missing = [p for p in wanted if p not in available]
        if missing:
            log.warning("ONNX Runtime providers not available here, skipped: %s", ", ".join(missing))
        providers = [p for p in wanted if p in available] or ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.intra_op_num_threads = config.intra_op_threads or _physical_cores()
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        if not config.spin_wait:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = ort.InferenceSession(str(model_path), sess_options=opts, providers=providers)
        except Exception as exc:  # ORT raises its own untyped errors for corrupt/unsupported files
            raise ModelError(f"{model_path}: ONNX Runtime cannot load this model: {exc}") from None

        inputs, outputs = session.get_inputs(), session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"{model_path}: expected one NCHW image input, got {[i.shape for i in inputs]}")
        inp = inputs[0]
        if inp.type != "tensor(float)":
            raise ModelError(f"{model_path}: input must be float32, got {inp.type}")
        _, _, h, w = inp.shape
        batch = inp.shape[0]
        if isinstance(h, int) and isinstance(w, int):
            if imgsz is not None and (h, w) != tuple(imgsz):
                log.info("model input is fixed at %dx%d (HxW); model.imgsz %s ignored", h, w, imgsz)
            input_hw = (h, w)
        elif imgsz is not None:
            input_hw = (int(imgsz[0]), int(imgsz[1]))
        else:
            raise ModelError(f"{model_path}: input size is dynamic; set model.imgsz in the config")
        meta = dict(session.get_modelmeta().custom_metadata_map)
        info = EngineInfo(
            backend="onnxruntime",
            precision=artifact.precision or "fp32",
            input_name=inp.name,
            input_hw=input_hw,
            max_batch=batch if isinstance(batch, int) else 64,
            providers=tuple(session.get_providers()),
            metadata=meta,
            output_names=tuple(o.name for o in outputs),
            output_shapes=tuple(_per_image(o.shape) for o in outputs),
        )
        log.info(
            "onnxruntime %s: %s input %dx%d, providers %s, %d threads",
            ort.__version__,
            model_path.name,
            h if isinstance(h, int) else input_hw[0],
            w if isinstance(w, int) else input_hw[1],
            ",".join(info.providers),
            opts.intra_op_num_threads,
        )
        return cls(session, info)

    def run(self, batch: npt.NDArray[np.float32]) -> Outputs:
        if self._session is None:
            raise EngineError("engine is closed")
        self.check_input(batch)
        try:
            outs = self._session.run(self._output_names, {self.info.input_name: batch})
        except Exception as exc:
            raise EngineError(f"onnxruntime inference failed: {exc}") from exc
        return tuple(np.asarray(o, dtype=np.float32) for o in outs)

    def close(self) -> None:
        self._session = None
