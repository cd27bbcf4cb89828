"""Loop latency on the embedded default (local store), with the real Dagster daemon.

Starts ``dagster dev`` (webserver + daemon) on the repository's workspace.yaml with the
settings of .env.example, a fresh DAGSTER_HOME holding deploy/dagster/local/dagster.yaml, a
real Mosquitto on a free port and one local device (``tagqa edge up``, as ``make run`` starts
it), then measures:

  (a) ingest: a new image lands in ``raw/camera-bench/...`` (the store's atomic write) at a
      random moment; the seconds until the daemon's ``raw_image_sensor`` (default minimum
      interval 30 s) began the tick that saw it, until that tick had requested the run that
      ingests it (run created), until the run started, and until it finished. The run's
      config is checked to name the new key.
  (b) approval to serving: a registered model version N (PendingManualApproval) is approved
      with ``tagqa models approve N`` (a subprocess, as a person would) at a random moment;
      the seconds until the device's first MQTT result carrying model version N (the
      result's own timestamp; same clock). ``model_approval_sensor`` keeps its default
      minimum interval (60 s). The sensor's tick and the deployment run's request, start
      and end are printed too.
      The models are tiny yolov8n ONNX exports (random weights, BatchNorm calibrated on
      images; tests/edge_fixtures.py) registered directly (tests/deployment_fixtures.py
      ``register_model``), not trained: how a model was built does not change this path.
      Round 1 includes the device's cold start (``tagqa edge up`` waits for its first
      deployment); later rounds are hot swaps in the running process.

Random moments (seeded) spread the events over the sensors' tick phases. The device reads a
loop of sample images every 0.5 s with capture off, so it adds no ingestion work.

    python benchmarks/loop_latency.py [--ingest-rounds 5] [--approval-rounds 3] [--seed 1]

Last line: ``RESULT ingest_s=S approval_to_serving_s=S`` (medians over the rounds: landing to
ingestion run requested; approve command to first result with the new version).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from dotenv import dotenv_values  # noqa: E402  (python-dotenv, a dagster dependency)

from dagster_dev import DagsterDev  # noqa: E402
from deployment_fixtures import register_model  # noqa: E402
from edge_fixtures import MODEL_A, MODEL_B, Mosquitto, MqttCollector, export_model_dirs, sample_images  # noqa: E402
from polling import wait_until  # noqa: E402
from tagqa_assets.contracts.models import PENDING  # noqa: E402
from tagqa_assets.deployment.local_target import PID_FILE  # noqa: E402
from tagqa_assets.deployment.sensors import model_approval_sensor  # noqa: E402
from tagqa_assets.deployment.wheels import prepare_wheel_bundle  # noqa: E402
from tagqa_assets.ingestion.sensors import raw_image_sensor  # noqa: E402
from tagqa_assets.ingestion.synthetic import generate_tags  # noqa: E402
from tagqa_assets.model_catalog.registry import LocalModelRegistry  # noqa: E402
from tagqa_assets.storage import open_store  # noqa: E402

DEVICE = "line-1"
INGEST_INTERVAL_S = raw_image_sensor.minimum_interval_seconds
APPROVAL_INTERVAL_S = model_approval_sensor.minimum_interval_seconds
INGEST_TARGET_S, SERVING_TARGET_S = 30.0, 60.0


def embedded_default_env(work: Path, broker: str, wheels: Path) -> dict[str, str]:
    """The process environment plus every setting of .env.example, with state paths inside ``work``."""
    defaults = {k: v or "" for k, v in dotenv_values(REPO / ".env.example").items()}
    return {
        **os.environ, **defaults,
        "TAGQA_STORE": str(work / "store"),
        "TAGQA_DEVICES_ROOT": str(work / "devices"),
        "TAGQA_EDGE_WHEELS_DIR": str(wheels),
        "TAGQA_MQTT_BROKER": broker,
        "TAGQA_DEVICE_ID": DEVICE,
        "YOLO_CONFIG_DIR": str(work / "ultralytics"),
        "MPLCONFIGDIR": str(work / "matplotlib"),
        # A frame every 0.5 s from a loop of images; capture off, so the device sends nothing back to raw/.
        "TAGQA_DEVICE_CONFIGURATION": json.dumps({"frameIntervalSeconds": 0.5, "captureBand": [0.0, 0.0],
                                                  "emptySampleRate": 0.0, "randomSampleRate": 0.0}),
    }


def _finished_run(dagster: DagsterDev, tags: dict[str, str], after: float, timeout: float) -> dict:
    """The newest run with ``tags`` created after ``after`` (epoch s), once it finished successfully."""
    def done() -> dict | None:
        runs = [r for r in dagster.runs(tags) if r["creationTime"] >= after - 1]
        if runs and runs[0]["status"] in ("FAILURE", "CANCELED"):
            raise RuntimeError(f"run {runs[0]['runId']} ended {runs[0]['status']}:\n{dagster.log_tail()}")
        return runs[0] if runs and runs[0]["status"] == "SUCCESS" else None
    return wait_until(done, f"a successful run tagged {tags}", timeout, poll=0.5, error=TimeoutError)


def sensor_ticks(dagster: DagsterDev, sensor: str, limit: int = 200) -> list[dict]:
    """The sensor's ticks, oldest first: timestamp (epoch s, when evaluation began), status, runIds."""
    data = dagster.graphql(
        'query T($name: String!, $limit: Int) { sensorOrError(sensorSelector: {repositoryName: "__repository__", '
        'repositoryLocationName: "tagqa", sensorName: $name}) { __typename ... on Sensor { sensorState { '
        'ticks(limit: $limit) { timestamp status runIds } } } } }', {"name": sensor, "limit": limit})["sensorOrError"]
    if data["__typename"] != "Sensor":
        raise RuntimeError(f"sensor {sensor}: {data}")
    return sorted(data["sensorState"]["ticks"], key=lambda t: t["timestamp"])


