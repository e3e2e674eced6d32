"""Turns validated Settings into ready parts (model, engine, cameras, publisher) and runs the daemon.

All set-up work happens here, before the first frame: exporting/loading the model and opening the
engine. Nothing here runs per frame.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_daemon.camera import Backoff, DropPolicy, open_source
from edge_daemon.engine import EngineRequest, InferenceEngine, load_engine
from edge_daemon.errors import CameraError, ConfigError, EngineError
from edge_daemon.health import status
from edge_daemon.model import auto_imgsz, model_info, resolve_onnx, resolve_torchscript
from edge_daemon.pipeline import CameraPlan, Pipeline, PipelineStats, ResultHook
from edge_daemon.postprocess import DecodeParams
from edge_daemon.publish.mqtt import MqttPublisher, Publisher
from edge_daemon.publish.payload import ModelTag
from edge_daemon.settings import OnnxRuntimeEngineConfig, Settings, TorchEngineConfig
from edge_daemon.stages import CpuStage, Stage
from edge_daemon.types import ModelInfo

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    engine: InferenceEngine
    info: ModelInfo
    tag: ModelTag
    onnx_path: Path  # the file the engine was made from: FP32 ONNX, or TorchScript for the torch backend
    fallback: str | None = None  # why a GPU engine was asked for but the CPU one runs, if it does


def engine_config(settings: Settings, memory: Any = None) -> tuple[Any, str | None]:
    """The engine settings to use and, when a GPU backend cannot run here, the reason it fell back.

    With ``gpu.cpu_fallback`` (default) a machine without a usable GPU runs the CPU engine (ONNX Runtime
    fp32; torch on the CPU for a TorchScript model) and says why once; without it, start-up fails.
    """
    cfg = settings.engine
    if memory is not None or cfg.backend == "onnxruntime":
        return cfg, None
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
    served. ``memory``: a GPU memory provider for the engine (None: the backend's default).
    """
    status("loading model")
    engine_cfg, fallback = engine_config(settings, memory)
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
    request = EngineRequest(
        onnx_path=onnx_path,
        model_sha256=sha,
        model_stem=settings.model.path.stem,
        imgsz=imgsz,
        cache_dir=settings.model.cache_dir,
        camera=settings.cameras[0],
        memory=memory,
        status=status,
    )
    engine = load_engine(engine_cfg, request)
    try:
        info = model_info(engine.info.metadata, engine.info.input_hw, settings.model.path, sha)
    except Exception:
        engine.close()
        raise
    tag = ModelTag(info.model_id, engine.info.precision, engine.info.backend, engine.info.input_hw)
    log.info(
        "model %s: task %s, %d classes, input %dx%d, %s %s",
        info.model_id,
        info.task,
        info.num_classes,
        *info.input_hw,
        tag.backend,
        tag.precision,
    )
    return LoadedModel(engine, info, tag, onnx_path, fallback)


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
        frame = source.read()
    finally:
        source.close()
    if frame is None:
        raise CameraError(f"camera {cam.name}: no frame to choose the model input size from; set model.imgsz")
    imgsz = auto_imgsz((frame.shape[0], frame.shape[1]))
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(json.dumps({"frame_hw": list(frame.shape[:2]), "imgsz": list(imgsz)}), encoding="utf-8")
    log.info("camera %s gives %dx%d frames: model input %dx%d (HxW)", cam.name, *frame.shape[:2], *imgsz)
    return imgsz


def decode_params(settings: Settings, info: ModelInfo) -> DecodeParams:
    d = settings.detect
    return DecodeParams(
        num_classes=info.num_classes,
        conf=d.conf,
        iou=d.iou,
        classes=tuple(d.classes) if d.classes is not None else None,
        max_det=d.max_det,
    )


def camera_plans(settings: Settings) -> list[CameraPlan]:
    return [
        CameraPlan(
            name=cam.name,
            source=open_source(cam),
            policy=DropPolicy(cam.drop_policy),
            queue_size=cam.queue_size,
            backoff=Backoff(cam.reconnect_initial_s, cam.reconnect_max_s, jitter=0.2),
            max_frames=cam.max_frames,
        )
        for cam in settings.cameras
    ]


def make_stage(settings: Settings, model: LoadedModel) -> Stage:
    """The CUDA stage when the engine runs on device memory (and ``gpu.preprocess`` allows), else CPU."""
    engine, mode = model.engine, settings.gpu.preprocess
    on_device = engine.device_io() is not None
    if mode == "cpu" or (mode == "auto" and not on_device):
        return CpuStage(engine)
    if not on_device:
        raise ConfigError(
            f"gpu.preprocess is 'gpu' but the {engine.info.backend} engine runs on the host; "
            "use 'auto' or 'cpu'"
        )
    from edge_daemon.gpu.stage import GpuStage

    queued = sum(cam.queue_size for cam in settings.cameras)
    slots = max(3, queued + len(settings.cameras) + settings.gpu.in_flight * engine.info.max_batch)
    mapped = {"auto": None, "on": True, "off": False}[settings.gpu.mapped_frames]
    try:
        return GpuStage(
            engine,
            device_index=getattr(settings.engine, "device_index", 0) or 0,
            frame_slots=slots,
            in_flight=settings.gpu.in_flight,
            mapped=mapped,
            kernel_cache=settings.model.cache_dir / "kernels",
        )
    except EngineError as exc:
        if mode == "gpu":
            raise
        log.warning("CUDA pipeline unavailable (%s): pre-processing on the CPU", exc)
        return CpuStage(engine)


def build_pipeline(
    settings: Settings,
    model: LoadedModel,
    publisher: Publisher | None = None,
    on_result: ResultHook | None = None,
) -> Pipeline:
    stage = make_stage(settings, model)
    return Pipeline(
        cameras=camera_plans(settings),
        engine=model.engine,
        decode_params=decode_params(settings, model.info),
        names=model.info.names,
        model_tag=model.tag,
        publisher=publisher or MqttPublisher.from_config(settings.mqtt, settings.device_id),
        device_id=settings.device_id,
        stats_interval_s=settings.log.stats_interval_s,
        on_result=on_result,
        stage=stage,
        extra_info={"pipeline": stage.name, **({"fallback": model.fallback} if model.fallback else {})},
    )


def run_daemon(
    settings: Settings, stop: threading.Event, on_result: ResultHook | None = None, memory: Any = None
) -> PipelineStats:
    """The main job: serve every camera until ``stop`` is set (or all finite sources end).

    ``memory``: the GPU memory provider for a TensorRT engine (None: CUDA on the configured device).
    """
    model = load_model(settings, memory=memory)
    try:
        pipeline = build_pipeline(settings, model, on_result=on_result)
        stats = pipeline.run(stop)
        if pipeline.error is not None:
            raise pipeline.error
        return stats
    finally:
        model.engine.close()
