"""Camera sources: real video decoding, looping, pacing, the drop policy, reconnects, redaction."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_daemon.camera import Backoff, CameraReader, DropPolicy, DropQueue, QueueClosed, open_source
from edge_daemon.camera.gstreamer import csi_pipeline, element_names, rtsp_hw_pipeline
from edge_daemon.camera.opencv import with_credentials
from edge_daemon.camera.pacing import SLACK_FRAMES, Pacer
from edge_daemon.config import CsiCamera, FileCamera, UrlCamera, V4L2Camera
from edge_daemon.errors import CameraError
from edge_daemon.logs import redact_url
from edge_daemon.types import Frame
from tests.conftest import free_port


def _read_all(reader_cfg, limit: int = 10_000) -> list[Frame]:
    got: list[Frame] = []
    done = threading.Event()
    reader = CameraReader(
        reader_cfg.name,
        open_source(reader_cfg),
        got.append,
        Backoff(0.01, 0.05),
        max_frames=reader_cfg.max_frames,
        on_end=done.set,
    )
    reader.start()
    assert done.wait(120), "reader did not finish"
    assert reader.join(5)
    return got[:limit]


def test_file_source_reads_every_frame_in_order(clip: Path) -> None:
    frames = _read_all(FileCamera(type="file", path=clip))
    assert len(frames) == 795
    assert [f.seq for f in frames] == list(range(795))
    assert frames[0].bgr().shape == (576, 768, 3)
    assert all(b.captured_mono >= a.captured_mono for a, b in itertools.pairwise(frames))


def test_file_source_loops(clip: Path) -> None:
    frames = _read_all(FileCamera(type="file", path=clip, loop=True, max_frames=900))
    assert len(frames) == 900
    assert (frames[0].bgr() == frames[795].bgr()).all(), "frame 795 is the clip's first frame again"


def test_realtime_pacing_follows_native_fps(clip: Path) -> None:
    t0 = time.monotonic()
    frames = _read_all(FileCamera(type="file", path=clip, realtime=True, max_frames=12))
    elapsed = time.monotonic() - t0
    assert len(frames) == 12
    assert elapsed >= 11 / 10 * 0.9, "vtest.avi is 10 fps: 12 frames take about 1.1 s when paced"


class _FakeTime:
    """A clock the test moves: ``sleep`` advances it, ``stall`` is a reader held up."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_a_late_reader_catches_up_like_a_camera_buffering_frames() -> None:
    """A camera keeps capturing while its reader is late; the paced file gets the frames it missed back
    to back, so a brief stall costs no frames (the old pacing restarted its clock: 10 frames took 12
    periods after a 2-period stall, and the streams bench counted that as a camera short of 30 FPS)."""
    t = _FakeTime()
    pacer = Pacer(t.clock, t.sleep)
    pacer.start(10.0)
    start = t.now
    for i in range(10):
        if i == 3:
            t.now += 0.2  # the reader is held up for two frame periods
        pacer.wait()
    assert t.now - start == pytest.approx(1.0), "ten frames in ten periods, the stall made up"
    assert len(t.slept) == 8, "no sleep for the two frames caught up on"


def test_a_reader_later_than_a_camera_buffers_loses_those_frames() -> None:
    t = _FakeTime()
    pacer = Pacer(t.clock, t.sleep)
    pacer.start(10.0)
    start = t.now
    pacer.wait()
    t.now += (SLACK_FRAMES + 2) * 0.1  # beyond the camera's buffers: the clock moves on
    pacer.wait()
    pacer.wait()
    assert t.now - start == pytest.approx(0.1 + (SLACK_FRAMES + 2) * 0.1 + 0.1)


def test_pacing_off_without_a_rate() -> None:
    t = _FakeTime()
    pacer = Pacer(t.clock, t.sleep)
    for fps in (None, 0.0, 5000.0):  # not real time, unknown, implausible
        pacer.start(fps)
        pacer.wait()
    assert not t.slept


def test_a_paced_file_source_makes_up_a_stall(clip: Path) -> None:
    """The OpenCV file source on the real clip (10 FPS): twelve frames in 1.2 s of its clock although the
    reader stalled 0.25 s after the third."""
    t = _FakeTime()
    source = open_source(FileCamera(type="file", path=clip, realtime=True))
    source.pacer = Pacer(t.clock, t.sleep)  # type: ignore[attr-defined]
    source.open()
    try:
        start = t.now
        for i in range(12):
            assert source.read() is not None
            if i == 2:
                t.now += 0.25
        assert t.now - start == pytest.approx(1.2)
    finally:
        source.close()


def test_drop_latest_keeps_newest_and_counts() -> None:
    q: DropQueue[int] = DropQueue(2, DropPolicy.LATEST)
    for i in range(5):
        assert q.put(i)
    assert q.dropped == 3
    assert [q.get(0), q.get(0)] == [3, 4]
    assert q.get(timeout=0.01) is None
    q.close()
    with pytest.raises(QueueClosed):
        q.get(0)
    assert not q.put(9), "closed queues refuse new items"


