"""A daemon's publishing half alone, for fault tests: the real MqttPublisher and disk outbox, synthetic
detections messages at a steady rate, health published between them (as the pipeline does).

Usage: python -m tests.helpers.publisher_child PORT OUTBOX FIRST COUNT RATE [WRAP]

Prints ``p <n>`` once message n is in the outbox (``publish_detections`` returned), ``w`` each time the
message ids wrap, ``done`` after a clean close. WRAP > 0 makes the client's 16-bit message ids wrap after
WRAP ids instead of 65,535, so that id reuse happens within seconds (paho still refuses an id that is in
flight, as it does at 65,535); WRAP = 0 keeps paho's own ids, started a few thousand before the wrap.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from edge_daemon.config import MqttConfig
from edge_daemon.publish.mqtt import MqttPublisher


def main() -> int:
    port, outbox, first, count, rate = (
        int(sys.argv[1]),
        Path(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
        float(sys.argv[5]),
    )
    wrap = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    cfg = MqttConfig(host="127.0.0.1", port=port, outbox={"path": outbox}, connect_timeout_s=5)
    pub = MqttPublisher.from_config(cfg, "child")
    client = pub.client
    if not wrap:  # paho's own ids, starting close to 65,535 so that every life of the child wraps
        client._last_mid = 65_535 - 2_000 - int(time.time()) % 1_000
    else:
        client._last_mid = wrap - 40 - int(time.time()) % 40  # every life wraps within its first messages

        def small_ids() -> int:
            with client._mid_generate_mutex:
                client._last_mid = client._last_mid % wrap + 1
                return client._last_mid

        client._mid_generate = small_ids  # type: ignore[method-assign]
    pub.info = {"device_id": "child"}
    pub.start()
    period = 1.0 / rate
    next_at = time.monotonic()
    last = client._last_mid
    for n in range(first, first + count):
        body = {"camera": "cam0", "seq": n, "run": "child"}
        pub.publish_detections("cam0", json.dumps(body).encode())
        sys.stdout.write(f"p {n}\n")
        if n % 3 == 0:
            pub.publish_health({"device_id": "child", "n": n})
        if client._last_mid < last:  # ids only grow between wraps (status/info at a connect included)
            sys.stdout.write("w\n")
        last = client._last_mid
        sys.stdout.flush()
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    pub.close(timeout=30)
    sys.stdout.write("done\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
