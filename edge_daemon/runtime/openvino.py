"""OpenVINO backend: Intel CPUs (and Intel GPUs) without an NVIDIA GPU.

Loads the daemon's ONNX model (a ``.pt`` is exported once, as for ONNX Runtime) or Ultralytics' own
OpenVINO export (``model.path: …_openvino_model/model.xml``, metadata from the ``metadata.yaml`` beside it).
Precision is OpenVINO's ``INFERENCE_PRECISION_HINT``: ``auto`` lets the CPU plugin pick (bf16 on CPUs with
AVX512_BF16 or AMX, fp32 elsewhere), ``bf16`` and ``fp32`` force one; the precision reported is the one
the compiled model says it runs, never the one asked for. ``int8`` loads the IR NNCF quantized at build
time (:mod:`edge_daemon.build.quant.openvino`), its float layers in fp32. Compiled blobs are cached by
OpenVINO itself (``CACHE_DIR``) in a folder keyed like the other artifacts (model hash, input size,
precision, OpenVINO version; :func:`edge_daemon.build.openvino_cache_dir`), so a later boot imports
instead of compiling.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import openvino as ov
import yaml

from edge_daemon.errors import EngineError, ModelError
from edge_daemon.model.onnxinfo import read_onnx_info
from edge_daemon.runtime.base import Artifact, EngineInfo, InferenceEngine, Outputs

log = logging.getLogger(__name__)

HINTS = {"bf16": "bf16", "fp32": "f32"}
# What the compiled model's INFERENCE_PRECISION_HINT says, in the names the rest of the daemon uses.
REPORTED = {"bf16": "bf16", "f32": "fp32", "f16": "fp16"}


def ir_metadata(xml: Path) -> dict[str, str]:
    """Ultralytics' ``metadata.yaml`` beside an OpenVINO export, as ONNX-style string values."""
    meta_file = xml.parent / "metadata.yaml"
    if not meta_file.is_file():
        return {}
    try:
        raw = yaml.safe_load(meta_file.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"{meta_file}: cannot read the export's metadata: {exc}") from None
    return {str(k): v if isinstance(v, str) else repr(v) for k, v in raw.items()}


def _per_image(shape: ov.PartialShape) -> tuple[int | None, ...]:
    return tuple(d.get_length() if d.is_static else None for d in list(shape)[1:])


def _name(port: Any, default: str) -> str:
    """A port's tensor name; an Ultralytics IR export leaves its outputs unnamed."""
    names = port.get_names()
    return str(next(iter(sorted(names)))) if names else default