def test_drop_block_waits_for_room() -> None:
    q: DropQueue[int] = DropQueue(1, DropPolicy.BLOCK)
    assert q.put(1)
    assert not q.put(2, timeout=0.05), "full BLOCK queue times out instead of dropping"
    threading.Timer(0.1, lambda: q.get(0)).start()
    assert q.put(3, timeout=5)
    assert q.get(0) == 3 and q.dropped == 0


def test_latest_policy_bounds_latency_on_a_slow_consumer(clip: Path) -> None:
    q: DropQueue[Frame] = DropQueue(2, DropPolicy.LATEST)
    done = threading.Event()
    cfg = FileCamera(type="file", path=clip, max_frames=200)
    reader = CameraReader("cam0", open_source(cfg), q.put, Backoff(0.01, 0.05), 200, on_end=done.set)
    reader.start()
    assert done.wait(60)
    assert q.dropped == 198 and len(q) == 2
    assert [q.get(0).seq, q.get(0).seq] == [198, 199]  # type: ignore[union-attr]


def test_backoff_is_capped_exponential() -> None:
    b = Backoff(0.5, 4.0)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    b.reset()
    assert b.next_delay() == 0.5
    jittered = Backoff(1.0, 8.0, jitter=0.2)
    delays = [jittered.next_delay() for _ in range(5)]
    for got, base in zip(delays, [1.0, 2.0, 4.0, 8.0, 8.0], strict=True):
        assert 0.8 * base <= got <= 1.2 * base
    assert len({round(d / b, 6) for d, b in zip(delays, [1, 2, 4, 8, 8], strict=True)}) > 1


