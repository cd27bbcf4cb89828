"""Soak: the edge runtime under broker, runtime and store crashes; nothing may be lost.

For ``--minutes`` (default 30) a feeder drops frames into a watched folder (real metal-tag
JPEGs, every 50th one cut short so it is corrupt) at ``--fps``. A real ``tagqa-edge run``
process serves a tiny exported yolov8n on that folder (delete mode) and publishes to a real
Mosquitto; captures (random sample) upload to an S3-API endpoint. Meanwhile, on the
schedule of a 30-minute run scaled to ``--minutes``:

- the broker is killed with SIGKILL every 2 minutes and restarted 10 s later;
- the runtime is killed with SIGKILL every 5 minutes and restarted 2 s later;
- the store is down (killed, nothing listening) for 1 minute, twice.

An independent MQTT subscriber (persistent session; the broker autosaves it every second,
so the subscription survives the broker's SIGKILL) records every message. At the end the
feeder stops, the runtime drains, and the run reports frames in, results delivered, error
records, duplicates, captures expected and uploaded, and lost (frames with no record, and
captured frames with no upload): both must be 0.

The store is a small PUT-only HTTP server in this file (each object fsync'ed before it
answers 200), standing in for S3 so that objects survive its own kills; the S3 signing
path is tested against moto in tests/test_edge_stores.py.

Before the soak it measures the group-commit choice: appending results to the outbox with
its committer (the runtime's path) vs an fsync per result on the producing thread.

    python benchmarks/edge_soak.py --minutes 30
    RESULT minutes=30 frames_in=N delivered=N error_records=N duplicates=N captures_expected=N
           captures_uploaded=N lost=0 captures_lost=0 broker_kills=N runtime_kills=N store_outages=2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
DATA = REPO.parent / "shared" / "data" / "metal-tags"
DEVICE = "soak-1"
TOPIC = f"tagqa/{DEVICE}/detections"


# ------------------------------------------------------------------ the store stand-in
class _PutHandler(BaseHTTPRequestHandler):
    root: Path

    def do_PUT(self) -> None:  # noqa: N802 (http.server's naming)
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        target = self.root / self.path.lstrip("/").split("?")[0]
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        with tmp.open("wb") as handle:
            handle.write(body)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def store_server_main(port: str, root: str) -> None:
    _PutHandler.root = Path(root)
    ThreadingHTTPServer(("127.0.0.1", int(port)), _PutHandler).serve_forever()


class StoreProcess:
    def __init__(self, port: int, root: Path) -> None:
        self.port, self.root, self.process = port, root, None

    def start(self) -> None:
        import socket

        self.process = subprocess.Popen([sys.executable, __file__, "_store", str(self.port), str(self.root)])
        from polling import wait_until

        def listening() -> bool:
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0
        try:
            wait_until(listening, f"the store stand-in to listen on {self.port}", 60, poll=0.05, error=RuntimeError)
        except RuntimeError:
            self.kill()
            raise

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            self.process = None


# ------------------------------------------------------------------ group-commit measurement
class _OfflinePublisher:
    """A publisher that is never connected: results stay in the outbox (as during an outage)."""

    def start(self) -> None: ...
    def is_connected(self) -> bool: return False
    def wait_connected(self, timeout: float) -> bool: time.sleep(min(timeout, 0.05)); return False
    def publish(self, *a, **k): raise AssertionError("not connected")
    def subscribe(self, *a) -> None: ...
    def close(self) -> None: ...


def commit_benchmark(workdir: Path, count: int = 400) -> str:
    """Per-result cost of appending to the outbox: group commit (committer thread) vs fsync per result."""
    from edge_runtime.outbox import ResultOutbox

    payload = json.dumps({"schema": "tagqa.detection/1", "image_id": "x" * 20, "detections": [],
                          "pad": "p" * 400}).encode()
    figures = {}
    for mode in ("group", "fsync_each"):
        directory = workdir / f"commit-{mode}"
        outbox = ResultOutbox(directory, _OfflinePublisher(), max_bytes=1 << 30)
        outbox.start()
        safe = threading.Semaphore(0)
        started = time.perf_counter()
        for _ in range(count):
            outbox.put(TOPIC, payload, on_safe=safe.release)
            if mode == "fsync_each":
                outbox.commit()
        put_seconds = time.perf_counter() - started
        for _ in range(count):
            safe.acquire(timeout=30)
        figures[mode] = (put_seconds / count * 1e6, (time.perf_counter() - started) / count * 1e6)
        outbox.stop(flush_timeout=0)
        shutil.rmtree(directory, ignore_errors=True)
    return (f"RESULT commit put_us_group={figures['group'][0]:.1f} put_us_fsync_each={figures['fsync_each'][0]:.1f} "
            f"all_safe_us_per_result_group={figures['group'][1]:.1f} "
            f"all_safe_us_per_result_fsync_each={figures['fsync_each'][1]:.1f} results={count}")


# ------------------------------------------------------------------ the soak
class Feeder(threading.Thread):
    """Writes frames into the watched folder (temp name, then rename) at a steady rate."""

    def __init__(self, folder: Path, fps: float, images: list[Path]) -> None:
        super().__init__(name="feeder", daemon=True)
        self.folder, self.fps, self.images = folder, fps, [p.read_bytes() for p in images]
        self.names: list[str] = []
        self.corrupt: list[str] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        index = 0
        next_at = time.monotonic()
        while not self.stop_event.is_set():
            name = f"frame-{index:06d}.jpg"
            data = self.images[index % len(self.images)]
            if index % 50 == 49:
                data = data[: len(data) // 3]
                self.corrupt.append(name)
            tmp = self.folder / (name + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, self.folder / name)
            self.names.append(name)
            index += 1
            next_at += 1.0 / self.fps
            self.stop_event.wait(max(0.0, next_at - time.monotonic()))


class Runtime:
    def __init__(self, args: list[str], log_path: Path) -> None:
        self.args, self.log_path, self.process = args, log_path, None

    def start(self) -> None:
        log = self.log_path.open("ab")
        env = {**os.environ, "PYTHONPATH": str(REPO), "AWS_ACCESS_KEY_ID": "soak", "AWS_SECRET_ACCESS_KEY": "soak",
               "AWS_REGION": "us-east-1"}
        self.process = subprocess.Popen([sys.executable, "-m", "edge_runtime", *self.args], stdout=log,
                                        stderr=subprocess.STDOUT, env=env)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(120)


def uploaded_ids(root: Path) -> set[str]:
    """Image ids of the captures whose sidecar (uploaded last, after the image) is in the store."""
    ids = set()
    for sidecar in root.rglob("*.json"):
        try:
            data = json.loads(sidecar.read_bytes())
        except ValueError:
            continue
        image_key = root / "soak" / "edge" / data["image_key"]
        if image_key.exists():
            ids.add(data["image_id"])
    return ids


def prepare_model(workdir: Path, model: Path | None) -> Path:
    if model is not None:
        return model
    from edge_fixtures import MODEL_A, export_model_dirs, sample_images

    calibration = workdir / "calibration"
    sample_images(calibration, 16)
    out = workdir / "model"
    export_model_dirs({out: MODEL_A}, calibration_dir=calibration, state=workdir / "ultralytics")
    return out


def soak(args: argparse.Namespace) -> int:
    from edge_fixtures import Mosquitto, MqttCollector, free_port

    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="tagqa-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"workdir {workdir}", flush=True)
    print(commit_benchmark(workdir), flush=True)
    model = prepare_model(workdir, Path(args.model) if args.model else None)
    data = Path(args.data)
    images = sorted((data / "images").rglob("*.jpg"))[:40]
    if not images:
        sys.exit(f"no images under {data / 'images'} (--data)")
    scale = args.minutes / 30.0
    duration = args.minutes * 60.0
    broker_every, broker_down = 120 * scale, max(2.0, 10 * scale)
    runtime_every = 300 * scale
    store_outages = [(duration * 0.3, 60 * scale), (duration * 0.7, 60 * scale)]

    broker = Mosquitto(workdir / "mosquitto", autosave_seconds=1)
    broker.start()
    store = StoreProcess(free_port(), workdir / "store")
    store.start()
    collector = MqttCollector(broker.port, [TOPIC], client_id="soak-collector")
    folder = workdir / "frames"
    folder.mkdir(exist_ok=True)
    config = workdir / "device.json"
    config.write_text(json.dumps({"folderOnRead": "delete", "folderSettleSeconds": 0.0, "randomSampleRate": 0.05,
                                  "emptySampleRate": 0.0, "captureBand": [0.0, 0.0], "healthIntervalSeconds": 10,
                                  "workers": 1, "inferenceThreads": 1}))
    runtime = Runtime(["run", "--config", str(config), "--model", str(model), "--source", f"folder:{folder}",
                       "--broker", broker.address, "--device-id", DEVICE, "--store", "s3://soak/edge",
                       "--s3-endpoint-url", f"http://127.0.0.1:{store.port}", "--state-dir", str(workdir / "state"),
                       "--flush-timeout", "5"], workdir / "runtime.log")
    runtime.start()
    feeder = Feeder(folder, args.fps, images)
    feeder.start()
    started = time.monotonic()
    next_broker, next_runtime = broker_every, runtime_every
    outages = list(store_outages)
    counts = {"broker_kills": 0, "runtime_kills": 0, "store_outages": 0}
    try:
        while (elapsed := time.monotonic() - started) < duration:
            if elapsed >= next_broker:
                broker.kill()
                counts["broker_kills"] += 1
                print(f"{elapsed:7.1f}s broker killed (SIGKILL), down {broker_down:.0f} s", flush=True)
                time.sleep(broker_down)
                broker.start()
                next_broker += broker_every
            if elapsed >= next_runtime:
                runtime.kill()
                counts["runtime_kills"] += 1
                print(f"{elapsed:7.1f}s runtime killed (SIGKILL)", flush=True)
                time.sleep(2.0)
                runtime.start()
                next_runtime += runtime_every
            if outages and elapsed >= outages[0][0]:
                _, length = outages.pop(0)
                store.kill()
                counts["store_outages"] += 1
                print(f"{elapsed:7.1f}s store down for {length:.0f} s", flush=True)
                threading.Timer(length, store.start).start()
            time.sleep(0.2)
        feeder.stop_event.set()
        feeder.join()
        if store.process is None:
            time.sleep(60 * scale + 1)
        frames_in = set(feeder.names)
        print(f"feeding stopped: {len(frames_in)} frames; draining", flush=True)
        deadline = time.monotonic() + args.drain_seconds
        while time.monotonic() < deadline:
            seen = {m["source_name"] for m in collector.json(TOPIC)}
            if frames_in <= seen and not list(folder.iterdir()):
                break
            time.sleep(1.0)
        expected_captures = {m["image_id"] for m in collector.json(TOPIC) if m.get("captured")}
        deadline = time.monotonic() + args.drain_seconds
        while time.monotonic() < deadline:
            if expected_captures <= uploaded_ids(workdir / "store"):
                break
            time.sleep(1.0)
        runtime.stop()
    finally:
        feeder.stop_event.set()
        collector.close()
        for stop in (runtime.kill if runtime.process and runtime.process.poll() is None else None,
                     broker.kill, store.kill):
            if stop:
                try:
                    stop()
                except Exception as exc:  # reported, the rest still stops
                    print(f"cleanup: {exc}", flush=True)
    messages = collector.json(TOPIC)
    by_name: dict[str, set[str]] = {}
    for message in messages:
        by_name.setdefault(message["source_name"], set()).add(message["image_id"])
    records = {(m["image_id"], m["schema"]) for m in messages}
    delivered = len({i for i, s in records if s == "tagqa.detection/1"})
    errors = len({i for i, s in records if s == "tagqa.frame_error/1"})
    lost = sorted(frames_in - set(by_name))
    uploaded = uploaded_ids(workdir / "store")
    expected_captures = {m["image_id"] for m in messages if m.get("captured")}
    captures_lost = sorted(expected_captures - uploaded)
    two_ids = sorted(n for n, ids in by_name.items() if len(ids) > 1)
    duplicates = len(messages) - len({m["image_id"] for m in messages})
    if lost:
        print(f"LOST frames (no record): {lost[:20]}", flush=True)
    if captures_lost:
        print(f"captured but not uploaded: {captures_lost[:20]}", flush=True)
    if two_ids:
        print(f"frames with more than one image id: {two_ids[:20]}", flush=True)
    print(f"RESULT minutes={args.minutes:g} frames_in={len(frames_in)} delivered={delivered} error_records={errors} "
          f"corrupt_fed={len(feeder.corrupt)} duplicates={duplicates} captures_expected={len(expected_captures)} "
          f"captures_uploaded={len(uploaded)} lost={len(lost)} captures_lost={len(captures_lost)} "
          f"unstable_ids={len(two_ids)} broker_kills={counts['broker_kills']} runtime_kills={counts['runtime_kills']} "
          f"store_outages={counts['store_outages']}", flush=True)
    return 0 if not lost and not captures_lost and not two_ids else 1


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_store":
        store_server_main(*sys.argv[2:4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the run (fault schedule scales)")
    parser.add_argument("--fps", type=float, default=4.0, help="frames written into the watched folder per second")
    parser.add_argument("--model", help="an existing model directory (default: export a tiny yolov8n)")
    parser.add_argument("--data", default=str(DATA), help="the metal-tags dataset (its images/ are the frames)")
    parser.add_argument("--workdir", help="where everything lives (default: a new temp folder)")
    parser.add_argument("--drain-seconds", type=float, default=180.0, help="how long to wait for the last records")
    return soak(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
