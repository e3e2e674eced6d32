"""GStreamer cameras through PyGObject's appsink, with Debian's software stand-ins for the NVIDIA elements.

The same appsink code reads a Jetson's ``nvv4l2decoder ! nvvidconv`` NV12; here ``avdec_h264`` /
``avdec_h265 ! videoconvert`` stand in, against the real RTSP server (gst-rtsp-server) serving an H.264 or
H.265 clip made from the demo clip. FFmpeg's decoder is behind both ``avdec_*`` and PyAV, so the pictures
that come out of the appsink must equal PyAV's decode of the same file bit for bit.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_daemon.camera.gstreamer import csi_pipeline, rtsp_hw_pipeline
from edge_daemon.errors import CameraError
from tests.conftest import Broker, free_port, subscribed
from tests.helpers import rtsp

av = pytest.importorskip("av")
appsink = pytest.importorskip("edge_daemon.camera.appsink")

FRAMES = 50


@pytest.fixture(scope="module")
def gst() -> None:
    missing = appsink.missing_elements(rtsp_hw_pipeline("rtsp://x/y", "h265", 0, "software"))
    why = rtsp.available()
    if missing or why:  # setup-system.sh installs both: here it is a failure, not a skip
        pytest.fail(f"GStreamer cannot run here: {missing or why}")


@pytest.fixture(scope="module")
def clips(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from edge_daemon.tools.clips import make_clip

    out = tmp_path_factory.mktemp("clips")
    # 384x288 with BT.709 declared: a stream under 720 lines that says BT.709 must be read as BT.709.
    return {
        c: make_clip(clip, out / f"cam.{c}.mp4", c, frames=FRAMES, size=(384, 288), fps=25)
        for c in ("h264", "h265")
    }


def _file_nv12(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="nv12") for f in container.decode(video=0)]


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_rtsp_through_the_appsink_gives_the_streams_own_pictures(gst, clips, codec: str) -> None:
    want = _file_nv12(clips[codec])
    server = rtsp.RtspServer(free_port(), (codec, clips[codec]))
    server.start()
    source = appsink.GstSource(rtsp_hw_pipeline(server.url, codec, 0, "software"), "test camera", 5.0)
    try:
        source.open()
        got = [source.read() for _ in range(30)]
    finally:
        source.close()
        server.kill()
    assert source.decoder == f"gstreamer (avdec_{codec})"
    pic = got[0]
    assert (pic.width, pic.height, pic.host.shape) == (384, 288, (432, 384))
    assert pic.colour.matrix == "bt709" and not pic.colour.full_range  # from the caps, not the size
    # Consecutive pictures of the file, in order, identical to FFmpeg's own decode.
    start = next(i for i, w in enumerate(want) if np.array_equal(w, got[0].host))
    for k, p in enumerate(got):
        assert np.array_equal(p.host, want[start + k]), f"picture {k} differs from file frame {start + k}"


def test_a_killed_server_is_an_error_at_once_and_a_restart_reads_again(gst, clips) -> None:
    server = rtsp.RtspServer(free_port(), ("h264", clips["h264"]))
    server.start()
    source = appsink.GstSource(rtsp_hw_pipeline(server.url, "h264", 0, "software"), "door", 2.0)
    try:
        source.open()
        source.read()
        server.kill()
        t0 = time.monotonic()
        with pytest.raises(CameraError, match="door"):
            for _ in range(FRAMES + 10):  # frames already in flight may still arrive
                source.read()
        assert time.monotonic() - t0 < 2.0 + FRAMES / 25  # the read timeout, after what was in flight
        source.close()
        with pytest.raises(CameraError, match=r"cannot|no frame"):  # nobody listening now
            source.open()
            source.read()
        server.start()
        source.open()
        assert source.read().width == 384
    finally:
        source.close()
        server.kill()


def test_a_csi_stand_in_with_padded_rows_comes_out_unpadded(gst) -> None:
    """322 pixels wide: GStreamer pads NV12 rows to 324 bytes; the picture must come out 322 wide."""
    source = appsink.GstSource(csi_pipeline(0, 322, 240, 30, 0, "software"), "CSI stand-in", 5.0)
    try:
        source.open()
        pic = source.read()
    finally:
        source.close()
    assert (pic.width, pic.height, pic.host.shape) == (322, 240, (360, 322))
    assert pic.colour.matrix == "bt601"  # videotestsrc declares BT.601 for SD
    bgr = pic.to_bgr()
    assert bgr.shape == (240, 322, 3) and bgr.max() > 200  # the white ball on black


def test_nv12_planes_drops_the_row_padding() -> None:
    width, height, stride = 6, 4, 8
    y = np.arange(height * width, dtype=np.uint8).reshape(height, width)
    uv = 200 + np.arange(height // 2 * width, dtype=np.uint8).reshape(height // 2, width)
    padded = np.zeros((height * 3 // 2, stride), np.uint8)
    padded[:height, :width], padded[height:, :width] = y, uv
    out = appsink.nv12_planes(padded.reshape(-1), width, height)
    assert np.array_equal(out, np.concatenate([y, uv]))
    assert appsink.nv12_planes(np.concatenate([y, uv]).reshape(-1), width, height).shape == (6, 6)
    with pytest.raises(CameraError, match="unexpected NV12"):
        appsink.nv12_planes(np.zeros(10, np.uint8), width, height)


def test_the_daemon_reads_an_rtsp_hw_camera_through_the_appsink(
    gst, clips, broker: Broker, world_onnx
) -> None:
    """The whole daemon on an ``rtsp-hw`` camera with the software elements: detections are published
    and ``info`` says what decoded."""
    from edge_daemon.app import run_daemon
    from edge_daemon.config import Settings

    server = rtsp.RtspServer(free_port(), ("h264", clips["h264"]))
    server.start()
    camera = {"type": "rtsp-hw", "name": "gate", "url": server.url, "elements": "software", "latency_ms": 0}
    settings = Settings(
        device_id="gstdev",
        cameras=[{**camera, "max_frames": 20, "read_timeout_s": 5, "drop_policy": "block"}],
        model={"path": str(world_onnx)},
        mqtt={"host": "127.0.0.1", "port": broker.port, "connect_timeout_s": 5},
    )
    results: list[int] = []
    try:
        with subscribed(broker, "edge/gstdev/#") as sub:
            stats = run_daemon(settings, threading.Event(), on_result=lambda f, d: results.append(f.seq))
            assert sub.wait_for(lambda m: any(t.endswith("/info") for t, _, _ in m), timeout=10)
    finally:
        server.kill()
    assert len(results) == 20 and stats.published >= 20, stats
    info = json.loads(sub.on("/info")[-1])
    assert info["decode"] == {"gate": "gstreamer (avdec_h264)"}
