"""The cuda-python layer on a real NVIDIA GPU (marker ``gpu``; skipped where no GPU is present).

Self-contained (no conftest fixtures) so it runs on the GPU machine with only numpy and cuda-bindings:
``python -m pytest --noconftest -m gpu tests/test_gpu.py``.
"""

from __future__ import annotations

import numpy as np
import pytest

cuda = pytest.importorskip("edge_daemon.gpu.cuda", reason="cuda-python not installed")


def _has_gpu() -> bool:
    try:
        cuda.device_info(0)
    except cuda.CudaError:
        return False
    return True


pytestmark = pytest.mark.gpu
requires_gpu = pytest.mark.skipif(not _has_gpu(), reason="no NVIDIA GPU / driver here")


def test_without_a_driver_errors_are_clean_cuda_errors() -> None:
    """Runs everywhere: with no driver (CI) the first call raises CudaError naming the call and code."""
    if _has_gpu():
        with pytest.raises(cuda.CudaError, match=r"cudaGetDeviceCount|cudaErrorNoDevice"):
            cuda.device_info(99)
    else:
        with pytest.raises(cuda.CudaError) as info:
            cuda.device_info(0)
        assert info.value.call == "cudaGetDeviceCount" and info.value.code.startswith("cudaError")


@requires_gpu
def test_device_info() -> None:
    gpu = cuda.device_info(0)
    assert gpu.name and gpu.compute_capability.count(".") == 1 and gpu.total_memory > 1 << 30


@requires_gpu
def test_pinned_round_trip_through_device_memory() -> None:
    stream = cuda.Stream()
    src = cuda.PinnedBuffer((4, 3, 64, 80), np.float32)
    dst = cuda.PinnedBuffer((4, 3, 64, 80), np.float32)
    dev = cuda.DeviceBuffer(src.nbytes)
    try:
        data = np.random.default_rng(0).random((4, 3, 64, 80), dtype=np.float32)
        src.write(data)
        cuda.copy_htod_async(dev, src, stream)
        cuda.copy_dtoh_async(dst, dev, stream)
        stream.synchronize()
        np.testing.assert_array_equal(dst.array, data)
        with pytest.raises(ValueError, match="pinned buffer holds"):
            src.write(np.zeros((1, 3, 64, 80), np.float32))
        with pytest.raises(ValueError, match="exceeds a buffer"):
            cuda.copy_htod_async(dev, src, stream, nbytes=src.nbytes + 4)
    finally:
        for buf in (src, dst, dev):
            buf.close()
        stream.close()


@requires_gpu
def test_cuda_memory_provider_is_what_the_engine_uses() -> None:
    from edge_daemon.gpu.memory import CudaMemory

    mem = CudaMemory(0)
    host = mem.host((2, 5), np.float32)
    back = mem.host((2, 5), np.float32)
    dev = mem.device(40)
    host.write(np.arange(10, dtype=np.float32).reshape(2, 5))
    mem.upload(dev, host)
    mem.download(back, dev)
    mem.synchronize()
    assert back.array.tolist() == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    name, cc, integrated = mem.device_identity()
    assert name and cc and integrated is False
    assert mem.stream_handle != 0
    for b in (host, back, dev):
        b.close()
    mem.close()


@requires_gpu
def test_allocation_failure_is_a_clear_error() -> None:
    with pytest.raises(cuda.CudaError, match=r"cudaMalloc failed: cudaErrorMemoryAllocation"):
        cuda.DeviceBuffer(1 << 50)
