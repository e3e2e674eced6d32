#!/usr/bin/env bash
# The demo: a private mosquitto on a free port, a subscriber printing what arrives, and the daemon
# running configs/demo.yaml (the pedestrian clip through YOLO-World v8s on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${DEMO_PORT:-$($BIN/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')}
MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
work=$(mktemp -d)
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$PORT" > "$work/mosquitto.conf"
"$MOSQUITTO" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker=$!
cleanup() { kill "${watcher:-}" "$broker" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
sleep 0.5
echo "== mosquitto on 127.0.0.1:$PORT; subscriber lines start with the camera name"
$BIN/edge-daemon watch --port "$PORT" --topic 'edge/#' &
watcher=$!
EDGE_MQTT__PORT=$PORT $BIN/edge-daemon run --config configs/demo.yaml "$@"
sleep 1
echo "== demo finished"
