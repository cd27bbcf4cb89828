#!/usr/bin/env bash
# The embedded default, all on this machine: an MQTT broker on 127.0.0.1:1883 (unless one
# already listens there), one local edge device (`tagqa edge up`, which waits for its first
# deployment), and `dagster dev` (webserver + daemon + code server) on 127.0.0.1:$PORT.
#
# Stopping: Ctrl-C, SIGINT, SIGTERM (what make forwards and process managers send) or SIGHUP
# (the terminal closed) stops every service within STOP_SECONDS: each gets SIGTERM in its own
# process group (so grandchildren such as Dagster's code server get it too), then whatever is
# still running after the grace period gets SIGKILL.
set -euo pipefail
# Job control: without it bash starts background jobs with SIGINT ignored, and `dagster dev`
# maps SIGTERM onto its SIGINT handler, so it would ignore both. It also puts every service
# in a process group of its own.
set -m
BIN=${BIN:-.venv/bin}
PORT=${PORT:-3000}
STATE=${STATE:-.tagqa}
BROKER_PORT=${TAGQA_BROKER_PORT:-1883}
STOP_SECONDS=${STOP_SECONDS:-12}
WORKSPACE=${WORKSPACE:-$(cd "$(dirname "$0")/../.." && pwd)/workspace.yaml}
mkdir -p "$STATE/logs"
pids=()

alive() { local pid; for pid in "${pids[@]}"; do kill -0 -- "-$pid" 2>/dev/null && return 0; done; return 1; }

stopping=0
stop_all() {
  [ "$stopping" = 1 ] && return
  stopping=1
  trap '' INT TERM HUP
  echo "stopping tagqa services..."
  local pid deadline=$((SECONDS + STOP_SECONDS))
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  while alive && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
  for pid in "${pids[@]}"; do
    if kill -0 -- "-$pid" 2>/dev/null; then
      echo "process group $pid did not stop within ${STOP_SECONDS}s: SIGKILL ($(ps -eo pgid=,pid=,args= 2>/dev/null | awk -v g="$pid" '$1 == g' | cut -c1-160 | tr '\n' ';'))"
      kill -KILL -- "-$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
  echo "stopped"
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all; exit 129' HUP
trap 'stop_all' EXIT

if ! (exec 3<>"/dev/tcp/127.0.0.1/$BROKER_PORT") 2>/dev/null; then
  MOSQUITTO=$(command -v mosquitto || echo /usr/sbin/mosquitto)
  # max_queued_messages: results wait for a stopped collector (its persistent session) up to this many.
  printf 'listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' "$BROKER_PORT" > "$STATE/mosquitto.conf"
  "$MOSQUITTO" -c "$STATE/mosquitto.conf" > "$STATE/logs/mosquitto.log" 2>&1 < /dev/null &
  pids+=($!)
  echo "started Mosquitto on 127.0.0.1:$BROKER_PORT (log: $STATE/logs/mosquitto.log)"
fi

# Only an explicit TAGQA_BROKER_PORT overrides the broker of tagqa.env (the shell wins over it).
[[ -n "${TAGQA_BROKER_PORT:-}" ]] && export TAGQA_MQTT_BROKER=127.0.0.1:$BROKER_PORT
"$BIN/tagqa" edge up > "$STATE/logs/edge-device.log" 2>&1 < /dev/null &
pids+=($!)
echo "started local edge device line-1: drop images into $STATE/devices/line-1/incoming/ once a model is deployed (log: $STATE/logs/edge-device.log)"
"$BIN/tagqa" results collect > "$STATE/logs/results-collector.log" 2>&1 < /dev/null &
pids+=($!)
echo "started the results collector: tagqa/+/detections -> results/ in the store (log: $STATE/logs/results-collector.log)"
# The demo camera (TAGQA_DEMO_CAMERA, default on): a loop of synthetic frames into line-1's incoming folder;
# it pauses while 10 of its frames wait unread, i.e. until the first model is deployed.
"$BIN/tagqa" edge demo-camera --if-enabled > "$STATE/logs/demo-camera.log" 2>&1 < /dev/null &
pids+=($!)
echo "started the demo camera: synthetic frames into the device's incoming folder, unless TAGQA_DEMO_CAMERA=false (log: $STATE/logs/demo-camera.log)"

# Runs a hard stop left "in progress" (a SIGKILL below, a power cut) would hold their concurrency slots for good:
# marked failed before Dagster starts (tagqa_assets/run_recovery.py).
if [ -n "${DAGSTER_HOME:-}" ]; then
  "$BIN/tagqa" runs fail-orphaned 2>&1 | sed 's/^/tagqa runs fail-orphaned: /' || true
fi
"$BIN/dagster" dev -h 127.0.0.1 -p "$PORT" -w "$WORKSPACE" < /dev/null &
dagster_pid=$!
pids+=("$dagster_pid")
# `wait` returns as soon as a trapped signal arrives (a foreground command would hold the trap
# until it exited by itself).
wait "$dagster_pid"
