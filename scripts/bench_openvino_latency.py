"""Capture -> publish latency of the OpenVINO daemon with the LATENCY and the THROUGHPUT hint, the demo clip
paced at its native 10 fps like a live camera (``latest`` policy), 150 frames, rounds alternated.

    .venv/bin/python scripts/bench_openvino_latency.py
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))
from bench_integrations import _demo  # noqa: E402

from edge_daemon.app import load_model  # noqa: E402
from edge_daemon.tools.bench import _bench_settings, _daemon, _live  # noqa: E402

res: dict[str, list[tuple[float, float, float]]] = {}
models = {}
for hint in ("LATENCY", "THROUGHPUT"):
    s, _ = _bench_settings(_demo(150, engine={"backend": "openvino", "performance_hint": hint}), 150)
    models[hint] = (s, load_model(s))
for r in range(2):
    for hint in ("LATENCY", "THROUGHPUT") if r % 2 == 0 else ("THROUGHPUT", "LATENCY"):
        s, m = models[hint]
        fps, p50, p99 = _daemon(_live(s, 150), m, False)
        res.setdefault(hint, []).append((round(fps, 2), round(p50, 1), round(p99, 1)))
        print(hint, fps, p50, p99, flush=True)
print(res)
