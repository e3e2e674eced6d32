"""How long PyNvVideoCodec holds the interpreter lock while a decoder starts (first frames) and ends.

A thread ticks every millisecond; the longest gap between its ticks while the main thread makes, uses
and drops a decoder is how long every other Python thread of the daemon would wait.

    python scripts/probe_nvdec_gil.py [clip]
"""

import itertools
import json
import sys
import threading
import time

import PyNvVideoCodec as nvc

clip = sys.argv[1] if len(sys.argv) > 1 else ".assets/streams-1080p-h264.mp4"
ticks: list[float] = []
stop = threading.Event()


def counter() -> None:
    while not stop.is_set():
        ticks.append(time.perf_counter())
        time.sleep(0.001)


th = threading.Thread(target=counter)
th.start()
time.sleep(0.5)
out: dict[int, dict[str, float | None]] = {}
for rnd in range(3):
    t0 = time.perf_counter()
    d = nvc.CreateDemuxer(clip)
    dec = nvc.CreateDecoder(
        gpuid=0, codec=d.GetNvCodecId(), usedevicememory=True, latency=nvc.DisplayDecodeLatencyType.LOW
    )
    n = 0
    for pkt in iter(d.Demux, None):
        n += len(dec.Decode(pkt))
        if n >= 3:
            break
    t1 = time.perf_counter()
    del dec, d
    t2 = time.perf_counter()
    gaps = [b - a for a, b in itertools.pairwise(ticks) if t0 - 0.01 <= a <= t2]
    out[rnd] = {
        "create_to_3_frames_ms": round((t1 - t0) * 1e3, 1),
        "destroy_ms": round((t2 - t1) * 1e3, 1),
        "longest_other_thread_gap_ms": round(max(gaps) * 1e3, 1) if gaps else None,
    }
    time.sleep(0.3)
stop.set()
th.join()
print(json.dumps(out))
