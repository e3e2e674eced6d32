"""The decoder's own limit for ``edge-daemon bench --cameras``: N decoders (NVDEC or OpenCV) read a clip
back to back, dealt over processes so that one interpreter lock is not what is measured."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

WARM_FRAMES = 10  # decoded by each stream before the clock starts (a decoder's start is not its rate)
DECODE_PROCESSES = 8  # the most processes the streams are dealt over


def _decode(clip: Path, nvdec: bool, streams: int, frames: int, start: Any, done: Any) -> None:
    """One process of :func:`decode_limit`: ``streams`` decoders on threads, each opened and past its
    first frames (a decoder's start is not its rate) before the common start."""
    import cv2

    from edge_daemon.camera.opencv import OpenCVSource

    ready, go = threading.Barrier(streams + 1), threading.Event()

    def work() -> None:
        cpu = OpenCVSource(str(clip), cv2.CAP_FFMPEG, "bench", finite=True, loop=True)
        source: Any = cpu
        if nvdec:
            from edge_daemon.camera.nvdec import NvdecSource
            from edge_daemon.gpu import cuda

            cuda.init_context(0)
            source = NvdecSource(str(clip), "bench", cpu, finite=True, loop=True, required=True, pool=4)
        source.open()
        try:
            for i in range(WARM_FRAMES + frames):
                if i == WARM_FRAMES:
                    ready.wait()
                    go.wait()
                pic = source.read()
                if nvdec:
                    pic.device.release()
        finally:
            source.close()

    threads = [threading.Thread(target=work, name=f"decode-{i}") for i in range(streams)]
    for t in threads:
        t.start()
    ready.wait()
    start.wait()
    started = time.perf_counter()
    go.set()
    for t in threads:
        t.join()
    done.put(time.perf_counter() - started)


def decode_limit(clip: Path, nvdec: bool, streams: int, processes: int = 1, frames: int = 150) -> float:
    """``streams`` decoders, dealt over ``processes`` processes (threads within each; one interpreter
    lock would otherwise be the limit, not the decoder), each reading ``frames`` pictures back to back
    once all are open and warm, from one start: frames per second over all of them."""
    import multiprocessing as mp

    processes = max(1, min(processes, streams))
    ctx = mp.get_context("spawn")
    start, done = ctx.Barrier(processes), ctx.Queue()
    shares = [len(range(i, streams, processes)) for i in range(processes)]
    procs = [ctx.Process(target=_decode, args=(clip, nvdec, k, frames, start, done)) for k in shares]
    for p in procs:
        p.start()
    try:
        elapsed = [done.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
    if any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"decode limit: a decoding process failed ({[p.exitcode for p in procs]})")
    return float(streams * frames / max(elapsed))
