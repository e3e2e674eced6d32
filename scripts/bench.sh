#!/usr/bin/env bash
# edge-daemon bench on the demo config, with a private mosquitto, writing .cache/bench.json.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
work=$(mktemp -d)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" > "$work/mosquitto.conf"
"$(command -v mosquitto || echo /usr/sbin/mosquitto)" -c "$work/mosquitto.conf" >/dev/null 2>&1 &
broker=$!
trap 'kill $broker 2>/dev/null; rm -rf "$work"' EXIT
sleep 0.5
CONFIG=${BENCH_CONFIG:-configs/demo.yaml}
EDGE_MQTT__PORT=$PORT $BIN/edge-daemon bench --config "$CONFIG" --json "${BENCH_JSON:-.cache/bench.json}" "$@"
