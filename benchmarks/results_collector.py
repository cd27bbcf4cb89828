"""Results collector and daily aggregation benchmarks (docs/benchmarks.md, "Line results").

``collect``: DEVICES simulated devices (publisher processes, one MQTT connection per device)
publish RATE results/s each for SECONDS s, QoS 1, into one local Mosquitto; one
``tagqa results collect`` process writes them into a local store. Afterwards every part is
read back: lost = expected (device, image id) pairs missing, duplicated = rows beyond one
per pair. The collector's peak RSS and CPU time are sampled with psutil. With
``--kill-at T --restart-after D`` the collector is SIGKILLed T s into the run and a new one
started D s later (the broker queues meanwhile, in the collector's persistent session).

``aggregate``: a day of DEVICES x FPS frames/s (10 x 5 = 4.32 million rows) written as one
part per device per hour, then ``line_results``' reading and aggregation (de-duplication,
metrics per device and per model version) and the drift comparison, timed in a fresh
process whose peak RSS is reported.

Last lines: RESULT collect ... / RESULT aggregate ...
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


# ------------------------------------------------------------------ collect
def _publish(args: argparse.Namespace) -> None:
    from results_fixtures import SimulatedDevices

    devices = SimulatedDevices(args.port, args.devices, args.rate, args.seconds, prefix=args.prefix)
    devices.start()
    devices.join()
    print(json.dumps({"sent": devices.sent, "published": devices.published}), flush=True)


class Sampler(threading.Thread):
    """Peak RSS and last CPU times of one process, sampled every 0.2 s until it exits."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        import psutil

        self.process = psutil.Process(pid)
        self.peak_rss = 0
        self.cpu_seconds = 0.0

    def run(self) -> None:
        while True:
            try:
                with self.process.oneshot():
                    self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)
                    times = self.process.cpu_times()
                    self.cpu_seconds = times.user + times.system
            except Exception:  # the process is gone (killed or stopped): keep the last sample
                return
            time.sleep(0.2)