class OpenVinoEngine(InferenceEngine):
    """One compiled model: one infer request for :meth:`run`, and with THROUGHPUT a pool of ``requests`` for
    :meth:`start`, which keeps several batches in flight."""

    def __init__(self, compiled: ov.CompiledModel, info: EngineInfo, requests: int = 1) -> None:
        self._compiled: ov.CompiledModel | None = compiled
        self._request = compiled.create_infer_request()
        self.info = info
        # THROUGHPUT: several requests (OpenVINO's streams) run batches at once; start() takes a free one.
        self._pool: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()
        for _ in range(requests if requests > 1 else 0):
            self._pool.put(compiled.create_infer_request())
        self.requests = requests

    @classmethod
    def from_config(cls, config: Any, artifact: Artifact) -> OpenVinoEngine:
        path = artifact.path
        core = ov.Core()
        if artifact.cache_dir is not None:
            artifact.cache_dir.mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(artifact.cache_dir)})
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses for unreadable files
            raise ModelError(f"{path}: OpenVINO cannot read this model: {exc}") from None
        if len(model.inputs) != 1 or model.inputs[0].get_partial_shape().rank.get_length() != 4:
            raise ModelError(f"{path}: expected one NCHW image input, got {model.inputs}")
        shape = model.inputs[0].get_partial_shape()
        dims = list(shape)
        if dims[2].is_static and dims[3].is_static:
            input_hw = (dims[2].get_length(), dims[3].get_length())
            if artifact.imgsz is not None and tuple(artifact.imgsz) != input_hw:
                log.info("model input is fixed at %dx%d (HxW); model.imgsz ignored", *input_hw)
        elif artifact.imgsz is not None:
            input_hw = (int(artifact.imgsz[0]), int(artifact.imgsz[1]))
        else:
            raise ModelError(f"{path}: input size is dynamic; set model.imgsz in the config")
        batch = dims[0].get_length() if dims[0].is_static else 1
        model.reshape({model.inputs[0]: ov.PartialShape([batch, 3, *input_hw])})
        props: dict[str, Any] = {"PERFORMANCE_HINT": config.performance_hint}
        if config.precision in HINTS:
            props["INFERENCE_PRECISION_HINT"] = HINTS[config.precision]
        elif artifact.precision == "int8":  # the float set stays fp32: in bf16 it cost agreement (measured)
            props["INFERENCE_PRECISION_HINT"] = "f32"
        if config.threads:
            props["INFERENCE_NUM_THREADS"] = config.threads
        try:
            compiled = core.compile_model(model, config.device, props)
        except Exception as exc:
            raise EngineError(f"OpenVINO cannot compile {path.name} for {config.device}: {exc}") from None
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        running = hint.to_string() if hasattr(hint, "to_string") else str(hint)
        precision = "int8" if artifact.precision == "int8" else REPORTED.get(running, running)
        if config.precision == "bf16" and precision != "bf16":
            log.warning("openvino: bf16 asked for but this %s runs %s", config.device, precision)
        metadata = ir_metadata(path) if path.suffix.lower() == ".xml" else read_onnx_info(path)[0]
        info = EngineInfo(
            backend="openvino",
            precision=precision,
            input_name=_name(model.inputs[0], "images"),
            input_hw=input_hw,
            max_batch=batch,
            providers=(config.device,),
            metadata={**metadata, **artifact.metadata},
            output_names=tuple(_name(o, f"output{i}") for i, o in enumerate(model.outputs)),
            output_shapes=tuple(_per_image(o.get_partial_shape()) for o in model.outputs),
        )
        log.info(
            "openvino %s: %s input %dx%d on %s, %s, %s threads",
            ov.get_version(),
            path.name,
            *input_hw,
            config.device,
            precision,
            compiled.get_property("INFERENCE_NUM_THREADS") if config.device == "CPU" else "-",
        )
        requests = 1
        if config.performance_hint == "THROUGHPUT":
            requests = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
            log.info("openvino: THROUGHPUT, %d requests in flight", requests)
        return cls(compiled, info, requests)

    def start(self, batch: npt.NDArray[np.float32]) -> Callable[[], tuple[Outputs, float]]:
        """With several requests: start ``batch`` on a free one (waiting while all are busy) and return at
        once. When it completes, OpenVINO's callback copies its outputs and frees the request (so a request
        never waits for its reader); the returned function waits for that copy."""
        if self.requests <= 1:
            return super().start(batch)
        compiled = self._compiled
        if compiled is None:
            raise EngineError("engine is closed")
        self.check_input(batch)
        request = self._pool.get()
        done = threading.Event()
        result: list[Any] = []

        def finished(_: Any) -> None:
            try:
                outs = tuple(np.array(request.get_tensor(o).data, dtype=np.float32) for o in compiled.outputs)
                result.append((outs, float(request.latency)))
            except Exception as exc:  # handed to the waiter
                result.append(exc)
            finally:
                self._pool.put(request)
                done.set()

        request.set_callback(finished, None)
        try:
            request.start_async({0: batch}, share_inputs=False)
        except Exception as exc:
            self._pool.put(request)
            raise EngineError(f"openvino inference failed: {exc}") from exc

        def wait() -> tuple[Outputs, float]:
            done.wait()
            if isinstance(result[0], Exception):
                raise EngineError(f"openvino inference failed: {result[0]}")
            return result[0]  # type: ignore[no-any-return]

        return wait

    def run(self, batch: npt.NDArray[np.float32]) -> Outputs:
        if self._compiled is None:
            raise EngineError("engine is closed")
        self.check_input(batch)
        try:
            result = self._request.infer({0: batch}, share_inputs=True)
        except Exception as exc:
            raise EngineError(f"openvino inference failed: {exc}") from exc
        # share_outputs is off (the default): each result is a fresh array, safe to keep after the next run.
        return tuple(np.asarray(result[out], dtype=np.float32) for out in self._compiled.outputs)

    def close(self) -> None:
        self._compiled = None
