"""``edge-daemon bench``: end-to-end throughput and latency against the bare engine and Ultralytics.

One run measures, on the same clip, model file and input shape, in alternating rounds:

- bare: ``engine.infer`` on one ready input tensor, back to back (the engine's ceiling). It is measured
  twice, with the daemon's own session settings and with ONNX Runtime's spin-waiting threads on (faster
  on an idle machine); the ratios use the faster of the two, so tuning cannot flatter them. A GPU engine
  (TensorRT, torch on CUDA) is measured on a ready *device* tensor instead: ``enqueue`` + stream
  synchronize per call, with no host copy at all;
- daemon: the full pipeline (decode -> letterbox -> engine -> NMS -> JSON -> MQTT) over the clip as fast as
  it goes (``block`` policy): throughput, and latency that includes waiting in the full queues;
- live: the same pipeline with the clip paced at its native frame rate and the ``latest`` policy, as a
  camera would feed it: capture -> publish latency without a backlog;
- camera source alone: the clip decoded back to back (the input ceiling of a one-camera pipeline);
- ultralytics: ``YOLO(<same model>).predict(clip, stream=True)`` at the same input shape (the same ONNX;
  for the torch backend the configured ``.pt`` weights, on the same GPU and in the same precision; for the
  openvino backend Ultralytics' own OpenVINO export of the ``.pt``, run by Ultralytics). For a
  segmentation model each result's outlines (``masks.xy``) are taken too, as the daemon publishes them.

Each figure is the median over the rounds; the ratios are taken between those medians. FPS of a
streaming run counts from its first result to its last, so start-up is excluded for both contenders.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import statistics
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_daemon.app import build_pipeline, load_model
from edge_daemon.build.export import export_pt
from edge_daemon.config import FileCamera, Settings
from edge_daemon.errors import ConfigError
from edge_daemon.model.preprocess import preprocess
from edge_daemon.publish.base import NullPublisher, Publisher
from edge_daemon.publish.mqtt import MqttPublisher
from edge_daemon.runtime import Artifact, load_engine

log = logging.getLogger(__name__)


@dataclass
class BenchReport:
    frames: int
    rounds: int
    input_hw: tuple[int, int]
    model: str
    clip: str
    machine: str
    bare_fps: list[float] = field(default_factory=list)
    bare_spin_fps: list[float] = field(default_factory=list)
    daemon_fps: list[float] = field(default_factory=list)
    daemon_p50_ms: list[float] = field(default_factory=list)
    daemon_p99_ms: list[float] = field(default_factory=list)
    live_p50_ms: list[float] = field(default_factory=list)
    live_p99_ms: list[float] = field(default_factory=list)
    ultralytics_fps: list[float] = field(default_factory=list)
    decode_fps: list[float] = field(default_factory=list)
    mqtt: bool = True

    @staticmethod
    def _median(values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    def as_dict(self) -> dict[str, Any]:
        med = self._median
        bare_own, bare_spin = med(self.bare_fps), med(self.bare_spin_fps)
        bare = max(v for v in (bare_own, bare_spin, 0.0) if v is not None) or None
        daemon, ultra = med(self.daemon_fps), med(self.ultralytics_fps)
        return {
            "machine": self.machine,
            "model": self.model,
            "clip": self.clip,
            "input_hw": list(self.input_hw),
            "frames_per_measurement": self.frames,
            "rounds": self.rounds,
            "mqtt": self.mqtt,
            "median": {
                "bare_fps": bare,
                "bare_daemon_settings_fps": bare_own,
                "bare_spin_wait_fps": bare_spin,
                "daemon_fps": daemon,
                "daemon_latency_p50_ms": med(self.daemon_p50_ms),
                "daemon_latency_p99_ms": med(self.daemon_p99_ms),
                "live_latency_p50_ms": med(self.live_p50_ms),
                "live_latency_p99_ms": med(self.live_p99_ms),
                "ultralytics_fps": ultra,
                "camera_decode_fps": med(self.decode_fps),
            },
            "ratios": {
                "daemon_vs_bare": daemon / bare if daemon and bare else None,
                "daemon_vs_ultralytics": daemon / ultra if daemon and ultra else None,
                "ultralytics_vs_bare": ultra / bare if ultra and bare else None,
            },
            "per_round": {
                "bare_fps": self.bare_fps,
                "bare_spin_wait_fps": self.bare_spin_fps,
                "daemon_fps": self.daemon_fps,
                "daemon_latency_p50_ms": self.daemon_p50_ms,
                "daemon_latency_p99_ms": self.daemon_p99_ms,
                "live_latency_p50_ms": self.live_p50_ms,
                "live_latency_p99_ms": self.live_p99_ms,
                "ultralytics_fps": self.ultralytics_fps,
            },
        }

    def table(self) -> str:
        d = self.as_dict()
        m, r = d["median"], d["ratios"]

        def f(v: float | None, fmt: str = "{:.1f}") -> str:
            return "-" if v is None else fmt.format(v)

        lines = [
            f"machine: {self.machine}",
            f"model: {self.model}  input {self.input_hw[0]}x{self.input_hw[1]} (HxW)  clip: {self.clip}",
            f"{self.frames} frames x {self.rounds} rounds, medians; MQTT {'on' if self.mqtt else 'off'}",
            "",
            f"{'what':<34}{'value':>12}",
            f"{'bare engine, daemon settings FPS':<34}{f(m['bare_daemon_settings_fps']):>12}",
            f"{'bare engine, spin-wait on FPS':<34}{f(m['bare_spin_wait_fps']):>12}",
            f"{'bare ceiling (the faster) FPS':<34}{f(m['bare_fps']):>12}",
            f"{'daemon end-to-end FPS':<34}{f(m['daemon_fps']):>12}",
            f"{'daemon latency p50, saturated (ms)':<34}{f(m['daemon_latency_p50_ms']):>12}",
            f"{'daemon latency p99, saturated (ms)':<34}{f(m['daemon_latency_p99_ms']):>12}",
            f"{'latency p50, live-paced (ms)':<34}{f(m['live_latency_p50_ms']):>12}",
            f"{'latency p99, live-paced (ms)':<34}{f(m['live_latency_p99_ms']):>12}",
            f"{'ultralytics predict(stream) FPS':<34}{f(m['ultralytics_fps']):>12}",
            f"{'camera source alone (decode) FPS':<34}{f(m['camera_decode_fps']):>12}",
            "",
            f"{'daemon / bare':<34}{f(r['daemon_vs_bare'], '{:.3f}'):>12}",
            f"{'daemon / ultralytics':<34}{f(r['daemon_vs_ultralytics'], '{:.3f}'):>12}",
            f"{'ultralytics / bare':<34}{f(r['ultralytics_vs_bare'], '{:.3f}'):>12}",
        ]
        return "\n".join(lines)


def machine_description() -> str:
    import onnxruntime

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    text = f"{cpu}, {cores} cores, Python {platform.python_version()}, onnxruntime {onnxruntime.__version__}"
    try:
        from edge_daemon.gpu import cuda

        gpu = cuda.device_info(0)
        text += f"; GPU {gpu.name} (sm {gpu.compute_capability})"
    except Exception:  # no cuda-python or no GPU: a CPU machine
        pass
    return text


def _bench_settings(settings: Settings, frames: int) -> tuple[Settings, Path]:
    cam = settings.cameras[0]
    if not isinstance(cam, FileCamera):
        raise ConfigError("bench: cameras[0] must be a file camera (the clip to measure on)")
    # Every frame, as fast as possible: block instead of dropping, no pacing, loop so any count works.
    bench_cam = cam.model_copy(
        update={"drop_policy": "block", "realtime": False, "loop": True, "max_frames": frames}
    )
    return settings.model_copy(update={"cameras": [bench_cam]}), cam.path


def _live(settings: Settings, frames: int) -> Settings:
    cam = settings.cameras[0].model_copy(
        update={"drop_policy": "latest", "realtime": True, "max_frames": frames}
    )
    return settings.model_copy(update={"cameras": [cam]})


def _first_frame(clip: Path) -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(clip))
    ok, image = cap.read()
    cap.release()
    if not ok:
        raise ConfigError(f"bench: cannot read a frame from {clip}")
    return np.ascontiguousarray(image)


def run_bench(
    settings: Settings,
    frames: int = 300,
    rounds: int = 3,
    ultralytics: bool = True,
    mqtt: bool = True,
    progress: bool = False,
) -> BenchReport:
    """Measure as described in the module docstring and return the report."""
    if frames < 10 or rounds < 1:
        raise ConfigError("bench: --frames must be >= 10 and --rounds >= 1")
    settings, clip = _bench_settings(settings, frames)
    model = load_model(settings)
    onnx_path = model.onnx_path
    report = BenchReport(
        frames=frames,
        rounds=rounds,
        input_hw=model.engine.info.input_hw,
        model=f"{model.info.model_id} ({model.engine.info.backend} {model.engine.info.precision})",
        clip=clip.name,
        machine=machine_description(),
        mqtt=mqtt,
    )
    tensor, _ = preprocess(_first_frame(clip), model.engine.info.input_hw)
    spin_engine = _spin_engine(settings, model.artifact)
    for _ in range(5):  # warm-up: first runs allocate and pick kernels
        model.engine.infer(tensor)
        if spin_engine is not None:
            spin_engine.infer(tensor)
    try:
        for r in range(rounds):
            say = log.warning if progress else log.info
            say("bench round %d/%d: camera source alone", r + 1, rounds)
            report.decode_fps.append(_decode(settings, frames))
            say("bench round %d/%d: bare engine", r + 1, rounds)
            report.bare_fps.append(
                _bare_device(model.engine, tensor, frames)
                if model.engine.device_io() is not None
                else _bare(model.engine, tensor, frames)
            )
            if spin_engine is not None:
                report.bare_spin_fps.append(_bare(spin_engine, tensor, frames))
            say("bench round %d/%d: daemon pipeline", r + 1, rounds)
            fps, p50, p99 = _daemon(settings, model, mqtt)
            report.daemon_fps.append(fps)
            report.daemon_p50_ms.append(p50)
            report.daemon_p99_ms.append(p99)
            say("bench round %d/%d: daemon pipeline, paced like a live camera", r + 1, rounds)
            _, p50, p99 = _daemon(_live(settings, min(frames, 100)), model, mqtt)
            report.live_p50_ms.append(p50)
            report.live_p99_ms.append(p99)
            if ultralytics:
                say("bench round %d/%d: ultralytics predict(stream=True)", r + 1, rounds)
                report.ultralytics_fps.append(_ultralytics(onnx_path, clip, settings, frames, model))
    finally:
        model.engine.close()
        if spin_engine is not None:
            spin_engine.close()
    return report


def _spin_engine(settings: Settings, artifact: Artifact) -> Any:
    """A second session on the same model file with spin-waiting threads, for the stricter bare ceiling
    (ONNX Runtime only)."""
    if settings.engine.backend != "onnxruntime" or settings.engine.spin_wait:
        return None
    return load_engine(settings.engine.model_copy(update={"spin_wait": True}), artifact)


def _bare(engine: Any, tensor: np.ndarray, frames: int) -> float:
    t0 = time.perf_counter()
    for _ in range(frames):
        engine.infer(tensor)
    return frames / (time.perf_counter() - t0)


def _decode(settings: Settings, frames: int) -> float:
    """The camera source read back to back with nothing else running: the pipeline's input ceiling."""
    from edge_daemon.camera import open_source

    source = open_source(settings.cameras[0])
    source.open()
    try:
        source.read()
        t0 = time.perf_counter()
        for _ in range(frames):
            source.read()
        return frames / (time.perf_counter() - t0)
    finally:
        source.close()


