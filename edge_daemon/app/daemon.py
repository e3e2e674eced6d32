"""Turns validated Settings and a loaded model into the pipeline's parts (cameras, stage, publisher) and
runs the daemon. Nothing here runs per frame; the model and engine come from :mod:`edge_daemon.app.boot`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from edge_daemon.analytics import CameraAnalyzer, MotionGate, SnapshotStore
from edge_daemon.app.boot import LoadedModel, load_model
from edge_daemon.camera import Backoff, DropPolicy, open_source
from edge_daemon.config import Settings
from edge_daemon.errors import ConfigError, EngineError
from edge_daemon.model.tasks import DecodeParams, decoder, fit
from edge_daemon.pipeline.runner import CameraPlan, Pipeline, PipelineStats, ResultHook
from edge_daemon.pipeline.stages import CpuStage, Stage
from edge_daemon.publish.base import Publisher
from edge_daemon.publish.mqtt import MqttPublisher
from edge_daemon.publish.payload import new_run_id
from edge_daemon.types import ModelInfo

log = logging.getLogger(__name__)


def decode_params(settings: Settings, info: ModelInfo) -> DecodeParams:
    d = settings.detect
    return DecodeParams(
        num_classes=info.num_classes,
        conf=d.conf,
        iou=d.iou,
        classes=tuple(d.classes) if d.classes is not None else None,
        max_det=d.max_det,
        keypoints=info.kpt_shape,
    )


def camera_plans(settings: Settings, names: dict[int, str] | None = None, run: str = "") -> list[CameraPlan]:
    """One plan per camera; with the model's ``names``, each with its analytics (tracking, zones, events,
    snapshots, which detections go out) and its motion gate when enabled."""
    snaps = settings.analytics.snapshots
    store = None
    if names is not None and snaps.enabled and any(c.tracking.enabled for c in settings.cameras):
        store = SnapshotStore(snaps.dir, snaps.max_bytes, snaps.max_age_s)
    return [
        CameraPlan(
            name=cam.name,
            source=open_source(cam),
            policy=DropPolicy(cam.drop_policy),
            queue_size=cam.queue_size,
            backoff=Backoff(cam.reconnect_initial_s, cam.reconnect_max_s, jitter=0.2),
            max_frames=cam.max_frames,
            analyzer=None
            if names is None
            else CameraAnalyzer(cam.name, run, cam, settings.analytics, settings.publish, names, store),
            gate=MotionGate(cam.motion) if cam.motion.enabled else None,
        )
        for cam in settings.cameras
    ]


def make_stage(settings: Settings, model: LoadedModel) -> Stage:
    """The CUDA stage when the engine runs on device memory (and ``gpu.preprocess`` allows), else CPU."""
    engine, mode = model.engine, settings.gpu.preprocess
    how = fit(model.info.task)
    on_device = engine.device_io() is not None
    if mode == "cpu" or (mode == "auto" and not on_device):
        return CpuStage(engine, how)
    if not on_device:
        raise ConfigError(
            f"gpu.preprocess is 'gpu' but the {engine.info.backend} engine runs on the host; "
            "use 'auto' or 'cpu'"
        )
    from edge_daemon.pipeline.cuda_stage import GpuStage

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
            fit=how,
        )
    except EngineError as exc:
        if mode == "gpu":
            raise
        log.warning("CUDA pipeline unavailable (%s): pre-processing on the CPU", exc)
        return CpuStage(engine, how)


def build_pipeline(
    settings: Settings,
    model: LoadedModel,
    publisher: Publisher | None = None,
    on_result: ResultHook | None = None,
) -> Pipeline:
    run = new_run_id()
    plans = camera_plans(settings, model.info.names, run)  # before the stage: a config error costs nothing
    stage = make_stage(settings, model)
    return Pipeline(
        cameras=plans,
        engine=model.engine,
        decode=decoder(model.info.head, decode_params(settings, model.info)),
        names=model.info.names,
        model_tag=model.tag,
        publisher=publisher or MqttPublisher.from_config(settings.mqtt, settings.device_id),
        device_id=settings.device_id,
        stats_interval_s=settings.log.stats_interval_s,
        on_result=on_result,
        stage=stage,
        extra_info={"pipeline": stage.name, **({"fallback": model.fallback} if model.fallback else {})},
        stuck_batch_s=settings.service.stuck_batch_s,
        run_id=run,
    )


def run_daemon(
    settings: Settings, stop: threading.Event, on_result: ResultHook | None = None, memory: Any = None
) -> PipelineStats:
    """The main job: serve every camera until ``stop`` is set (or all finite sources end).

    ``memory``: the GPU memory provider for a TensorRT engine (None: CUDA on the configured device).
    """
    model = load_model(settings, memory=memory)
    pipeline: Pipeline | None = None
    try:
        pipeline = build_pipeline(settings, model, on_result=on_result)
        stats = pipeline.run(stop, settings.service.drain_timeout_s)
        if pipeline.error is not None:
            raise pipeline.error
        return stats
    finally:
        if pipeline is not None and pipeline.abandoned:
            # Closing the engine would free device buffers a running execute may still use.
            log.warning(
                "the %s thread is still inside the engine at shutdown: leaving the engine and its buffers "
                "to the operating system rather than freeing them under it",
                " and ".join(pipeline.abandoned),
            )
        else:
            model.engine.close()
