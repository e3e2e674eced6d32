"""``edge-daemon bench --cameras N``: how many real-time camera streams one device holds.

One run, on one machine, measures:

- **held streams**: N cameras, each a clip made from the demo clip (1080p at 30 FPS, H.264 or H.265, made
  at setup by :mod:`edge_daemon.tools.clips`), looped and paced at its frame rate like a live camera (the
  ``latest`` drop policy), through the whole pipeline to MQTT. N is *held* when, after a warm-up, no frame
  was dropped by the policy, every camera captured at least 95 % of its frame rate, and capture -> publish
  p99 stayed under 100 ms. N doubles from 1 until a count is not held, then is bisected;
- **decode limit**: the decoder alone (NVDEC where the pipeline would use it, else OpenCV on the CPU),
  ``min(N, 32)`` streams dealt over up to 8 processes (threads within each), unpaced: frames per second,
  and that over the frame rate in streams;
- **engine limit**: the engine's bare batched rate at its largest batch (``enqueue`` on device buffers
  for a GPU engine, ``infer`` on a ready tensor otherwise), in streams likewise;
- **Ultralytics** (``--ultralytics``): ``YOLO(<same weights>).predict`` on batches of N frames (its
  multi-stream path batches one frame per stream the same way), on the same device and precision; the
  streams it holds are the largest N whose batched rate reaches N x the frame rate. Decoding is left out
  of its figure, which flatters it.

With each held count it reports the host CPU used per stream (cores per stream), worker processes
included. With ``service.workers`` (``--workers``) > 1 the cameras run in that many worker processes
(:mod:`edge_daemon.app.workers`), each engine's max batch its share of the cameras.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_daemon.app import build_pipeline, load_model
from edge_daemon.app.workers import WorkerGroup
from edge_daemon.config import FileCamera, Settings, UrlCamera
from edge_daemon.errors import ConfigError
from edge_daemon.publish.base import NullPublisher, Publisher
from edge_daemon.publish.mqtt import MqttPublisher
from edge_daemon.threads import cpu_by_thread
from edge_daemon.tools.bench import machine_description
from edge_daemon.tools.clips import lasting
from edge_daemon.tools.decode_limit import DECODE_PROCESSES, decode_limit
from edge_daemon.tools.limits import engine_limit, ultralytics_rates
from edge_daemon.tools.rtsp import serve_clip

log = logging.getLogger(__name__)

P99_LIMIT_MS = 100.0
CAPTURE_SHARE = 0.95
TRIAL_MARGIN_S = 30.0  # how much longer than warm-up + window the cameras' clip lasts (their start-up)
FIRST_FRAME_S = 60.0  # the longest a trial waits for every camera's first frame before its warm-up


@dataclass
class Trial:
    cameras: int
    held: bool
    fps: float  # frames through the whole pipeline per second, all cameras
    dropped: int  # frames the drop policy discarded in the window
    capture_min_fps: float  # the slowest camera's capture rate
    p50_ms: float
    p99_ms: float
    max_ms: float
    cores_per_stream: float  # host CPU time over wall time, per camera
    decode: str = ""  # what decoded (the daemon's info: "nvdec", "cpu", ...)
    workers: int = 1  # processes the cameras ran in
    why: str = ""
    # cores per stream by kind of thread (edge_daemon.threads.kind), every process; the largest first
    cpu_by_thread: dict[str, float] = field(default_factory=dict)
    # the slowest frames of the window (capture -> publish over 100 ms), where each spent its time: until
    # the inference thread took it into a batch, from then until its outputs were in the publish thread's
    # hands (the engine, and waiting for that thread), and publishing (decode, analytics, messages)
    slowest: list[dict[str, float]] = field(default_factory=list)


@dataclass
class StreamsReport:
    machine: str
    model: str
    clip: str
    fps: int
    played: str = ""  # what the cameras play: the clip repeated to outlast a trial (files and RTSP alike)
    source: str = "file"  # the cameras: "file" (the looped clip, paced) or "rtsp" (the bench's server)
    decoder: str = ""
    decode_limit_fps: float = 0.0
    decode_processes: int = 1
    engine_batch: int = 1
    engine_limit_fps: float = 0.0
    trials: list[Trial] = field(default_factory=list)
    ultralytics_fps: dict[int, float] = field(default_factory=dict)

    @property
    def held(self) -> int:
        return max((t.cameras for t in self.trials if t.held), default=0)

    @property
    def ultralytics_held(self) -> int:
        return max((n for n, fps in self.ultralytics_fps.items() if fps >= n * self.fps), default=0)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        limit = min(self.decode_limit_fps, self.engine_limit_fps) / self.fps
        d.update(
            held=self.held,
            decode_limit_streams=round(self.decode_limit_fps / self.fps, 1),
            engine_limit_streams=round(self.engine_limit_fps / self.fps, 1),
            held_vs_limit=round(self.held / limit, 3) if limit else None,
            ultralytics_held=self.ultralytics_held if self.ultralytics_fps else None,
            held_vs_ultralytics=round(self.held / self.ultralytics_held, 1)
            if self.ultralytics_held
            else None,
        )
        return d

    def table(self) -> str:
        d = self.as_dict()
        lines = [
            f"machine: {self.machine}",
            f"model: {self.model}; clip: {self.clip} at {self.fps} FPS from {self.source}; decode: "
            f"{self.decoder}",
            f"decode limit ({self.decode_processes} processes): {self.decode_limit_fps:.0f} FPS = "
            f"{d['decode_limit_streams']} streams",
            f"engine limit (batch {self.engine_batch}): {self.engine_limit_fps:.0f} FPS = "
            f"{d['engine_limit_streams']} streams",
            f"{'cameras':>8}{'workers':>8}{'held':>6}{'FPS':>9}{'dropped':>9}{'min cap':>9}{'p50 ms':>8}"
            f"{'p99 ms':>8}{'max ms':>8}{'cores/str':>10}  why",
        ]
        for t in self.trials:
            lines.append(
                f"{t.cameras:>8}{t.workers:>8}{'yes' if t.held else 'no':>6}{t.fps:>9.1f}{t.dropped:>9}"
                f"{t.capture_min_fps:>9.1f}{t.p50_ms:>8.1f}{t.p99_ms:>8.1f}{t.max_ms:>8.1f}"
                f"{t.cores_per_stream:>10.3f}  {t.why}"
            )
            if t.cpu_by_thread:
                top = ", ".join(f"{k} {v:.3f}" for k, v in list(t.cpu_by_thread.items())[:8])
                lines.append(f"{'':>8}cores per stream by thread: {top}")
            for f in t.slowest:
                parts = f"{f['before_batch_ms']:.0f} + {f['until_outputs_ms']:.0f} + {f['publishing_ms']:.0f}"
                lines.append(f"{'':>8}slow frame: {f['e2e_ms']:.0f} ms = {parts} (until batched + until its "
                             "outputs reached the publish thread + publishing)")  # fmt: skip
        lines.append(f"held: {self.held} streams ({d['held_vs_limit']} of min(decode, engine) limit)")
        if self.ultralytics_fps:
            rates = ", ".join(f"batch {n}: {fps:.0f} FPS" for n, fps in sorted(self.ultralytics_fps.items()))
            lines.append(f"ultralytics predict: {rates}; holds {self.ultralytics_held} streams")
            lines.append(f"held / ultralytics held: {d['held_vs_ultralytics']}")
        return "\n".join(lines)


def stream_clip(settings: Settings, codec: str, size: tuple[int, int], fps: int) -> Path:
    """The bench's clip, made once from the first camera's file (the demo clip) into the model cache."""
    from edge_daemon.tools.clips import make_clip

    cam = settings.cameras[0]
    if not isinstance(cam, FileCamera):
        raise ConfigError("bench --cameras: cameras[0] must be a file camera (the clip to make streams from)")
    out = settings.model.cache_dir / "streams" / f"{cam.path.stem}-{size[0]}x{size[1]}-{fps}-{codec}.mp4"
    if not out.is_file():
        out.parent.mkdir(parents=True, exist_ok=True)
        log.warning("bench: making %s from %s (once)", out, cam.path)
        make_clip(cam.path, out, codec, frames=10 * fps, size=size, fps=fps)
    return out


def _cameras(settings: Settings, clip: Path, n: int, url: str | None = None) -> Settings:
    """N copies of the first camera: files on ``clip``, looped and paced, or (``url``) RTSP cameras on the
    bench's server, each with the first camera's analytics and decode setting."""
    base = settings.cameras[0]
    live = {"drop_policy": "latest", "queue_size": 1, "max_frames": None}
    cams: list[Any]
    if url is not None:
        common = base.model_dump(exclude={"type", "path", "loop", "realtime"})
        cams = [
            UrlCamera.model_validate({**common, **live, "type": "url", "name": f"cam{i}", "url": url})
            for i in range(n)
        ]
    else:
        update = {"path": clip, "loop": True, "realtime": True, **live}
        cams = [base.model_copy(update={**update, "name": f"cam{i}"}) for i in range(n)]
    return settings.model_copy(update={"cameras": cams})


def trial(settings: Settings, model: Any, clip: Path, n: int, fps: int, warmup_s: float, seconds: float,
          mqtt: bool, probe: Callable[[list[int], float], None] | None = None,
          url: str | None = None) -> Trial:  # fmt: skip
    """N paced cameras for ``warmup_s`` + ``seconds``; held or not over the last ``seconds``. ``probe``
    (a profiler) is called with the processes' ids for the ``seconds`` measured instead of a sleep.
    ``url``: the cameras are RTSP streams from there instead of the looped clip."""
    cfg = _cameras(settings, clip, n, url)
    publisher: Publisher = MqttPublisher.from_config(cfg.mqtt, cfg.device_id) if mqtt else NullPublisher()
    pipeline: Any
    workers = min(n, cfg.service.workers)
    if workers > 1:  # camera groups in worker processes, each with its engine batching its own cameras
        batch = getattr(cfg.engine, "max_batch", None)
        if batch is not None and not cfg.service.shared_engine:  # (a shared one batches them all)
            engine = cfg.engine.model_copy(update={"max_batch": -(-n // workers)})
            cfg = cfg.model_copy(update={"engine": engine})
        pipeline = WorkerGroup(cfg)
        pipeline.load(threading.Event())
        pipeline.attach(publisher)
    else:
        pipeline = build_pipeline(cfg, model, publisher=publisher)
    stop = threading.Event()
    runner = threading.Thread(target=lambda: pipeline.run(stop), name="bench-pipeline", daemon=True)
    runner.start()
    s = pipeline.stats

    def counters() -> tuple[int, int, dict[str, int], float, float]:
        cams = pipeline.health()["cameras"]  # live per-camera counts (stats has them only at the end)
        dropped = sum(c["dropped_by_policy"] for c in cams.values())
        captured = {name: c["frames"] for name, c in cams.items()}
        if workers > 1:
            return dropped, s.published, captured, pipeline.cpu_seconds(), time.monotonic()
        t = os.times()
        return dropped, s.published, captured, t.user + t.system, time.monotonic()

    # The warm-up starts once every camera has delivered: opening a stream (RTSP's probing, which then
    # releases seconds of frames at once; a decoder's start) is not what the window measures.
    deadline = time.monotonic() + FIRST_FRAME_S
    while time.monotonic() < deadline and runner.is_alive():
        captured = counters()[2]
        if len(captured) >= n and min(captured.values()) > 0:
            break
        time.sleep(0.1)
    time.sleep(warmup_s)
    pids = [os.getpid(), *pipeline.pids()] if workers > 1 else [os.getpid()]
    base, base_threads = counters(), cpu_by_thread(pids)
    if probe is None:
        time.sleep(seconds)
    else:
        probe(pids, seconds)
    end, end_threads = counters(), cpu_by_thread(pids)
    stop.set()
    runner.join(60)
    if pipeline.error is not None:
        raise pipeline.error
    wall = end[4] - base[4]
    published = end[1] - base[1]
    lat = np.asarray(list(s.end_to_end_ms)[-published:] if published else [0.0])
    cap_min = min((end[2].get(c, 0) - base[2].get(c, 0)) / wall for c in end[2]) if end[2] else 0.0
    cpu = end[3] - base[3]
    t = Trial(
        cameras=n,
        held=False,
        fps=round(published / wall, 1),
        dropped=end[0] - base[0],
        capture_min_fps=round(cap_min, 1),
        p50_ms=round(float(np.percentile(lat, 50)), 1),
        p99_ms=round(float(np.percentile(lat, 99)), 1),
        max_ms=round(float(lat.max()), 1),
        cores_per_stream=round(cpu / wall / n, 4),
        decode=str(next(iter(((publisher.info or {}).get("decode") or {"": "?"}).values()))),
        workers=workers,
        cpu_by_thread=_per_stream(base_threads, end_threads, wall * n),
        slowest=_slowest(s.slow, base[4], end[4]),
    )
    why = []
    if t.dropped:
        why.append(f"{t.dropped} dropped")
    if cap_min < CAPTURE_SHARE * fps:
        why.append(f"a camera captured {cap_min:.1f} FPS")
    if t.p99_ms >= P99_LIMIT_MS:
        why.append(f"p99 {t.p99_ms:.0f} ms")
    t.held, t.why = not why, "; ".join(why)
    log.warning("bench: %d cameras: %s", n, "held" if t.held else f"not held ({t.why})")
    return t


def _per_stream(base: dict[str, float], end: dict[str, float], stream_seconds: float) -> dict[str, float]:
    """Cores per stream by kind of thread over the window, the largest first, those under 0.001 left out
    (a thread that started in the window counts from its start)."""
    used = {k: (v - base.get(k, 0.0)) / stream_seconds for k, v in end.items()}
    return {k: round(v, 4) for k, v in sorted(used.items(), key=lambda kv: -kv[1]) if v >= 0.001}


def _slowest(slow: Any, start: float, end: float, n: int = 3) -> list[dict[str, float]]:
    """The ``n`` slowest frames published between ``start`` and ``end`` (monotonic), with their parts."""
    # (a set: a worker's report may repeat a frame counted just after the report read the count)
    inside = sorted({e for e in list(slow) if start <= e[0] <= end}, key=lambda e: -e[1])[:n]
    keys = ("e2e_ms", "before_batch_ms", "until_outputs_ms", "publishing_ms")
    return [{k: round(v, 1) for k, v in zip(keys, e[1:], strict=True)} for e in inside]


def search(run: Any, max_cameras: int) -> list[Trial]:
    """Double from 1 while held, then bisect between the last held and the first not held count."""
    trials: list[Trial] = []
    lo, hi, n = 0, max_cameras + 1, 1
    while n <= max_cameras:
        trials.append(run(n))
        if not trials[-1].held:
            hi = n
            break
        lo, n = n, n * 2
    while hi - lo > max(1, lo // 16) and lo < max_cameras:
        mid = (lo + hi) // 2
        trials.append(run(mid))
        lo, hi = (mid, hi) if trials[-1].held else (lo, mid)
    return trials


def _broker_reachable(settings: Settings) -> None:
    """A bench whose broker is down would measure the connect timeout, not the streams: say so first."""
    import socket

    try:
        socket.create_connection((settings.mqtt.host, settings.mqtt.port), timeout=5).close()
    except OSError as exc:
        raise ConfigError(
            f"bench: no MQTT broker at {settings.mqtt.host}:{settings.mqtt.port} ({exc}); start one, or "
            "pass --no-mqtt"
        ) from None


def run_streams_bench(
    settings: Settings,
    max_cameras: int,
    codec: str = "h264",
    size: tuple[int, int] = (1920, 1080),
    fps: int = 30,
    warmup_s: float = 4.0,
    seconds: float = 8.0,
    ultralytics: bool = True,
    mqtt: bool = True,
    source: str = "file",
    counts: list[int] | None = None,
) -> StreamsReport:
    """The streams report: the largest count held, found by :func:`search` up to ``max_cameras``, or
    exactly the camera ``counts`` given (each tried once, in order), beside the limits."""
    if counts:
        max_cameras = max(counts)
    if max_cameras < 1 or (counts and min(counts) < 1):
        raise ConfigError("bench: --cameras must be >= 1")
    if source not in ("file", "rtsp"):
        raise ConfigError(f"bench: --source must be file or rtsp, not {source!r}")
    if mqtt:
        _broker_reachable(settings)
    clip = stream_clip(settings, codec, size, fps)
    batch = getattr(settings.engine, "max_batch", None)  # GPU engines: a batch holds every camera (to 64)
    if batch is not None:
        engine_cfg = settings.engine.model_copy(update={"max_batch": min(64, max(max_cameras, batch))})
        settings = settings.model_copy(update={"engine": engine_cfg})
    with contextlib.ExitStack() as stack:
        url = None
        played = lasting(clip, warmup_s + seconds + TRIAL_MARGIN_S)  # every trial's cameras start anew
        if source == "rtsp":
            server = serve_clip(played, codec)
            stack.callback(server.kill)
            url = server.url
        model = load_model(_cameras(settings, clip, 1))
        stack.callback(model.engine.close)
        report = StreamsReport(
            machine=machine_description(),
            model=f"{model.info.model_id} ({model.engine.info.backend} {model.engine.info.precision})",
            clip=clip.name,
            fps=fps,
            played=played.name,
            source=source,
        )

        def run(n: int) -> Trial:
            return trial(settings, model, played, n, fps, warmup_s, seconds, mqtt, url=url)

        report.trials = [run(n) for n in counts] if counts else search(run, max_cameras)
        report.decoder = report.trials[0].decode
        log.warning("bench: decode limit (%s)", report.decoder)
        streams = min(max_cameras, 32)
        report.decode_processes = min(streams, DECODE_PROCESSES)
        report.decode_limit_fps = round(
            decode_limit(clip, report.decoder == "nvdec", streams, report.decode_processes), 1
        )
        report.engine_batch, rate = engine_limit(model.engine)
        report.engine_limit_fps = round(rate, 1)
        if ultralytics:
            report.ultralytics_fps = ultralytics_rates(settings, model, clip, fps, max_cameras)
    return report
