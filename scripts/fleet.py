#!/usr/bin/env python3
"""A fleet against one broker: N simulated daemons, consumers sharing the load, a broker restart mid-run.

    .venv/bin/python scripts/fleet.py --daemons 50 --seconds 30          # one run
    .venv/bin/python scripts/fleet.py --search 25,50,100,200              # the largest N held

Each simulated daemon is the real publishing half of edge-daemon: an ``MqttPublisher`` with its own paho
client, disk outbox and client id, publishing a detections-sized message (about 1 kB) per frame at a
camera's rate (``--fps``, 30). Daemons run in ``--procs`` publisher processes (threads share one
interpreter per process). Consumers are MQTT 5 clients in their own process on one shared subscription
(``$share/fleet/edge/+/+/detections``), persistent sessions, so the broker splits the stream between
them. mosquitto runs on loopback with persistence; halfway it is stopped (SIGTERM) and started again.

A size is *held* when every message arrives (counted per daemon and sequence number), the publishers kept
the camera rate (at least 95 % of the frames due), and the p99 publish -> receive latency outside the
restart window stays under one second. Prints one JSON line per run.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

TOPIC = "$share/fleet/edge/+/+/detections"
FILLER = "x" * 700  # with the header fields: about the size of a detections message with a few boxes


def publish(first: int, count: int, seconds: float, fps: float, port: int, tmp: Path) -> None:
    """Publisher process: ``count`` daemons; prints {"produced": {device: n}, "due": frames due}."""
    from edge_daemon.config import MqttConfig
    from edge_daemon.publish.mqtt import MqttPublisher

    pubs = []
    for i in range(first, first + count):
        cfg = MqttConfig(
            host="127.0.0.1",
            port=port,
            client_id=f"fleet-{i}",
            outbox={"path": tmp / f"outbox-{i}.sqlite"},
            connect_timeout_s=10,
        )
        pub = MqttPublisher.from_config(cfg, f"fleet-{i}")
        pub.info = {"device_id": f"fleet-{i}"}
        pubs.append(pub)
    threads = [threading.Thread(target=p.start) for p in pubs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    produced = [0] * count
    started = time.monotonic()
    frame = 0
    while (now := time.monotonic()) - started < seconds:
        due = int((now - started) * fps)
        while frame <= due:
            for k, pub in enumerate(pubs):
                body = {"d": first + k, "s": produced[k], "t": time.time(), "f": FILLER}
                pub.publish_detections("cam0", json.dumps(body).encode())
                produced[k] += 1
            frame += 1
        time.sleep(max(0.0, started + frame / fps - time.monotonic()))
    closers = [threading.Thread(target=p.close, kwargs={"timeout": 60}) for p in pubs]
    for t in closers:
        t.start()
    for t in closers:
        t.join()
    print(json.dumps({"produced": produced, "due": int(seconds * fps)}), flush=True)


def consume(consumers: int, port: int, out: Path, topic: str = TOPIC, daemons: int = 0) -> None:
    """Consumer process: MQTT 5 shared subscription, persistent sessions; on SIGTERM writes what arrived."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    got: list[tuple[int, int, float, float]] = []  # device, seq, sent, received
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: Any) -> None:
        now = time.time()
        body = json.loads(msg.payload)
        with lock:
            got.append((body["d"], body["s"], body["t"], now))

    clients = []
    for k in range(consumers):
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"fleet-consumer-{k}", protocol=mqtt.MQTTv5
        )
        client.on_message = on_message
        if topic == "partition":  # consumer k takes devices k, k + K, ...: plain persistent subscriptions
            filters = [(f"edge/fleet-{i}/+/detections", 1) for i in range(k, daemons, consumers)]
            client.on_connect = lambda c, *a, f=filters: c.subscribe(f)
        else:
            client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        client.reconnect_delay_set(1, 2)
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = 3600
        client.connect("127.0.0.1", port, clean_start=False, properties=props)
        client.loop_start()
        clients.append(client)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: done.set())
    print("ready", flush=True)
    done.wait()
    for client in clients:
        client.disconnect()
        client.loop_stop()
    with lock:
        out.write_text(json.dumps(got))