def tick_of(dagster: DagsterDev, sensor: str, run_id: str) -> float:
    """When the tick that requested ``run_id`` began (epoch s)."""
    [tick] = [t for t in sensor_ticks(dagster, sensor, limit=20) if run_id in t["runIds"]]
    return tick["timestamp"]


def tick_spacing(dagster: DagsterDev, sensor: str) -> str:
    """Median and largest gap between the sensor's consecutive ticks, as text."""
    stamps = [t["timestamp"] for t in sensor_ticks(dagster, sensor)]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return f"{sensor}: {len(stamps)} ticks, spacing median {statistics.median(gaps):.1f} s, max {max(gaps):.1f} s" \
        if gaps else f"{sensor}: {len(stamps)} tick(s)"


def measure_ingest(dagster: DagsterDev, store, rng: random.Random, round_no: int) -> dict[str, float]:
    """One image lands in raw/ at a random moment; seconds to the ingestion run requested, started, finished."""
    time.sleep(rng.uniform(0, INGEST_INTERVAL_S))
    tag = generate_tags(1, seed=100 + round_no, prefix=f"bench{round_no}")[0]
    now = datetime.now(timezone.utc)
    key = f"raw/camera-bench/{now:%Y/%m/%d}/{now:%H%M%S%f}-{tag.name}"  # names sort after earlier ones
    store.put_bytes(key, tag.jpeg)
    landed = time.time()
    run = _finished_run(dagster, {"dagster/sensor_name": "raw_image_sensor"}, landed, timeout=180)
    config = dagster.graphql('query R($id: ID!) { runOrError(runId: $id) { ... on Run { runConfigYaml } } }',
                             {"id": run["runId"]})["runOrError"]["runConfigYaml"]
    if key not in config:
        raise RuntimeError(f"run {run['runId']} does not ingest {key}: {config[:300]}")
    return {"tick": tick_of(dagster, "raw_image_sensor", run["runId"]) - landed,
            "requested": run["creationTime"] - landed, "started": run["startTime"] - landed,
            "finished": run["endTime"] - landed}


