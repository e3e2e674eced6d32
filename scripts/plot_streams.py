"""Plot ``edge-daemon bench --cameras`` results: FPS and capture -> publish latency against cameras.

    python scripts/plot_streams.py docs/data/streams-h100-h264.json docs/data/streams-h100-h265.json \
        docs/data/streams-h100-h264-workers8.json docs/data/streams-h100-h265-workers8.json \
        --out docs/img/streams.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("reports", type=Path, nargs="+")
    ap.add_argument("--out", type=Path, default=Path("docs/img/streams.png"))
    args = ap.parse_args()
    fig, (fps_ax, lat_ax) = plt.subplots(1, 2, figsize=(11, 4.2))
    for path in args.reports:
        report = json.loads(path.read_text())
        trials = sorted(report["trials"], key=lambda t: t["cameras"])
        n = [t["cameras"] for t in trials]
        label = report["clip"].rsplit("-", 1)[-1].removesuffix(".mp4").upper()
        workers = max(t.get("workers", 1) for t in trials)
        label += f", {workers} workers" if workers > 1 else ", 1 process"
        fps_ax.plot(n, [t["fps"] for t in trials], "o-", label=f"{label}: published FPS")
        lat_ax.plot(n, [t["p99_ms"] for t in trials], "o-", label=f"{label}: p99")
        lat_ax.plot(n, [t["p50_ms"] for t in trials], "o--", label=f"{label}: p50")
        held = report["held"]
        fps_ax.axvline(held, color=fps_ax.lines[-1].get_color(), alpha=0.3)
    top = max(n)
    fps_ax.plot([1, top], [30, 30 * top], ":", color="grey", label="30 FPS per camera")
    fps_ax.set(xlabel="cameras (1080p30)", ylabel="frames per second, all cameras", title="Throughput")
    lat_ax.axhline(100, color="red", alpha=0.4, label="100 ms (held limit)")
    lat_ax.set(xlabel="cameras (1080p30)", ylabel="capture -> publish, ms", title="Latency", yscale="log")
    for ax in (fps_ax, lat_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("edge-daemon bench --cameras: YOLO-World v8s fp16 (torch), NVDEC, H100 (vertical: held)")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)


if __name__ == "__main__":
    main()
