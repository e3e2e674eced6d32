"""Turns validated Settings and a loaded model into the pipeline's parts (cameras, stage, publisher) and
runs the daemon. Nothing here runs per frame; the model and engine come from :mod:`edge_daemon.app.boot`.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from typing import Any

from edge_daemon.analytics import CameraAnalyzer, MotionGate, SnapshotDrawer, SnapshotStore
from edge_daemon.app.boot import LoadedModel, load_model
from edge_daemon.app.engine_server import RemoteEngine
from edge_daemon.camera import Backoff, DropPolicy, hardware_source, open_source
from edge_daemon.config import Settings
from edge_daemon.controls import Controls
from edge_daemon.errors import ConfigError, EngineError
from edge_daemon.model.tasks import DecodeParams, decoder, fit
from edge_daemon.pipeline.runner import CameraPlan, Pipeline, PipelineStats, ResultHook
from edge_daemon.pipeline.stages import CpuStage, Stage
from edge_daemon.publish.base import Publisher
from edge_daemon.publish.control import MqttControl
from edge_daemon.publish.discovery import Discovery
from edge_daemon.publish.mqtt import MqttPublisher
from edge_daemon.publish.payload import ModelTag, new_run_id
from edge_daemon.types import Detections, Frame, ModelInfo

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
    drawer = None  # one snapshot drawer (a thread) for every camera
    if names is not None and snaps.enabled and any(c.tracking.enabled for c in settings.cameras):
        store = SnapshotStore(snaps.dir, snaps.max_bytes, snaps.max_age_s)
        drawer = SnapshotDrawer(store, snaps.max_width, snaps.quality)
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
            else CameraAnalyzer(cam.name, run, cam, settings.analytics, settings.publish, names, drawer),
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

    stage_cls = GpuStage
    if isinstance(engine, RemoteEngine):  # the engine process's: batches go to it through shared memory
        from edge_daemon.app.shared_stage import SharedEngineStage

        stage_cls = SharedEngineStage
    queued = sum(cam.queue_size for cam in settings.cameras)
    slots = max(3, queued + len(settings.cameras) + settings.gpu.in_flight * engine.info.max_batch)
    mapped = {"auto": None, "on": True, "off": False}[settings.gpu.mapped_frames]
    try:
        return stage_cls(
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


def mqtt_publisher(
    settings: Settings, names: dict[int, str], tag: ModelTag, controls: Controls
) -> MqttPublisher:
    """The MQTT publisher with its integrations: the control topics (state echoed, retained) and, when
    on, Home Assistant discovery."""
    publisher = MqttPublisher.from_config(settings.mqtt, settings.device_id)
    MqttControl(controls, publisher).echo_all()
    if settings.homeassistant.discovery:
        about = f"{tag.model_id} ({tag.backend} {tag.precision})"
        Discovery(settings, names, about, publisher).start()
    return publisher


def build_pipeline(
    settings: Settings,
    model: LoadedModel,
    publisher: Publisher | None = None,
    on_result: ResultHook | None = None,
    run: str | None = None,
) -> Pipeline:
    """The pipeline for ``settings``' cameras; ``run``: the run id its messages carry (new if None)."""
    run = run or new_run_id()
    plans = camera_plans(settings, model.info.names, run)  # before the stage: a config error costs nothing
    stage = make_stage(settings, model)
    if stage.name == "gpu":  # hardware decode where the camera allows it, into the stage's device memory
        gpu = getattr(settings.engine, "device_index", 0) or 0
        pool = (
            4
            + max(cam.queue_size for cam in settings.cameras)
            + settings.gpu.in_flight * model.engine.info.max_batch
        )
        plans = [
            dataclasses.replace(plan, source=hardware_source(cam, plan.source, gpu, pool))
            for plan, cam in zip(plans, settings.cameras, strict=True)
        ]
    controls = Controls([cam.name for cam in settings.cameras], settings.detect.conf)
    return Pipeline(
        cameras=plans,
        engine=model.engine,
        decode=decoder(model.info.head, decode_params(settings, model.info)),
        names=model.info.names,
        model_tag=model.tag,
        publisher=publisher or mqtt_publisher(settings, model.info.names, model.tag, controls),
        device_id=settings.device_id,
        stats_interval_s=settings.log.stats_interval_s,
        on_result=on_result,
        stage=stage,
        extra_info={
            "pipeline": stage.name,
            "decode": {plan.name: plan.source.decoder for plan in plans},
            **({"fallback": model.fallback} if model.fallback else {}),
        },
        stuck_batch_s=settings.service.stuck_batch_s,
        run_id=run,
        controls=controls,
    )


