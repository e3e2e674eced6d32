"""First boot: turn the configured model into a loaded engine, building what it needs on the way.

:func:`load_model` is the one orchestrator of build-time and run-time: it resolves the model file (``.pt``
exported once), asks the build layer for the engine's artifact (:func:`edge_daemon.build.prepare`: a
TensorRT plan for this device, a Q/DQ INT8 model, or the model file itself), and hands that path to the
engine, which only loads it. A cached artifact the engine refuses is moved aside and built once more.
All of this happens before the first frame is served.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_daemon.build import BuildRequest, prepare
from edge_daemon.build.export import resolve_onnx, resolve_torchscript
from edge_daemon.camera import as_bgr, check_gstreamer, open_source
from edge_daemon.config import OnnxRuntimeEngineConfig, OpenVinoEngineConfig, Settings, TorchEngineConfig
from edge_daemon.errors import CameraError, EngineError
from edge_daemon.model.info import auto_imgsz, model_info
from edge_daemon.publish.payload import ModelTag
from edge_daemon.runtime import Artifact, InferenceEngine, backend_class
from edge_daemon.service.notify import status
from edge_daemon.types import ModelInfo

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    engine: InferenceEngine
    info: ModelInfo
    tag: ModelTag
    onnx_path: Path  # the model file: FP32 ONNX, or TorchScript for the torch backend
    artifact: Artifact  # what the engine loaded: the model file, its Q/DQ model, or a TensorRT plan
    fallback: str | None = None  # why a GPU engine was asked for but the CPU one runs, if it does


def engine_config(settings: Settings, memory: Any = None) -> tuple[Any, str | None]:
    """The engine settings to use and, when a GPU backend cannot run here, the reason it fell back.

    With ``gpu.cpu_fallback`` (default) a machine without a usable GPU runs the CPU engine (ONNX Runtime
    fp32; torch on the CPU for a TorchScript model) and says why once; without it, start-up fails.
    """
    cfg = settings.engine
    if memory is not None or isinstance(cfg, OnnxRuntimeEngineConfig | OpenVinoEngineConfig):
        return cfg, None  # CPU engines
    if cfg.backend == "torch" and cfg.device_index is None:
        return cfg, None
    from edge_daemon.gpu import probe

    reason = probe(cfg.backend, cfg.device_index or 0)
    if reason is None:
        return cfg, None
    if not settings.gpu.cpu_fallback:
        raise EngineError(f"engine {cfg.backend}: no usable GPU here: {reason} (gpu.cpu_fallback is off)")
    torchscript = settings.model.path.suffix.lower() == ".torchscript"
    cpu: Any = (
        TorchEngineConfig(backend="torch", precision="fp32", device_index=None)
        if torchscript
        else OnnxRuntimeEngineConfig()
    )
    log.warning(
        "engine %s cannot run here (%s): falling back to the CPU path (%s fp32)",
        cfg.backend,
        reason,
        cpu.backend,
    )
    return cpu, reason


def load_model(settings: Settings, memory: Any = None) -> LoadedModel:
    """Resolve the model file (exporting .pt once), open the configured engine, read the metadata.

    For TensorRT this is where the first boot builds and calibrates the engine, before any frame is
    served. ``memory``: a GPU memory provider for the engine (None: CUDA on the configured device).
    """
    check_gstreamer(settings.cameras)  # before minutes of building, not at the first frame
    status("loading model")
    engine_cfg, fallback = engine_config(settings, memory)
    gpu_engine = engine_cfg.backend in ("tensorrt", "torch") and engine_cfg.device_index is not None
    if memory is None and fallback is None and gpu_engine:
        from edge_daemon.gpu import cuda

        try:  # before the engine and the decoders wait; an optimisation, so a refusal is not fatal
            cuda.set_wait(engine_cfg.device_index, settings.gpu.wait)
        except cuda.CudaError as exc:
            log.warning("cannot set gpu.wait %s (%s): CUDA's own default stays", settings.gpu.wait, exc)
    batch_dynamic = getattr(engine_cfg, "max_batch", 1) > 1
    imgsz = settings.model.imgsz
    if (
        imgsz is None
        and engine_cfg.backend in ("tensorrt", "torch")
        and settings.model.path.suffix.lower() == ".pt"
    ):
        imgsz = camera_imgsz(settings)
    if engine_cfg.backend == "torch":
        onnx_path, sha = resolve_torchscript(settings.model.path, imgsz, settings.model.cache_dir)
    else:
        onnx_path, sha = resolve_onnx(
            settings.model.path, imgsz, settings.model.cache_dir, dynamic_batch=batch_dynamic
        )
    if memory is None and engine_cfg.backend == "tensorrt":
        from edge_daemon.gpu.memory import CudaMemory

        memory = CudaMemory(engine_cfg.device_index)
    request = BuildRequest(
        onnx_path=onnx_path,
        model_sha256=sha,
        model_stem=settings.model.path.stem,
        imgsz=imgsz,
        cache_dir=settings.model.cache_dir,
        camera=settings.cameras[0],
        memory=memory,
        status=status,
    )
    engine, artifact = open_engine(engine_cfg, request)
    try:
        info = model_info(
            engine.info.metadata, engine.info.input_hw, settings.model.path, sha, engine.info.output_shapes
        )
    except Exception:
        engine.close()
        raise
    tag = ModelTag(info.model_id, engine.info.precision, engine.info.backend, engine.info.input_hw, info.task)
    log.info(
        "model %s: task %s, %s head, %d classes, input %dx%d, %s %s",
        info.model_id,
        info.task,
        info.head,
        info.num_classes,
        *info.input_hw,
        tag.backend,
        tag.precision,
    )
    return LoadedModel(engine, info, tag, onnx_path, artifact, fallback)


def camera_imgsz(settings: Settings) -> tuple[int, int]:
    """Input size from the first camera's aspect ratio, chosen at first boot and remembered after.

    Remembered in ``<cache_dir>/auto-imgsz/<camera>.json`` so that later boots neither depend on the camera
    answering before the engine loads nor pick another size (which would rebuild the engine).
    """
    cam = settings.cameras[0]
    memo = settings.model.cache_dir / "auto-imgsz" / f"{cam.name}.json"
    try:
        saved = json.loads(memo.read_text(encoding="utf-8"))
        return int(saved["imgsz"][0]), int(saved["imgsz"][1])
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        pass
    source = open_source(cam)
    try:
        source.open()
        frame = as_bgr(source.read())
    finally:
        source.close()
    if frame is None:
        raise CameraError(f"camera {cam.name}: no frame to choose the model input size from; set model.imgsz")
    imgsz = auto_imgsz((frame.shape[0], frame.shape[1]))
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"frame_hw": list(frame.shape[:2]), "imgsz": list(imgsz)}), encoding="utf-8")
    log.info("camera %s gives %dx%d frames: model input %dx%d (HxW)", cam.name, *frame.shape[:2], *imgsz)
    return imgsz


def open_engine(config: Any, request: BuildRequest) -> tuple[InferenceEngine, Artifact]:
    """Build what the engine of ``config`` needs (first boot only), then load it.

    Returns the engine and the artifact it loaded. A backend that is not installed fails first, before
    anything is built. An artifact from the cache that the engine refuses (a plan TensorRT will not
    deserialize, a damaged file) is moved aside and built once more. On failure the request's GPU memory
    is released.
    """
    try:
        engine_cls = backend_class(config.backend)
        artifact, cached = prepare(config, request)
        try:
            return engine_cls.from_config(config, artifact), artifact
        except EngineError as exc:
            if not cached:
                raise
            artifact, _ = prepare(config, request, refused=str(exc))
        try:
            return engine_cls.from_config(config, artifact), artifact
        except EngineError as exc:
            raise EngineError(f"the engine just built ({artifact.path.name}) does not load: {exc}") from None
    except BaseException:
        if request.memory is not None:
            request.memory.close()
        raise
