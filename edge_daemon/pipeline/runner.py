"""Wires the rooms together; the only module that knows all of them. One room at about 400 lines: the
threads, their queues and the drain share one lifecycle; what happens after decoding (analytics, messages)
is :mod:`.outputs`, stats and health :mod:`.health`, which frames go to the engine together
:mod:`.batching`.

Threads and queues, data flowing one way::

    camera-<name> (one per camera)       inference (one)                 publish (one)
    read frame -> stage.prepare -> [DropQueue per camera] -> stage.submit -> [bounded queue] -> outputs
                  (named drop policy)    (one frame per camera, batched)                   -> decode + NMS
                                                                                           -> analytics
                                                                                           -> payload -> MQTT

The stage (:mod:`.stages`) is the CPU one (OpenCV letterbox on the camera threads, then ``engine.infer``)
or the CUDA one (pinned frame ring, GPU letterbox, engine and copies queued on one stream;
:mod:`.cuda_stage`). Either way the inference thread does nothing but start the engine;
OpenCV, ONNX Runtime and CUDA release the GIL, so decoding frame N+1 overlaps inference of frame N, and
post-processing runs on its own thread. Frames waiting at several cameras go to the engine as one
batch when its max batch allows. Stopping is a drain: cameras stop first, frames already captured are
inferred and published, then ``offline`` is published and MQTT disconnects.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2

from edge_daemon.analytics import CameraAnalyzer, MotionGate
from edge_daemon.camera import Backoff, CameraReader, DropPolicy, DropQueue, FrameSource, QueueClosed
from edge_daemon.controls import CameraControl, Controls
from edge_daemon.errors import EdgeError
from edge_daemon.model.tasks import Decoder
from edge_daemon.pipeline.batching import Batcher
from edge_daemon.pipeline.health import (
    SLOW_MS,
    BusyClock,
    PipelineStats,
    analytics_health,
    camera_status,
    health_message,
    stats_line,
)
from edge_daemon.pipeline.messages import Messages
from edge_daemon.pipeline.outputs import Outputs
from edge_daemon.pipeline.stages import CpuStage, Stage
from edge_daemon.pipeline.supervise import supervise
from edge_daemon.publish.base import Publisher
from edge_daemon.publish.payload import ModelTag, new_run_id
from edge_daemon.runtime import InferenceEngine
from edge_daemon.threads import thread
from edge_daemon.types import Detections, Frame

__all__ = ["CameraPlan", "Pipeline", "PipelineStats", "ResultHook"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CameraPlan:
    """Everything the pipeline needs to run one camera, resolved from its settings."""

    name: str
    source: FrameSource
    policy: DropPolicy
    queue_size: int
    backoff: Backoff
    max_frames: int | None = None
    analyzer: CameraAnalyzer | None = None  # tracking, zones, events, snapshots; None: every frame published
    gate: MotionGate | None = None  # skip frames without motion before inference


# Called for every published frame: (frame, detections). Tests and the demo use it to observe results.
ResultHook = Callable[[Frame, Detections], None]


class Pipeline:
    """Runs cameras -> engine -> publisher until stopped or until every finite camera ends."""

    def __init__(
        self,
        cameras: Sequence[CameraPlan],
        engine: InferenceEngine,
        decode: Decoder,
        names: dict[int, str],
        model_tag: ModelTag,
        publisher: Publisher,
        device_id: str,
        stats_interval_s: float = 10.0,
        on_result: ResultHook | None = None,
        stage: Stage | None = None,
        extra_info: dict[str, Any] | None = None,
        run_id: str | None = None,
        stuck_batch_s: float = 30.0,
        controls: Controls | None = None,
    ) -> None:
        if not cameras:
            raise ValueError("at least one camera is needed")
        self.engine = engine
        # The stage belongs to the pipeline (closed at shutdown); the engine to the caller.
        self.stage: Stage = stage if stage is not None else CpuStage(engine)
        self.publisher = publisher
        self.stats = PipelineStats()
        self.error: BaseException | None = None
        self._decode = decode  # the model's head: raw output row + letterbox -> detections
        self._names = names
        self._tag = model_tag
        self._device_id = device_id
        self.run_id = run_id or new_run_id()  # in every message: consumers deduplicate on (run, seq)
        self._stats_interval = stats_interval_s
        self._on_result = on_result
        self._extra_info = extra_info or {}
        self._stuck_batch_s = stuck_batch_s
        self.controls = controls
        self._busy = BusyClock()
        self.abandoned: list[str] = []  # worker threads still running at the drain deadline
        # OpenCV's own thread pool would split each resize across every core and collide with the engine's
        # workers; per frame its work is ~1 ms, cheaper done on the camera thread alone (docs/benchmarks.md).
        cv2.setNumThreads(1)
        self._queues: dict[str, DropQueue[Any]] = {}
        self._results: DropQueue[Any] = DropQueue(2, DropPolicy.BLOCK)
        self._readers: list[CameraReader] = []
        self._sources: dict[str, FrameSource] = {}
        self._analyzers: dict[str, CameraAnalyzer] = {}
        self._gates: dict[str, MotionGate] = {}
        self._batcher = Batcher(self._queues, engine.info.max_batch)
        for plan in cameras:
            queue: DropQueue[Any] = DropQueue(plan.queue_size, plan.policy, on_drop=self.stage.discard)
            self._queues[plan.name] = queue
            self._sources[plan.name] = plan.source
            if plan.analyzer is not None:
                self._analyzers[plan.name] = plan.analyzer
            if plan.gate is not None:
                self._gates[plan.name] = plan.gate
            self._readers.append(
                CameraReader(
                    plan.name,
                    plan.source,
                    self._camera_sink(queue, plan.gate, controls.cameras[plan.name] if controls else None),
                    plan.backoff,
                    max_frames=plan.max_frames,
                    on_end=self._camera_ended(plan.name),
                    buffers=self.stage,
                )
            )
        self._outputs = Outputs(
            publisher,
            Messages(device_id, self.run_id, names, model_tag),
            self._analyzers,
            self.stats,
            self.clock,
            controls,
        )
        self._workers = [
            thread(self._guard(self._infer_loop), "inference"),
            thread(self._guard(self._publish_loop), "publish"),
        ]

    # ------------------------------------------------------------------------------------ lifecycle

    def run(self, stop: threading.Event, drain_timeout_s: float = 10.0) -> PipelineStats:
        """Block until ``stop`` is set or all cameras ended; then drain and close the publisher.

        systemd: READY once running; WATCHDOG while the worker threads live and none is stuck in the
        engine longer than ``stuck_batch_s``; STATUS says which cameras are down."""
        self.publisher.info = self.info()
        self.publisher.start()
        for worker in self._workers:
            worker.start()
        for reader in self._readers:
            reader.start()
        supervise(self, stop, self._stats_interval)
        self.shutdown(drain_timeout_s)
        return self.stats

    def info(self) -> dict[str, Any]:
        """The retained ``info`` message: what runs (model, backend, precision, input, cameras, decoders)."""
        return {
            "device_id": self._device_id,
            "run": self.run_id,
            "model": self._tag.model_id,
            "backend": self._tag.backend,
            "precision": self._tag.precision,
            "input": {"height": self._tag.input_hw[0], "width": self._tag.input_hw[1]},
            "cameras": [r.name for r in self._readers],
            **self._extra_info,
        }

    # What :func:`supervise` asks while the cameras run.
    def running(self) -> bool:
        return any(w.is_alive() for w in self._workers)

    def alive(self) -> bool:
        return all(w.is_alive() for w in self._workers)

    def stuck(self) -> tuple[str, float] | None:
        return self._busy.stuck(self._stuck_batch_s)

    def connected(self) -> tuple[bool, ...]:
        return tuple(r.stats.connected for r in self._readers)

    def camera_status(self) -> str:
        return camera_status([(r.name, r.stats.connected, r.stats.last_error) for r in self._readers])

    def shutdown(self, drain_timeout_s: float) -> None:
        """Stop cameras, let queued frames finish (bounded), then close the publisher."""
        deadline = time.monotonic() + drain_timeout_s
        for reader in self._readers:
            reader.stop()
        for reader in self._readers:
            if not reader.join(max(0.0, deadline - time.monotonic())):
                log.warning("camera %s did not stop in time", reader.name)
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
            if worker.is_alive():
                self.abandoned.append(worker.name)
                log.warning("%s thread still busy at the drain deadline; abandoning it", worker.name)
        self.stats.finished = time.monotonic()
        if not any(w.is_alive() for w in self._workers):
            for queue in self._queues.values():
                for item in queue.drain():
                    self.stage.discard(item)
            self.stage.close()
        for name, queue in self._queues.items():
            self.stats.dropped[name] = queue.dropped
        for reader in self._readers:
            self.stats.captured[reader.name] = reader.stats.frames
        try:  # the final counters (the objects ended at shutdown included), before offline
            self.publisher.publish_health(self.health())
        except Exception:
            log.exception("cannot publish the final health message")
        self.publisher.close(timeout=max(1.0, deadline - time.monotonic()))
        self.log_stats()

    def _abort(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = exc
        for reader in self._readers:
            reader.stop()
        for queue in self._queues.values():
            queue.close()
        self._results.close()

    def _guard(self, loop: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                loop()
            except EdgeError as exc:
                log.error("%s", exc)
                self._abort(exc)
            except Exception as exc:
                log.exception("pipeline thread %s crashed", threading.current_thread().name)
                self._abort(exc)

        return run

    # ----------------------------------------------------------------------------------- the stages

    def clock(self, frame: Frame) -> float:
        """The frame's time in seconds on its camera's clock: a file read faster than real time runs on
        its own timeline (frame number / its fps), so dwell times and lost-track budgets mean the same
        whatever the inference rate; live cameras run on the monotonic clock."""
        fps = self._sources[frame.camera].media_fps
        return frame.seq / fps if fps else frame.captured_mono

    def _camera_sink(
        self, queue: DropQueue[Any], gate: MotionGate | None, control: CameraControl | None
    ) -> Callable[[Frame], None]:
        stage = self.stage
        batcher = self._batcher

        def sink(frame: Frame) -> None:
            if control is not None and not control.detect:  # switched off over MQTT: read, not inferred
                control.skipped += 1
                self._not_inferred(frame)
                return
            if gate is not None:
                if not gate.moving(
                    frame.image if frame.image is not None else frame.gray(), self.clock(frame)
                ):
                    self._not_inferred(frame)
                    return
                if gate.still_s:
                    frame = dataclasses.replace(frame, still_s=gate.still_s)
            item = stage.prepare(frame)
            if item is None:  # the stage is closing
                return
            if not queue.put(item):
                stage.discard(item)
                return
            batcher.notify()

        return sink

    def _not_inferred(self, frame: Frame) -> None:
        """A frame skipped before the stage: the buffer it was decoded into goes back."""
        if frame.buffer is not None:
            self.stage.unclaim(frame.buffer)

    def _camera_ended(self, name: str) -> Callable[[], None]:
        return lambda: self._batcher.ended(name)

    def _infer_loop(self) -> None:
        try:
            while (items := self._batcher.next_batch()) is not None:
                taken = time.monotonic()
                with self._busy.inside("inference"):
                    batch = self.stage.submit(items)
                self.stats.inferred += len(items)
                self.stats.batches += 1
                if not self._results.put((batch, taken)):
                    self.stage.release(batch)
        finally:
            self._results.close()

    def _publish_loop(self) -> None:
        while True:
            try:
                got = self._results.get(timeout=1.0)
            except QueueClosed:
                self._outputs.finish()
                return
            self._outputs.idle(self._readers, self._sources)
            if got is None:
                continue
            item, taken = got
            try:
                with self._busy.inside("publish"):
                    outputs, inference_ms = self.stage.outputs(item)
                ready = time.monotonic()
                self.stats.inference_ms.append(inference_ms)
                self.stats.inference_hist.observe(inference_ms)
                results = [
                    (p.frame, self._decode(tuple(out[i] for out in outputs), p.meta))
                    for i, p in enumerate(item.items)
                ]
                self._publish(results, inference_ms, (taken, ready))
            finally:
                self.stage.release(item)

    def _publish(
        self, results: list[tuple[Frame, Detections]], inference_ms: float, times: tuple[float, float]
    ) -> None:
        """``times``: when the inference thread took the batch and when its outputs were ready here."""
        done = self._outputs.publish(results, inference_ms)
        now = time.monotonic()
        if self.stats.first_publish is None:
            self.stats.first_publish = now
        taken, ready = times
        for frame, dets in done:
            self.stats.published += 1
            self.stats.detections += len(dets)
            e2e_ms = (now - frame.captured_mono) * 1000.0
            self.stats.end_to_end_ms.append(e2e_ms)
            self.stats.end_to_end_hist.observe(e2e_ms)
            if e2e_ms >= SLOW_MS:
                parts = (
                    (taken - frame.captured_mono) * 1000.0,
                    (ready - taken) * 1000.0,
                    (now - ready) * 1000.0,
                )
                self.stats.slow.append((now, e2e_ms, *parts))
                self.stats.slow_count += 1
            if self._on_result is not None:
                self._on_result(frame, dets)

    def liveness(self) -> str | None:
        """Why the pipeline is not alive (a worker thread died or is stuck in the engine), or None."""
        dead = [w.name for w in self._workers if w.ident is not None and not w.is_alive()]
        if dead and self.stats.finished is None:
            return f"the {' and '.join(dead)} thread stopped"
        stuck = self._busy.stuck(self._stuck_batch_s)
        return f"the {stuck[0]} thread is stuck in the engine for {stuck[1]:.0f}s" if stuck else None

    def health(self) -> dict[str, Any]:
        """The retained ``health`` message: per camera connected, frames, reconnects, last error, drops;
        motion gating, tracking and snapshots where they run."""
        health = health_message(
            self._device_id, self.run_id, self.stats, self._readers, self._queues, self.controls
        )
        if self._analyzers:
            health["analytics_errors"] = self.stats.analytics_errors
        return analytics_health(health, self._gates, self._analyzers)

    def log_stats(self) -> str:
        text = stats_line(self.stats, sum(q.dropped for q in self._queues.values()))
        log.info("%s", text)
        return text