def start_broker(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    from tests.conftest import start_mosquitto

    extra = f"persistence true\npersistence_location {tmp}/\nmax_queued_messages 0\n"
    return start_mosquitto(tmp, extra=extra, port=port).proc


def run(daemons: int, seconds: float, fps: float, procs: int, consumers: int, topic: str) -> dict[str, Any]:
    from tests.conftest import free_port

    with tempfile.TemporaryDirectory(prefix="fleet-") as name:
        tmp = Path(name)
        port = free_port()
        broker = start_broker(tmp, port)
        out = tmp / "received.json"
        me = [sys.executable, str(Path(__file__).resolve())]
        cons = subprocess.Popen(
            [
                *me,
                "--consume",
                str(consumers),
                "--port",
                str(port),
                "--out",
                str(out),
                f"--topic={topic}",
                f"--daemons={daemons}",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert cons.stdout is not None and cons.stdout.readline().strip() == "ready"
        share = -(-daemons // procs)
        common = [f"--port={port}", f"--seconds={seconds}", f"--fps={fps}", f"--tmp={tmp}"]
        pubs = [
            subprocess.Popen(
                [*me, *common, "--publish", str(first), str(min(share, daemons - first))],
                stdout=subprocess.PIPE,
                text=True,
            )
            for first in range(0, daemons, share)
        ]
        started = time.time()
        time.sleep(seconds / 2)
        restart_at = time.time()
        broker.send_signal(signal.SIGTERM)
        broker.wait(30)
        broker = start_broker(tmp, port)
        restarted = time.time()
        produced: dict[int, int] = {}
        due = 0
        for first, p in zip(range(0, daemons, share), pubs, strict=True):
            line = p.communicate(timeout=seconds + 180)[0].strip().splitlines()[-1]
            result = json.loads(line)
            due = result["due"]
            produced.update({first + k: n for k, n in enumerate(result["produced"])})
        time.sleep(3)  # the consumers drain what the broker still holds
        cons.send_signal(signal.SIGTERM)
        cons.wait(60)
        got = json.loads(out.read_text())
        broker.terminate()
        broker.wait(30)
    received = {(d, s) for d, s, _, _ in got}
    want = {(d, s) for d, n in produced.items() for s in range(n)}
    missing = want - received
    lost = len(missing)
    # when the lost messages were made, in seconds relative to the broker's restart
    lost_when = sorted(s / fps - (restart_at - started) for _, s in missing)
    steady = sorted(r - t for _, _, t, r in got if not restart_at - 1 <= t <= restarted + 5)
    everything = sorted(r - t for _, _, t, r in got)
    kept_rate = min(produced.values()) / max(1, due)

    def pct(xs: list[float], q: float) -> float | None:
        return round(xs[int(q * (len(xs) - 1))] * 1000, 1) if xs else None

    held = lost == 0 and kept_rate >= 0.95 and (pct(steady, 0.99) or 1e9) < 1000
    return {
        "daemons": daemons,
        "fps_per_daemon": fps,
        "seconds": seconds,
        "publisher_processes": procs,
        "consumers": consumers,
        "produced": len(want),
        "received_unique": len(received & want),
        "duplicates": len(got) - len(received),
        "lost": lost,
        "lost_made_s_from_restart": [round(lost_when[0], 2), round(lost_when[-1], 2)] if lost_when else None,
        "lost_devices": len({d for d, _ in missing}),
        "rate_kept": round(kept_rate, 3),
        "latency_ms_p50_steady": pct(steady, 0.5),
        "latency_ms_p99_steady": pct(steady, 0.99),
        "latency_ms_p99_all": pct(everything, 0.99),
        "broker_outage_s": round(restarted - restart_at, 2),
        "broker_msgs_per_s": round(len(got) / max(1e-9, (max(r for *_, r in got) - started))) if got else 0,
        "held": held,
        "machine": f"{os.cpu_count()} cores",
        "median_latency_ms": round(statistics.median(everything) * 1000, 1) if everything else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--daemons", type=int, default=50)
    parser.add_argument("--search", help="comma-separated sizes, run in order until one is not held")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--procs", type=int, default=2, help="publisher processes")
    parser.add_argument("--consumers", type=int, default=4)
    parser.add_argument(
        "--topic",
        default=TOPIC,
        help="consumers' subscription (default: the shared one; a plain filter "
        "gives every consumer every message)",
    )
    parser.add_argument("--out", type=Path, help="append the JSON lines here")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--publish", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--consume", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--tmp", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        publish(args.publish[0], args.publish[1], args.seconds, args.fps, args.port, args.tmp)
        return 0
    if args.consume:
        consume(args.consume, args.port, args.out, args.topic, args.daemons)
        return 0
    sizes = [int(s) for s in args.search.split(",")] if args.search else [args.daemons]
    for n in sizes:
        result = run(n, args.seconds, args.fps, args.procs, args.consumers, args.topic)
        line = json.dumps(result)
        print(line, flush=True)
        if args.out:
            with args.out.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        if not result["held"]:
            break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
