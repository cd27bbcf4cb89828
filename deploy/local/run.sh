#!/usr/bin/env bash
# The embedded default, all on this machine: an MQTT broker on 127.0.0.1:1883 (unless one
# already listens there), one local edge device (`tagqa edge up`, which waits for its first
# deployment), and `dagster dev` (webserver + daemon) on 127.0.0.1:$PORT. Ctrl-C stops all.
set -euo pipefail
BIN=${BIN:-.venv/bin}
PORT=${PORT:-3000}
STATE=${STATE:-.tagqa}
BROKER_PORT=${TAGQA_BROKER_PORT:-1883}
mkdir -p "$STATE/logs"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

if ! (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; then
  MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  # max_queued_messages: results wait for a stopped collector (its persistent session) up to this many.
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' "$BROKER_PORT" > "$STATE/mosquitto.conf"
  "$MOSQUITTO" -c "$STATE/mosquitto.conf" > "$STATE/logs/mosquitto.log" 2>&1 &
  pids+=($!)
  echo "started Mosquitto on 127.0.0.1:$BROKER_PORT (log: $STATE/logs/mosquitto.log)"
fi

export TAGQA_MQTT_BROKER=${TAGQA_MQTT_BROKER:-127.0.0.1:$BROKER_PORT}
"$BIN/tagqa" edge up > "$STATE/logs/edge-device.log" 2>&1 &
pids+=($!)
echo "started local edge device line-1: drop images into $STATE/devices/line-1/incoming/ once a model is deployed (log: $STATE/logs/edge-device.log)"
"$BIN/tagqa" results collect > "$STATE/logs/results-collector.log" 2>&1 &
pids+=($!)
echo "started the results collector: tagqa/+/detections -> results/ in the store (log: $STATE/logs/results-collector.log)"

"$BIN/dagster" dev -h 127.0.0.1 -p "$PORT" -w workspace.yaml