def _bare_device(engine: Any, tensor: np.ndarray, frames: int) -> float:
    """The GPU engine on a ready device tensor: enqueue + synchronize, back to back."""
    from edge_daemon.gpu import cuda

    io = engine.device_io()
    ready = tensor.astype(np.float16 if io.input_dtype == "float16" else np.float32)
    stream = cuda.Stream()
    host = cuda.PinnedBuffer(ready.shape, ready.dtype)
    dev_in = cuda.DeviceBuffer(host.nbytes)
    dev_outs = [cuda.DeviceBuffer(int(np.prod(shape)) * 4) for shape in io.output_shapes]
    ptrs = [d.ptr for d in dev_outs]
    try:
        host.write(ready)
        cuda.copy_htod_async(dev_in, host, stream)
        for _ in range(10):
            engine.enqueue(dev_in.ptr, ptrs, 1, stream.handle)
        stream.synchronize()
        t0 = time.perf_counter()
        for _ in range(frames):
            engine.enqueue(dev_in.ptr, ptrs, 1, stream.handle)
            stream.synchronize()
        return frames / (time.perf_counter() - t0)
    finally:
        for dev in dev_outs:
            dev.close()
        for part in (dev_in, host, stream):
            part.close()


def _daemon(settings: Settings, model: Any, mqtt: bool) -> tuple[float, float, float]:
    publisher: Publisher = (
        MqttPublisher.from_config(settings.mqtt, settings.device_id) if mqtt else NullPublisher()
    )
    pipeline = build_pipeline(settings, model, publisher=publisher)
    stats = pipeline.run(threading.Event())
    if pipeline.error is not None:
        raise pipeline.error
    lat = np.asarray(stats.end_to_end_ms)
    return stats.fps(), float(np.percentile(lat, 50)), float(np.percentile(lat, 99))


