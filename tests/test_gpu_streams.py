"""Hardware decode and the fused NV12 kernel on a real NVIDIA GPU (marker ``gpu``).

- The NV12 -> letterbox -> RGB CHW kernel against the CPU path (edge_daemon.colour.nv12_to_bgr, itself
  checked against FFmpeg's swscale in tests/test_colour.py, then the CPU letterbox), on real frames, for
  BT.601/BT.709 in limited and full range, float32 and float16; against FFmpeg directly where PyAV is here.
- NVDEC (PyNvVideoCodec) decoding the 1080p H.264 and H.265 clips (scripts/make_stream_clips.py) into
  device memory: the pictures match OpenCV's CPU decode of the same frames.
- The daemon's CUDA pipeline with ``decode: nvdec`` against ``decode: cpu`` on the same clip.

Self-contained (no conftest): ``python -m pytest --noconftest -m gpu tests/test_gpu_streams.py``.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from edge_daemon.colour import Colour, nv12_to_bgr
from tests.helpers.assets import find_asset
from tests.test_gpu import _has_gpu, _real_frames

cuda = pytest.importorskip("edge_daemon.gpu.cuda", reason="cuda-python not installed")


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _has_gpu(), reason="no NVIDIA GPU / driver here")]
COLOURS = [Colour(m, f) for m in ("bt601", "bt709") for f in (False, True)]  # type: ignore[arg-type]


def _nv12(bgr: np.ndarray) -> np.ndarray:
    """A real frame as NV12 (OpenCV's I420, chroma interleaved): the bytes a decoder would hand over."""
    h, w = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    u = i420[h : h + h // 4].reshape(h // 2, w // 2)
    v = i420[h + h // 4 :].reshape(h // 2, w // 2)
    return np.concatenate([i420[:h], np.stack([u, v], -1).reshape(h // 2, w)])


def _ffmpeg_bgr(nv12: np.ndarray, colour: Colour) -> np.ndarray | None:
    try:
        import av
        from av.video.reformatter import Interpolation
    except ImportError:
        return None
    flags = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT
    frame = av.VideoFrame.from_ndarray(nv12, format="nv12").reformat(
        format="bgr24",
        src_colorspace="ITU709" if colour.matrix == "bt709" else "ITU601",
        src_color_range="JPEG" if colour.full_range else "MPEG",
        interpolation=flags,
    )
    return frame.to_ndarray()


@pytest.mark.parametrize("dst_hw", [(384, 640), (640, 640)])
def test_nv12_kernel_equals_the_cpu_path(dst_hw: tuple[int, int], tmp_path: Path) -> None:
    from edge_daemon.gpu.kernels import GpuLetterbox
    from edge_daemon.model.preprocess import preprocess

    kernel = GpuLetterbox.load(cuda.device_info(0).compute_capability, tmp_path)
    stream = cuda.Stream()
    try:
        for frame in _real_frames():
            nv12 = _nv12(frame)
            h, w = frame.shape[:2]
            src = cuda.DeviceBuffer(nv12.nbytes)
            cuda.copy_pageable_htod(src, nv12)
            out = cuda.PinnedBuffer((1, 3, *dst_hw), np.float32)
            out16 = cuda.PinnedBuffer((1, 3, *dst_hw), np.float16)
            dev, dev16 = cuda.DeviceBuffer(out.nbytes), cuda.DeviceBuffer(out16.nbytes)
            for colour in COLOURS:
                want, meta = preprocess(nv12_to_bgr(nv12, colour), dst_hw)
                args = (src.ptr, w, src.ptr + w * h, w, colour.coefficients(), meta)
                kernel.launch_nv12(*args, dev.ptr, stream.raw)
                kernel.launch_nv12(*args, dev16.ptr, stream.raw, half=True)
                cuda.copy_dtoh_async(out, dev, stream)
                cuda.copy_dtoh_async(out16, dev16, stream)
                stream.synchronize()
                diff = np.abs(out.array - want)
                assert diff.max() <= 1 / 255 + 1e-6, (colour, frame.shape, dst_hw, diff.max() * 255)
                assert diff.mean() <= 0.2 / 255, (colour, diff.mean() * 255)
                np.testing.assert_array_equal(out16.array, out.array.astype(np.float16))
                ffmpeg = _ffmpeg_bgr(nv12, colour)
                if ffmpeg is not None:  # FFmpeg's own conversion, then the CPU letterbox
                    direct, _ = preprocess(ffmpeg, dst_hw)
                    assert np.abs(out.array - direct).max() <= 1 / 255 + 1e-6, colour
            for b in (src, out, out16, dev, dev16):
                b.close()
    finally:
        stream.close()
        kernel.close()


def _clip(codec: str) -> Path:
    return find_asset(f"streams-1080p-{codec}.mp4")


@pytest.mark.parametrize("codec", ["h264", "h265"])
def test_nvdec_decodes_into_device_memory_the_frames_opencv_decodes(codec: str) -> None:
    pytest.importorskip("PyNvVideoCodec", reason="PyNvVideoCodec not installed")
    from edge_daemon.camera.nvdec import NvdecSource
    from edge_daemon.camera.opencv import OpenCVSource
    from edge_daemon.types import Nv12Picture

    clip = _clip(codec)
    cpu = OpenCVSource(str(clip), cv2.CAP_FFMPEG, f"file {clip}", finite=True)
    source = NvdecSource(str(clip), f"file {clip}", cpu, finite=True, pool=4, required=True)
    source.open()
    reference = cv2.VideoCapture(str(clip))
    opencv = []
    while True:
        ok, img = reference.read()
        if not ok:
            break
        opencv.append(img)
    reference.release()
    count = 0
    try:
        while True:
            pic = source.read()
            if pic is None:
                break
            assert isinstance(pic, Nv12Picture) and pic.device is not None and pic.host is None
            assert (pic.width, pic.height) == (1920, 1080)
            assert pic.colour == Colour("bt709", False), "BT.709 limited: declared, or read so for 1080 lines"
            if count % 50 == 0 and count + 25 < len(opencv):
                # The same picture as OpenCV's CPU decode (whose own conversion to BGR may take either
                # matrix): far closer to OpenCV's frame of the same number than to one a second later.
                host = pic.device.download()
                same = min(
                    _mean_diff(nv12_to_bgr(host, Colour(m)), opencv[count]) for m in ("bt601", "bt709")
                )
                later = min(
                    _mean_diff(nv12_to_bgr(host, Colour(m)), opencv[count + 25]) for m in ("bt601", "bt709")
                )
                assert same < 3.0 and later > 2 * same, (count, same, later)
            pic.device.release()
            count += 1
    finally:
        source.close()
    assert count == len(opencv) == 300 and source.decoder == "nvdec"


def test_a_looped_file_starts_again_with_the_same_pictures() -> None:
    """Looping keeps the decoder and starts a new demuxer at the first keyframe: picture k of the second
    pass is picture k of the first, and no picture is lost or repeated at the seam."""
    pytest.importorskip("PyNvVideoCodec", reason="PyNvVideoCodec not installed")
    from edge_daemon.camera.nvdec import NvdecSource
    from edge_daemon.camera.opencv import OpenCVSource

    clip = _clip("h264")
    cpu = OpenCVSource(str(clip), cv2.CAP_FFMPEG, f"file {clip}", finite=True, loop=True)
    source = NvdecSource(str(clip), f"file {clip}", cpu, finite=True, loop=True, pool=4, required=True)
    source.open()
    first: dict[int, np.ndarray] = {}
    try:
        for k in range(2 * 300 + 5):
            pic: Any = source.read()
            if k % 300 in (0, 1, 150, 299):
                host = pic.device.download()
                if k < 300:
                    first[k] = host
                else:
                    assert np.array_equal(host, first[k % 300]), k
            pic.device.release()
    finally:
        source.close()
    assert not np.array_equal(first[0], first[299])


def _mean_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def _settings(tmp_path: Path, decode: str, cameras: int = 1) -> Any:
    from edge_daemon.config import Settings

    return Settings(
        device_id="gpustreams",
        cameras=[
            {
                "type": "file",
                "name": f"cam{i}",
                "path": str(_clip("h264")),
                "drop_policy": "block",
                "max_frames": 90,
                "decode": decode,
            }
            for i in range(cameras)
        ],
        model={"path": str(find_asset("yolov8s-world.pt")), "imgsz": [384, 672], "cache_dir": str(tmp_path)},
        engine={"backend": "torch", "precision": "fp16", "max_batch": cameras},
        gpu={"preprocess": "gpu"},
        analytics={"snapshots": {"dir": str(tmp_path / "snapshots")}},
    )


def _run(settings: Any) -> tuple[dict[Any, Any], Any]:
    from edge_daemon.app import build_pipeline, load_model
    from edge_daemon.publish.base import NullPublisher

    results: dict[Any, Any] = {}
    model = load_model(settings)
    try:
        pipeline = build_pipeline(
            settings, model, NullPublisher(), on_result=lambda f, d: results.__setitem__((f.camera, f.seq), d)
        )
        pipeline.run(threading.Event())
        if pipeline.error is not None:
            raise pipeline.error
    finally:
        model.engine.close()
    return results, pipeline


def test_the_pipeline_on_nvdec_frames_finds_what_it_finds_on_cpu_decoded_ones(tmp_path: Path) -> None:
    pytest.importorskip("PyNvVideoCodec", reason="PyNvVideoCodec not installed")
    pytest.importorskip("ultralytics", reason="the .pt -> TorchScript export needs Ultralytics")
    from tests.test_gpu_pipeline import _compare

    cpu, p_cpu = _run(_settings(tmp_path, "cpu", cameras=2))
    gpu, p_gpu = _run(_settings(tmp_path, "nvdec", cameras=2))
    assert p_cpu.publisher.info["decode"] == {"cam0": "cpu", "cam1": "cpu"}
    assert p_gpu.publisher.info["decode"] == {"cam0": "nvdec", "cam1": "nvdec"}
    assert gpu.keys() == cpu.keys() and len(gpu) == 180
    assert p_gpu.stage.in_place == 180 and p_gpu.stage.copied == 0, "NVDEC frames never visit the host"
    matched = total = 0
    for key, ref in cpu.items():
        m, t, _, _ = _compare(gpu[key], ref)
        matched, total = matched + m, total + t
    # The two paths differ in colour conversion only (OpenCV: BT.601 fast path; ours: the declared BT.709).
    assert total > 300 and matched / total >= 0.9, (matched, total)


class _Collect:
    """A publisher that keeps every detections message (camera, seq) -> [(label, confidence, box)]; the
    rest (events, states, health) as the null publisher."""

    def __init__(self) -> None:
        from edge_daemon.publish.base import NullPublisher

        self._null = NullPublisher()
        self.info: dict[str, Any] | None = None
        self.found: dict[tuple[str, int], list[tuple[str, float, tuple[float, ...]]]] = {}

    def publish_many(self, messages: Any) -> None:  # (path, payload): detections go out this way
        for path, payload in messages:
            if path.endswith("/detections"):
                m = json.loads(payload)
                self.found[(m["camera"], m["seq"])] = [
                    (d["label"], d["confidence"], tuple(d["box"].values())) for d in m["detections"]
                ]

    def __getattr__(self, name: str) -> Any:  # events, health, state...: as the null publisher
        return getattr(self._null, name)


def test_a_shared_engine_finds_what_one_process_finds(tmp_path: Path) -> None:
    """service.shared_engine on the GPU: two workers (NVDEC, the CUDA stage) hand their batches to one
    torch engine in a process of its own through page-locked shared memory; every frame's detections
    match those of one process running the same engine itself (fp16: batches of other sizes may move a
    confidence or a box a little)."""
    pytest.importorskip("PyNvVideoCodec", reason="PyNvVideoCodec not installed")
    from edge_daemon.app import build_pipeline, load_model
    from edge_daemon.app.workers import WorkerGroup
    from edge_daemon.config import Settings

    model_path = find_asset("yolov8s-world-384x672-fp16.torchscript")
    cams = [{"type": "file", "name": f"cam{i}", "path": str(_clip("h264")), "drop_policy": "block",
             "max_frames": 40, "decode": "nvdec"} for i in range(4)]  # fmt: skip
    settings = Settings(
        device_id="shared",
        cameras=cams,
        model={"path": str(model_path), "imgsz": [384, 672], "cache_dir": str(tmp_path)},
        engine={
            "backend": "torch",
            "precision": "fp16",
            "device_index": 0,
            "cuda_graphs": True,
            "max_batch": 4,
        },
        gpu={"preprocess": "gpu"},
        analytics={"snapshots": {"dir": str(tmp_path / "snapshots")}},
        publish={"detections": "all"},  # every frame's message, whatever moved
        http={"enabled": False},
    )
    alone = _Collect()
    model = load_model(settings)
    try:
        pipeline = build_pipeline(settings, model, alone)
        pipeline.run(threading.Event())
        assert pipeline.error is None
    finally:
        model.engine.close()
    service = settings.service.model_copy(update={"workers": 2, "shared_engine": True})
    group = WorkerGroup(settings.model_copy(update={"service": service}))
    group.load(threading.Event())
    shared = _Collect()
    group.attach(shared)
    group.run(threading.Event())
    assert group.error is None, group.error
    assert shared.info is not None and shared.info["shared_engine"] is True
    assert set(shared.info["decode"].values()) == {"nvdec"}
    assert len(alone.found) == len(shared.found) == 160 and alone.found.keys() == shared.found.keys()
    boxes = matched = 0
    for key, want in alone.found.items():
        got = shared.found[key]
        boxes += len(want)
        for label, conf, box in want:
            near = [g for g in got if g[0] == label and abs(g[1] - conf) < 0.02]
            matched += any(max(abs(a - b) for a, b in zip(g[2], box, strict=True)) < 2.0 for g in near)
    assert boxes > 500 and matched >= 0.98 * boxes, (matched, boxes)