def start_web(settings: Settings) -> Any:
    """The HTTP server (metrics, health, live view) when ``http.enabled``, else None."""
    if not settings.http.enabled:
        return None
    from edge_daemon.web import DaemonState, WebServer

    server = WebServer(settings.http, DaemonState(cameras=[cam.name for cam in settings.cameras]))
    return server if server.start() else None


def _hooks(live: Any, on_result: ResultHook | None) -> ResultHook | None:
    """The live view's hook, then the caller's."""
    if live is None:
        return on_result

    def hook(frame: Frame, dets: Detections) -> None:
        live.offer(frame, dets)
        if on_result is not None:
            on_result(frame, dets)

    return hook


def run_daemon(
    settings: Settings, stop: threading.Event, on_result: ResultHook | None = None, memory: Any = None
) -> PipelineStats:
    """The main job: serve every camera until ``stop`` is set (or all finite sources end).

    ``memory``: the GPU memory provider for a TensorRT engine (None: CUDA on the configured device).
    The HTTP server (``http``) starts first, so ``/healthz`` answers while a first boot builds.
    """
    workers = settings.service.workers > 1 and len(settings.cameras) > 1
    if workers and (memory is not None or on_result is not None):
        raise ConfigError("service.workers > 1 runs the cameras in other processes: no memory or on_result")
    web = start_web(settings)
    if workers:
        return _run_workers(settings, stop, web)
    try:
        model = load_model(settings, memory=memory)
    except BaseException:
        if web is not None:
            web.stop()
        raise
    pipeline: Pipeline | None = None
    live = None
    try:
        if web is not None and settings.http.live_view:
            from edge_daemon.web import LiveView

            h = settings.http
            live = LiveView(web.state.cameras, model.info.names, h.live_fps, h.max_width, h.jpeg_quality)
            web.attach(live)
        pipeline = build_pipeline(settings, model, on_result=_hooks(live, on_result))
        if web is not None:
            web.state.pipeline, web.state.publisher, web.state.phase = pipeline, pipeline.publisher, "running"
        stats = pipeline.run(stop, settings.service.drain_timeout_s)
        if pipeline.error is not None:
            raise pipeline.error
        return stats
    finally:
        if web is not None:
            web.state.phase = "stopping"
            web.stop()
        if live is not None:
            live.close()
        if pipeline is not None and pipeline.abandoned:
            # Closing the engine would free device buffers a running execute may still use.
            log.warning(
                "the %s thread is still inside the engine at shutdown: leaving the engine and its buffers "
                "to the operating system rather than freeing them under it",
                " and ".join(pipeline.abandoned),
            )
        else:
            model.engine.close()


def _run_workers(settings: Settings, stop: threading.Event, web: Any) -> PipelineStats:
    """``service.workers`` > 1: the cameras in worker processes (:mod:`.workers`); MQTT, HTTP and the
    watchdog here."""
    from edge_daemon.app.workers import WorkerGroup

    group = WorkerGroup(settings)
    try:
        about = group.load(stop)
        publisher = mqtt_publisher(settings, about["names"], about["tag"], group.controls)
        group.attach(publisher)
        if web is not None:
            web.state.pipeline, web.state.publisher, web.state.phase = group, publisher, "running"
        stats = group.run(stop, settings.service.drain_timeout_s)
        if group.error is not None:
            raise group.error
        return stats
    finally:
        if group.stats.finished is None:  # failed before running: the loaded workers are waiting for "go"
            group.shutdown(1.0)
        if group.stats.finished is None:  # failed before running: the loaded workers are waiting for "go"
            group.shutdown(1.0)
        if web is not None:
            web.state.phase = "stopping"
            web.stop()