def test_unreachable_stream_retries_with_backoff_and_never_logs_credentials(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()  # nothing listens here: connection refused at once
    cfg = UrlCamera(
        type="url",
        url=f"rtsp://127.0.0.1:{port}/live",
        username="admin",
        password="hunter2",  # type: ignore[arg-type]
        read_timeout_s=1,
        reconnect_initial_s=0.05,
        reconnect_max_s=0.2,
    )
    source = open_source(cfg)
    assert "hunter2" in str(source.target) and "hunter2" not in source.description  # type: ignore[attr-defined]
    reader = CameraReader("door", source, lambda f: None, Backoff(0.05, 0.2))
    with caplog.at_level(logging.INFO):
        reader.start()
        deadline = time.monotonic() + 30
        while reader.stats.reconnects < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        reader.stop()
        assert reader.join(10)
    assert reader.stats.reconnects >= 4 and reader.stats.frames == 0
    assert "cannot open" in reader.stats.last_error
    text = caplog.text
    assert "retrying in 0.1s" in text and "retrying in 0.2s" in text
    assert "hunter2" not in text and "admin" not in text


def test_missing_v4l2_device_is_a_camera_error() -> None:
    source = open_source(V4L2Camera(type="v4l2", device="/dev/video63"))
    with pytest.raises(CameraError, match="cannot open V4L2 device /dev/video63"):
        source.open()


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("rtsp://admin:pw@10.0.0.2:554/s1", "rtsp://***@10.0.0.2:554/s1"),
        ("rtsp://token@cam/s", "rtsp://***@cam/s"),
        ("http://cam.lan/mjpg", "http://cam.lan/mjpg"),
        ("rtsp://u:p%40ss@[fe80::1]:8554/x?a=1", "rtsp://***@[fe80::1]:8554/x?a=1"),
        ("not a url user:pw@x", "not a url user:pw@x"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_with_credentials_percent_encodes() -> None:
    assert with_credentials("rtsp://cam/s", "ad min", "p@ss:w/rd") == "rtsp://ad%20min:p%40ss%3Aw%2Frd@cam/s"
    assert with_credentials("rtsp://old@cam/s", "new", None) == "rtsp://new@cam/s"
    assert with_credentials("rtsp://cam/s", None, None) == "rtsp://cam/s"


def test_gstreamer_pipelines_from_typed_config() -> None:
    """The NVIDIA elements and caps a Jetson needs, ending in NV12 at an appsink named sink (no BGR
    conversion on the CPU); the software stand-ins keep the same shape."""
    cfg = CsiCamera(type="csi", sensor_id=1, width=1280, height=720, fps=60, flip_method=2)
    pipe = csi_pipeline(cfg.sensor_id, cfg.width, cfg.height, cfg.fps, cfg.flip_method, cfg.elements)
    assert pipe == (
        "nvarguscamerasrc name=src sensor-id=1 ! "
        "video/x-raw(memory:NVMM),width=1280,height=720,framerate=60/1,format=NV12 ! "
        "nvvidconv flip-method=2 ! video/x-raw,format=NV12 ! "
        "appsink name=sink drop=true max-buffers=2 sync=false"
    )
    hw = rtsp_hw_pipeline("rtsp://cam/s1", "h265", 100)
    assert hw == (
        'rtspsrc name=src location="rtsp://cam/s1" latency=100 protocols=tcp ! rtph265depay ! h265parse ! '
        "nvv4l2decoder ! nvvidconv ! video/x-raw,format=NV12 ! "
        "appsink name=sink drop=true max-buffers=2 sync=false"
    )
    assert element_names(hw) == [
        "rtspsrc",
        "rtph265depay",
        "h265parse",
        "nvv4l2decoder",
        "nvvidconv",
        "appsink",
    ]
    soft = rtsp_hw_pipeline("rtsp://cam/s1", "h264", 0, "software")
    assert "rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! video/x-raw,format=NV12 ! appsink" in soft
    # nvvidconv's flip-method 1 (counter-clockwise) is videoflip's method 3; 5 and 6 swap places too.
    assert "videoflip method=3 !" in csi_pipeline(0, 64, 48, 5, 1, "software")
    assert "videoflip method=7 !" in csi_pipeline(0, 64, 48, 5, 5, "software")
    assert element_names(csi_pipeline(0, 64, 48, 5, 0, "software"))[0] == "videotestsrc"


@pytest.mark.parametrize(
    "evil", ['rtsp://cam/s" ! filesink location=/etc/passwd', "rtsp://cam/s ! x", "rtsp://c/$(reboot)"]
)
def test_gstreamer_url_injection_refused(evil: str) -> None:
    with pytest.raises(ValueError, match="not allowed"):
        rtsp_hw_pipeline(evil, "h264", 0)
    with pytest.raises(ValueError):
        UrlCamera(type="url", url=evil)


def test_csi_pipeline_refuses_non_integers() -> None:
    with pytest.raises(ValueError, match="sensor_id"):
        csi_pipeline("0 ! evil", 1, 1, 1, 0)  # type: ignore[arg-type]


def _gst_config(tmp_path, world_onnx, cam: dict) -> Path:
    import yaml

    path = tmp_path / "gst.yaml"
    path.write_text(yaml.safe_dump({"cameras": [cam], "model": {"path": str(world_onnx)}}))
    return path


@pytest.mark.parametrize(
    ("cam", "element"),
    [
        ({"type": "csi", "name": "front"}, "nvarguscamerasrc"),
        ({"type": "rtsp-hw", "name": "gate", "url": "rtsp://127.0.0.1:9/x"}, "nvv4l2decoder"),
    ],
)
def test_a_gstreamer_camera_this_machine_cannot_run_is_a_config_error(
    tmp_path, world_onnx, cam, element
) -> None:
    """Away from a Jetson the NVIDIA elements are missing: a csi or rtsp-hw camera would reconnect forever.
    Exit 78 at start, one line naming the camera and the missing element (run and check-config alike)."""
    from tests.conftest import run_cli

    config = _gst_config(tmp_path, world_onnx, cam)
    for args in (("run", "-c", str(config)), ("check-config", str(config))):
        res = run_cli(*args, timeout=60)
        assert res.returncode == 78, (args, res.stdout, res.stderr)
        lines = [line for line in res.stderr.splitlines() if line.startswith("config error")]
        assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
        assert cam["name"] in lines[0] and element in lines[0] and cam["type"] in lines[0]
    # The same camera on Debian's stand-ins is a valid config here.
    config = _gst_config(tmp_path, world_onnx, {**cam, "elements": "software"})
    res = run_cli("check-config", str(config), timeout=60)
    assert res.returncode == 0, res.stderr


def test_hardware_decode_falls_back_to_the_cpu_once_and_says_why(clip: Path, caplog: Any) -> None:
    """Where NVDEC cannot run (no PyNvVideoCodec or no NVIDIA GPU: CI), ``decode: auto`` reads the file on
    the CPU, says so once in the log and in ``decoder`` (the daemon's info); ``nvdec`` refuses instead."""
    import importlib.util

    from edge_daemon.camera import hardware_source, open_source
    from edge_daemon.config.cameras import FileCamera
    from edge_daemon.errors import CameraError

    if importlib.util.find_spec("PyNvVideoCodec") is not None:
        pytest.skip("PyNvVideoCodec is installed: NVDEC may work here (tests/test_gpu_streams.py)")
    cfg = FileCamera(name="cam0", type="file", path=clip)
    assert hardware_source(cfg.model_copy(update={"decode": "cpu"}), cpu := open_source(cfg)) is cpu
    with caplog.at_level(logging.WARNING):
        source = hardware_source(cfg, open_source(cfg))
        assert source.decoder.startswith("cpu (") and "PyNvVideoCodec" in source.decoder
        for _ in range(2):
            source.open()
            image = source.read()
            assert isinstance(image, np.ndarray) and image.shape == (576, 768, 3)
            source.close()
    assert sum("NVDEC unavailable" in r.getMessage() for r in caplog.records) == 1
    required = hardware_source(cfg.model_copy(update={"decode": "nvdec"}), open_source(cfg))
    with pytest.raises(CameraError, match="NVDEC"):
        required.open()