def _collect(args: argparse.Namespace) -> None:
    from edge_fixtures import Mosquitto
    from results_fixtures import start_collector, stored_frames, wait_subscribed

    work = Path(tempfile.mkdtemp(prefix="tagqa-results-bench-"))
    store = work / "store"
    store.mkdir()
    broker = Mosquitto(work / "mosquitto")
    broker.start()
    options = dict(client_id="bench-collector", batch_rows=args.batch_rows, batch_seconds=args.batch_seconds,
                   log=work / "collector.log")
    collector = start_collector(store, broker.port, **options)
    samplers = [Sampler(collector.pid)]
    samplers[0].start()
    wait_subscribed(work / "collector.log", timeout=60)
    per_process = args.devices // args.processes
    publishers = [subprocess.Popen([sys.executable, __file__, "publish", "--port", str(broker.port), "--devices",
                                    str(per_process), "--rate", str(args.rate), "--seconds", str(args.seconds),
                                    "--prefix", f"p{i}"], stdout=subprocess.PIPE, text=True)
                  for i in range(args.processes)]
    started = time.monotonic()
    killed_rows = None
    if args.kill_at:
        time.sleep(max(0.0, started + args.kill_at - time.monotonic()))
        collector.send_signal(signal.SIGKILL)
        collector.wait()
        killed_rows = len(stored_frames(store))
        time.sleep(args.restart_after)
        collector = start_collector(store, broker.port, **options)
        samplers.append(Sampler(collector.pid))
        samplers[-1].start()
    reports = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in publishers]
    publish_done = time.monotonic()
    sent = sum(r["sent"] for r in reports)
    published = sum(r["published"] for r in reports)
    expected = per_process * args.processes * int(args.rate * args.seconds)
    while len(stored_frames(store)) < expected and time.monotonic() - publish_done < 120:
        time.sleep(0.5)
    drain = time.monotonic() - publish_done
    time.sleep(2 * args.batch_seconds)  # a late duplicate would land within a flush or two
    collector.send_signal(signal.SIGTERM)
    collector.wait(60)
    broker.stop()
    rows = stored_frames(store)
    stopped = [line for line in (work / "collector.log").read_text().splitlines() if "collector stopped:" in line]
    dropped = stopped[-1].split("'duplicates': ", 1)[1].split(",", 1)[0] if stopped else "?"
    unique = rows.unique().height
    lost = expected - unique
    duplicated = rows.height - unique
    parts = sum(1 for _ in (store / "results" / "frames").rglob("*.parquet"))
    cpu = sum(s.cpu_seconds for s in samplers)
    wall = time.monotonic() - started
    reference = subprocess.run([sys.executable, "-c", "import resource, tagqa_assets.cli; "
                                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                               capture_output=True, text=True, check=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    print(f"reference: importing the tagqa CLI alone peaks at {int(reference.stdout) / 1024:.0f} MB RSS")
    print(f"sent={sent} acknowledged_by_broker={published} stored_rows={rows.height} parts={parts} "
          f"rows_at_kill={killed_rows} drain_after_last_publish_s={drain:.1f}")
    _read_small_parts(store)
    print(f"RESULT collect devices={args.devices} rate={args.rate} seconds={args.seconds} "
          f"kill_at={args.kill_at or 0} restart_after={args.restart_after if args.kill_at else 0} "
          f"expected={expected} lost={lost} duplicated={duplicated} duplicates_dropped_by_last_collector={dropped} "
          f"peak_rss_mb={max(s.peak_rss for s in samplers) / 2**20:.1f} cpu_s={cpu:.1f} "
          f"cpu_pct_of_one_core={100 * cpu / wall:.0f} wall_s={wall:.1f} cores={os.cpu_count()}")


def _read_small_parts(store: Path) -> None:
    """line_results' read over the parts the collector just wrote, before and after compaction."""
    from tagqa_assets.monitoring.daily import compact_day, frame_part_keys, local_paths, summarize, unique_frames
    from tagqa_assets.storage import LocalObjectStore

    objects = LocalObjectStore(store)
    day = datetime.now(timezone.utc).date()
    timings = {}
    for stage in ("before", "after"):
        keys = frame_part_keys(objects, day)
        started = time.perf_counter()
        with local_paths(objects, keys) as paths:
            frames = int(summarize(unique_frames(paths))["overall"]["frames"][0])
        timings[stage] = (len(keys), time.perf_counter() - started, frames)
        if stage == "before":
            started = time.perf_counter()
            compact_day(objects, day, datetime.now(timezone.utc), day_is_over=False)
            timings["compact"] = time.perf_counter() - started
    print(f"RESULT read_collector_parts parts={timings['before'][0]} frames={timings['before'][2]} "
          f"read_s={timings['before'][1]:.2f} compact_s={timings['compact']:.2f} parts_after={timings['after'][0]} "
          f"read_after_s={timings['after'][1]:.2f}")


# ------------------------------------------------------------------ aggregate
def _write_day(store: Path, devices: int, fps: float, day: datetime) -> int:
    """A day of frames as one part per device and hour (what compaction would leave is one per device)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tagqa_assets.contracts.results import FRAME_SCHEMA, frame_part_key

    rng = np.random.default_rng(0)
    per_hour = int(fps * 3600)
    total = 0
    for d in range(devices):
        device = f"line-{d:02d}"
        for hour in range(24):
            offsets = np.arange(per_hour) / fps + hour * 3600
            best = rng.beta(2, 5, per_hour)
            stamps = pa.array((np.datetime64(day.replace(tzinfo=None), "us")
                               + (offsets * 1e6).astype("timedelta64[us]")), pa.timestamp("us", tz="UTC"))
            n = per_hour
            table = pa.table({
                "device": pa.array([device] * n), "image_id": pa.array([f"{device}-{hour:02d}-{i:06d}" for i in range(n)]),
                "timestamp": stamps, "received_at": stamps, "verdict": pa.array(np.where(best >= 0.5, "defect", "ok")),
                "model_id": pa.array(["v0003-abcd1234-0badc0de"] * n), "model_version": pa.array(["3" if hour < 12 else "4"] * n),
                "dataset_version": pa.array(["v0003-abcd1234"] * n), "best_score": pa.array(best),
                "detection_count": pa.array(np.zeros(n, np.int32)), "detections": pa.nulls(n, FRAME_SCHEMA.field("detections").type),
                "latency_ms": pa.array(rng.gamma(4, 6, n)), "image_width": pa.array(np.full(n, 450, np.int32)),
                "image_height": pa.array(np.full(n, 300, np.int32)), "source_name": pa.array(["camera"] * n),
                "captured": pa.array(np.where((best >= 0.25) & (best < 0.6), "uncertain", None)),
                "extra": pa.nulls(n, pa.string()),
            }).cast(FRAME_SCHEMA)
            key = frame_part_key(day.date(), device, day + timedelta(hours=hour + 1))
            path = store / key
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, compression="zstd")
            total += n
    return total


def _aggregate_child(args: argparse.Namespace) -> None:
    import numpy as np
    import polars as pl

    from tagqa_assets.monitoring.daily import frame_part_keys, local_paths, summarize, unique_frames
    from tagqa_assets.monitoring.drift import DriftThresholds, compare
    from tagqa_assets.storage import LocalObjectStore

    store = LocalObjectStore(args.store)
    day = datetime.fromisoformat(args.day).date()
    started = time.perf_counter()
    keys = frame_part_keys(store, day)
    with local_paths(store, keys) as paths:
        tables = summarize(unique_frames(paths))
        scores = unique_frames(paths).select("device", "best_score").collect()
    baseline = np.random.default_rng(1).beta(2, 5, 80)
    drift = [compare(d, "m", scores.filter(pl.col("device") == d)["best_score"].to_numpy(), baseline, DriftThresholds())
             for d in tables["by_device"]["device"].to_list()]
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_rss_mb": peak, "frames": int(tables["overall"]["frames"][0]),
                      "parts": len(keys), "drifted": sum(r.drifted for r in drift)}))


def _aggregate(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="tagqa-aggregate-bench-"))
    day = datetime(2026, 11, 2, tzinfo=timezone.utc)
    started = time.perf_counter()
    rows = _write_day(work / "store", args.devices, args.fps, day)
    written = time.perf_counter() - started
    child = subprocess.run([sys.executable, __file__, "aggregate-child", "--store", str(work / "store"), "--day",
                            day.date().isoformat()], capture_output=True, text=True, check=True)
    report = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"wrote {rows} rows in {written:.1f} s")
    print(f"RESULT aggregate rows={rows} frames={report['frames']} parts={report['parts']} "
          f"seconds={report['seconds']:.1f} peak_rss_mb={report['peak_rss_mb']:.0f} target_s=60 cores={os.cpu_count()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    collect = commands.add_parser("collect")
    collect.add_argument("--devices", type=int, default=100)
    collect.add_argument("--rate", type=float, default=10.0)
    collect.add_argument("--seconds", type=float, default=60.0)
    collect.add_argument("--processes", type=int, default=4, help="publisher processes the devices are spread over")
    collect.add_argument("--batch-rows", type=int, default=2000)
    collect.add_argument("--batch-seconds", type=float, default=5.0)
    collect.add_argument("--kill-at", type=float, default=0.0, help="SIGKILL the collector this many s in (0: never)")
    collect.add_argument("--restart-after", type=float, default=10.0)
    publish = commands.add_parser("publish")
    publish.add_argument("--port", type=int, required=True)
    publish.add_argument("--devices", type=int, required=True)
    publish.add_argument("--rate", type=float, required=True)
    publish.add_argument("--seconds", type=float, required=True)
    publish.add_argument("--prefix", required=True)
    aggregate = commands.add_parser("aggregate")
    aggregate.add_argument("--devices", type=int, default=10)
    aggregate.add_argument("--fps", type=float, default=5.0)
    child = commands.add_parser("aggregate-child")
    child.add_argument("--store", required=True)
    child.add_argument("--day", required=True)
    args = parser.parse_args()
    {"collect": _collect, "publish": _publish, "aggregate": _aggregate, "aggregate-child": _aggregate_child}[args.command](args)


if __name__ == "__main__":
    main()