def _ultralytics_openvino(settings: Settings, imgsz: tuple[int, int]) -> Path:
    """``YOLO(<.pt>).export(format="openvino")`` once (the daemon's own export path), cached beside the
    other artifacts."""
    pt = settings.model.path
    if pt.suffix.lower() == ".xml":
        return pt.parent
    if pt.suffix.lower() != ".pt":
        raise ConfigError("bench: the Ultralytics OpenVINO comparison needs the .pt weights (model.path)")
    # Ultralytics recognises an OpenVINO export by its folder's "_openvino_model" suffix.
    folder = f"{pt.stem}-{imgsz[0]}x{imgsz[1]}_openvino_model"
    target = settings.model.cache_dir / "ultralytics-openvino" / folder
    if not (target / "metadata.yaml").is_file():
        shutil.rmtree(target, ignore_errors=True)  # a partial folder: os.replace needs the target absent
        export_pt(pt, imgsz, target, fmt="openvino")
    return target


def _ultralytics(onnx_path: Path, clip: Path, settings: Settings, frames: int, model: Any) -> float:
    try:
        from ultralytics import YOLO
    except ImportError:
        raise ConfigError(
            "bench: the Ultralytics comparison needs the export extra (pip install 'edge-daemon[export]'); "
            "or pass --no-ultralytics"
        ) from None
    info = model.engine.info
    gpu: dict[str, Any] = {}
    weights = onnx_path
    if info.backend == "torch":  # Ultralytics' own PyTorch path with the configured weights
        device = getattr(settings.engine, "device_index", None)
        gpu = {"device": "cpu" if device is None else device, "half": info.precision == "fp16"}
        if settings.model.path.suffix.lower() == ".pt":
            weights = settings.model.path
    if info.backend == "openvino":  # Ultralytics' own OpenVINO export and runtime, at the same shape
        weights = _ultralytics_openvino(settings, info.input_hw)
    yolo = YOLO(str(weights), task=model.info.task)
    stream = yolo.predict(
        source=str(clip),
        stream=True,
        verbose=False,
        imgsz=list(info.input_hw),
        conf=settings.detect.conf,
        iou=settings.detect.iou,
        max_det=settings.detect.max_det,
        **gpu,
    )
    times: list[float] = []
    outlines = model.info.task == "segment"  # the daemon publishes mask outlines: ask Ultralytics for them
    for result in stream:
        if outlines and result.masks is not None:
            result.masks.xy  # noqa: B018 (a lazy property: computing it is the point)
        times.append(time.perf_counter())
        if len(times) >= frames:
            break
    close = getattr(stream, "close", None)
    if close is not None:
        close()
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])