def start_device(work: Path, env: dict[str, str]) -> subprocess.Popen:
    """``tagqa edge up`` on a loop of sample images (waits for its first deployment, then serves)."""
    images = work / "camera"
    sample_images(images, 4)
    process = subprocess.Popen(
        [sys.executable, "-m", "tagqa_assets.cli", "edge", "up", "--source", f"loop:{images}"],
        cwd=work, env=env, stdout=open(work / "device.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    pid_file = Path(env["TAGQA_DEVICES_ROOT"]) / DEVICE / PID_FILE
    wait_until(lambda: pid_file.is_file() or process.poll() is not None, "the device to register", 60, poll=0.25,
               error=TimeoutError)
    if process.poll() is not None:
        raise RuntimeError(f"tagqa edge up exited: {(work / 'device.log').read_text()[-2000:]}")
    return process


def measure_approval(dagster: DagsterDev, work: Path, env: dict[str, str], collector: MqttCollector, version: int,
                     rng: random.Random) -> dict[str, float]:
    """Approve ``version`` at a random moment; seconds to its first result, and its deployment run's times."""
    time.sleep(rng.uniform(0, APPROVAL_INTERVAL_S))
    approved = time.time()
    subprocess.run([sys.executable, "-m", "tagqa_assets.cli", "models", "approve", str(version)],
                   env=env, cwd=work, check=True, capture_output=True, timeout=120)
    cli_done = time.time()
    topic = f"tagqa/{DEVICE}/detections"
    results = collector.wait_for(topic, lambda m: any(r["model_version"] == str(version) for r in m), timeout=300)
    first = next(r for r in results if r["model_version"] == str(version))
    served = datetime.fromisoformat(first["timestamp"].replace("Z", "+00:00")).timestamp()
    run = _finished_run(dagster, {"dagster/sensor_name": "model_approval_sensor", "tagqa/model_version": str(version)},
                        approved, timeout=300)
    return {"cli": cli_done - approved, "tick": tick_of(dagster, "model_approval_sensor", run["runId"]) - approved,
            "requested": run["creationTime"] - approved,
            "started": run["startTime"] - approved, "run_finished": run["endTime"] - approved,
            "serving": served - approved}


def _stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _table(rows: list[dict[str, float]], columns: list[str]) -> None:
    print("  round " + " ".join(f"{c:>13}" for c in columns))
    for index, row in enumerate(rows, 1):
        print(f"  {index:>5} " + " ".join(f"{row[c]:>12.1f}s" for c in columns))
    for name, reduce in (("median", statistics.median), ("max", max)):
        print(f"  {name:>5} " + " ".join(f"{reduce(r[c] for r in rows):>12.1f}s" for c in columns))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ingest-rounds", type=int, default=5)
    parser.add_argument("--approval-rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, store, Dagster home)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="tagqa-loop-latency-"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; python {platform.python_version()}; "
          f"work folder {work}")

    started = time.monotonic()
    models = {1: work / "model-a", 2: work / "model-b"}
    calibration = work / "calibration"
    sample_images(calibration, 16)
    export_model_dirs({models[1]: MODEL_A, models[2]: MODEL_B}, calibration_dir=calibration, state=work)
    wheels = prepare_wheel_bundle(work / "edge-wheels").directory
    print(f"setup: two tiny yolov8n ONNX exports + the inference component's wheel bundle in {time.monotonic() - started:.0f} s")

    broker = Mosquitto(work / "mosquitto")
    broker.start()
    env = embedded_default_env(work, broker.address, wheels)
    store = open_store(env["TAGQA_STORE"])
    dagster = DagsterDev(work, env)
    device: subprocess.Popen | None = None
    collector: MqttCollector | None = None
    try:
        print(f"dagster dev (webserver + daemon) answered and loaded the code location in {dagster.start():.1f} s")
        # Steady state: the sensor has ticked once on the empty store before the first image lands.
        wait_until(lambda: sensor_ticks(dagster, "raw_image_sensor", limit=1), "raw_image_sensor's first tick", 120,
                   poll=0.25, error=TimeoutError)

        ingest = []
        for round_no in range(1, args.ingest_rounds + 1):
            ingest.append(measure_ingest(dagster, store, rng, round_no))
            print(f"ingest round {round_no}: requested after {ingest[-1]['requested']:.1f} s", flush=True)

        device = start_device(work, env)
        collector = MqttCollector(broker.port, [f"tagqa/{DEVICE}/detections"])
        registry = LocalModelRegistry(store)
        approval = []
        for round_no in range(1, args.approval_rounds + 1):
            entry = register_model(store, registry, models[2 - round_no % 2], f"bench-model-{round_no}", status=PENDING)
            approval.append(measure_approval(dagster, work, env, collector, entry.version, rng))
            print(f"approval round {round_no} (model version {entry.version}): serving after "
                  f"{approval[-1]['serving']:.1f} s", flush=True)
        if device.poll() is not None:
            raise RuntimeError("the device process exited during the benchmark")
        spacing = [tick_spacing(dagster, name) for name in ("raw_image_sensor", "model_approval_sensor")]
    finally:
        if collector is not None:
            collector.close()
        _stop(device)
        dagster.stop()
        broker.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\n(a) new image in raw/ -> raw_image_sensor run (minimum interval {INGEST_INTERVAL_S} s), {len(ingest)} rounds:")
    _table(ingest, ["tick", "requested", "started", "finished"])
    print(f"\n(b) `tagqa models approve N` -> first MQTT result with version N (model_approval_sensor minimum "
          f"interval {APPROVAL_INTERVAL_S} s), {len(approval)} rounds (round 1 includes the device's cold start):")
    _table(approval, ["cli", "tick", "requested", "started", "run_finished", "serving"])
    print("\nobserved tick spacing: " + "; ".join(spacing))
    print()
    for what, target, values in (("ingestion run requested within", INGEST_TARGET_S, [r["requested"] for r in ingest]),
                                 ("approval to serving under", SERVING_TARGET_S, [r["serving"] for r in approval])):
        missed = sum(v > target for v in values)
        print(f"target: {what} {target:.0f} s: {'met' if not missed else 'MISSED'} in {len(values) - missed} of "
              f"{len(values)} rounds (median {statistics.median(values):.1f} s, worst {max(values):.1f} s)")
    print(f"RESULT ingest_s={statistics.median(r['requested'] for r in ingest):.1f} "
          f"approval_to_serving_s={statistics.median(r['serving'] for r in approval):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
