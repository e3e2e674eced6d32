#!/usr/bin/env python3
"""GPU letterbox kernel vs OpenCV's CPU letterbox for a 1080p frame, and pinned vs pageable H2D bandwidth.

Usage (on a machine with an NVIDIA GPU): python3 scripts/bench_gpu_preprocess.py [--clip .assets/vtest.avi]
Prints one JSON object; medians over --iters runs, all within this one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_daemon.gpu import cuda
from edge_daemon.gpu.kernels import GpuLetterbox
from edge_daemon.model.preprocess import letterbox_meta, preprocess


def median_ms(fn, iters: int) -> float:  # type: ignore[no-untyped-def]
    for _ in range(10):
        fn()
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clip", default=".assets/vtest.avi")
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--dst", type=int, nargs=2, default=[384, 640])
    args = ap.parse_args()
    cap = cv2.VideoCapture(args.clip)
    ok, first = cap.read()
    assert ok, f"cannot read {args.clip}"
    frame: np.ndarray = np.asarray(first, np.uint8)
    frame = np.asarray(
        cv2.resize(frame, (1920, 1080), interpolation=cv2.INTER_CUBIC), np.uint8
    )  # 1080p scene
    dst_hw: tuple[int, int] = (args.dst[0], args.dst[1])
    gpu = cuda.device_info(0)
    stream = cuda.Stream()
    kernel = GpuLetterbox.load(gpu.compute_capability)
    meta = letterbox_meta(frame.shape[:2], dst_hw)
    src = cuda.PinnedBuffer(frame.shape, np.uint8)
    src.write(frame)
    dev_src = cuda.DeviceBuffer(src.nbytes)
    dev_out = cuda.DeviceBuffer(3 * dst_hw[0] * dst_hw[1] * 4)
    out = cuda.PinnedBuffer((1, 3, *dst_hw), np.float32)

    def gpu_kernel_only() -> None:
        kernel.launch(dev_src.ptr, frame.shape[1] * 3, meta, dev_out.ptr, stream.raw)
        stream.synchronize()

    def gpu_upload_and_kernel() -> None:
        cuda.copy_htod_async(dev_src, src, stream)
        kernel.launch(dev_src.ptr, frame.shape[1] * 3, meta, dev_out.ptr, stream.raw)
        stream.synchronize()

    def cpu_opencv() -> None:
        preprocess(frame, dst_hw)

    cv2.setNumThreads(1)
    cpu_1t = median_ms(cpu_opencv, args.iters)
    cv2.setNumThreads(0)
    cv2.setNumThreads(-1)
    cpu_mt = median_ms(cpu_opencv, args.iters)
    g_kernel = median_ms(gpu_kernel_only, args.iters)
    g_full = median_ms(gpu_upload_and_kernel, args.iters)

    # H2D bandwidth, 64 MiB, pinned vs pageable (cudaMemcpy from a NumPy array's pages).
    n = 64 << 20
    pinned = cuda.PinnedBuffer((n,), np.uint8)
    pageable = np.ones(n, np.uint8)
    dev = cuda.DeviceBuffer(n)

    def h2d_pinned() -> None:
        cuda.copy_htod_async(dev, pinned, stream)
        stream.synchronize()

    def h2d_pageable() -> None:
        cuda.copy_pageable_htod(dev, pageable)

    t_pinned = median_ms(h2d_pinned, 50)
    t_pageable = median_ms(h2d_pageable, 50)
    want, _ = preprocess(frame, dst_hw)
    gpu_upload_and_kernel()
    cuda.copy_dtoh_async(out, dev_out, stream)
    stream.synchronize()
    report = {
        "gpu": f"{gpu.name} (sm {gpu.compute_capability})",
        "frame": "1920x1080 BGR (vtest.avi frame upscaled)",
        "model_input": f"{dst_hw[0]}x{dst_hw[1]}",
        "ms_median": {
            "cpu_opencv_letterbox_1_thread": round(cpu_1t, 3),
            "cpu_opencv_letterbox_all_threads": round(cpu_mt, 3),
            "gpu_kernel_only": round(g_kernel, 3),
            "gpu_pinned_upload_plus_kernel": round(g_full, 3),
        },
        "speedup_vs_cpu_1_thread": {
            "kernel": round(cpu_1t / g_kernel, 1),
            "upload_plus_kernel": round(cpu_1t / g_full, 1),
        },
        "h2d_64MiB_GBps": {
            "pinned": round(n / t_pinned / 1e6, 1),
            "pageable": round(n / t_pageable / 1e6, 1),
            "pinned_vs_pageable": round(t_pageable / t_pinned, 2),
        },
        "max_abs_diff_vs_cpu_x255": round(float(np.abs(out.array - want).max() * 255), 3),
        "iters": args.iters,
    }
    print(json.dumps(report, indent=2))
    for b in (src, dev_src, dev_out, out, pinned, dev):
        b.close()
    kernel.close()
    stream.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
