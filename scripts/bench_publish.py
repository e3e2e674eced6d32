#!/usr/bin/env python3
"""The publish thread's time per message: MqttPublisher with its disk outbox against a real mosquitto.

    .venv/bin/python scripts/bench_publish.py --messages 20000 --batch 1 --batch 4
    PYTHONPATH=/path/to/other/checkout .venv/bin/python scripts/bench_publish.py ...   # another version

Publishes synthetic detections payloads (about 1 kB, like a frame with a few boxes) as fast as the
publisher takes them, ``--batch`` messages per call (one engine batch of that many cameras; a version
without ``publish_detections_many`` gets them one by one), and reports the median and p99 time the
calling thread spent per message, messages per second, and whether every message reached the broker.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from edge_daemon.config import MqttConfig  # noqa: E402
from edge_daemon.publish.mqtt import MqttPublisher  # noqa: E402
from tests.conftest import start_mosquitto  # noqa: E402


def run(messages: int, batch: int, tmp: Path) -> dict[str, object]:
    broker = start_mosquitto(tmp, extra="max_queued_messages 0\n")
    cfg = MqttConfig(
        host="127.0.0.1",
        port=broker.port,
        outbox={"path": tmp / f"outbox-{batch}.sqlite", "max_messages": 10 * messages},
        max_queued_messages=0,
    )
    pub = MqttPublisher.from_config(cfg, "bench")
    pub.start()
    boxes = [{"class_id": 0, "label": "person", "confidence": 0.87, "box": [1.0, 2.0, 3.0, 4.0]}] * 6
    many = getattr(pub, "publish_detections_many", None)
    per_message: list[float] = []
    started = time.perf_counter()
    try:
        for start in range(0, messages, batch):
            group = [
                (f"cam{i % batch}", json.dumps({"seq": start + i, "detections": boxes}).encode())
                for i in range(min(batch, messages - start))
            ]
            t0 = time.perf_counter()
            if many is not None:
                many(group)
            else:
                for camera, payload in group:
                    pub.publish_detections(camera, payload)
            per_message.append((time.perf_counter() - t0) / len(group))
        elapsed = time.perf_counter() - started
        delivered = pub.flush(120)
    finally:
        pub.close(timeout=30)
        broker.proc.terminate()
        broker.proc.wait(10)
    per_message.sort()
    return {
        "messages": messages,
        "batch": batch,
        "median_us_per_message": round(statistics.median(per_message) * 1e6, 1),
        "p99_us_per_message": round(per_message[int(0.99 * (len(per_message) - 1))] * 1e6, 1),
        "messages_per_s": round(messages / elapsed),
        "all_acknowledged": delivered,
        "api": "publish_detections_many" if many is not None else "publish_detections",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, action="append", help="messages per call (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-publish-") as tmp:
        for batch in args.batch or [1]:
            print(json.dumps(run(args.messages, batch, Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
