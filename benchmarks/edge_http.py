"""The device's HTTP API under load: ``POST /v1/infer`` latency and throughput, and what it costs the camera.

A real ``tagqa-edge run --http`` process on a real Mosquitto, fed the real metal-tag images
(yolov8n exported at ``--imgsz`` from ``yolov8n.yaml``, untrained weights, or ``--model``), measured
in one run:

  camera            the camera source alone (``loop:`` over the images, flat out): frames/s;
  http N            N concurrent clients, each on its own keep-alive connection, posting the
                    images round-robin to a device whose camera is idle: requests/s, p50 and
                    p99 latency (client side: request sent -> result JSON read), 503 answers;
                    N = 1, 4, 16;
  camera+http4      the camera source flat out while 4 clients hammer the API: the camera's
                    frames/s (all frames minus the answered HTTP ones) and the API's figures.

    python benchmarks/edge_http.py                 # imgsz 480, 15 s per phase
    python benchmarks/edge_http.py --model DIR --seconds 30

Prints ``RESULT imgsz=N camera_fps=X http1_rps=X http1_p50_ms=X http1_p99_ms=X http4_... http16_...
camera_fps_under_http4=X camera_share_under_http4=R http4_rps_with_camera=X``. Figures go to
docs/benchmarks.md with the machine description.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

from edge_fixtures import Mosquitto  # noqa: E402
from edge_http_fixtures import TOKEN, EdgeDevice, real_images  # noqa: E402
from edge_inference import export_model, machine_description  # noqa: E402
from edge_runtime.metrics import percentile  # noqa: E402


def _frames(device: EdgeDevice) -> int:
    return device.json("GET", "/v1/health")[1]["frames"]


def hammer(device: EdgeDevice, bodies: list[bytes], clients: int, seconds: float) -> dict:
    """``clients`` threads posting for ``seconds``; latencies of the answered requests and status counts."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", device.port, timeout=60)
        i = index
        mine, counts = [], {}
        while time.monotonic() < stop:
            body = bodies[i % len(bodies)]
            i += 1
            started = time.perf_counter()
            try:
                connection.request("POST", "/v1/infer", body=body, headers=device.headers())
                response = connection.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", device.port, timeout=60)
                counts[-1] = counts.get(-1, 0) + 1
                continue
            elapsed = time.perf_counter() - started
            counts[response.status] = counts.get(response.status, 0) + 1
            if response.status == 200:
                json.loads(data)
                mine.append(elapsed * 1000)
            elif response.status == 503:
                time.sleep(float(response.getheader("Retry-After", "1")) / 10)  # an eager client: a tenth of it
            if response.getheader("Connection", "").lower() == "close":
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", device.port, timeout=60)
        connection.close()
        with lock:
            latencies.extend(mine)
            for status, count in counts.items():
                statuses[status] = statuses.get(status, 0) + count

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return {"answered": len(latencies), "rps": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50) or 0.0,
            "p99_ms": percentile(latencies, 99) or 0.0, "statuses": statuses, "seconds": elapsed}


def camera_fps(device: EdgeDevice, seconds: float) -> float:
    before, started = _frames(device), time.monotonic()
    time.sleep(seconds)
    return (_frames(device) - before) / (time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--imgsz", type=int, default=480)
    parser.add_argument("--model", type=Path, help="an existing model directory (else yolov8n is exported)")
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each phase")
    parser.add_argument("--images", type=int, default=64)
    args = parser.parse_args(argv)
    print(machine_description(), flush=True)
    with tempfile.TemporaryDirectory(prefix="tagqa-edge-http-") as tmp_name:
        tmp = Path(tmp_name)
        images = real_images(args.images, tmp / "images")
        bodies = [p.read_bytes() for p in images]
        model = args.model or export_model(tmp / "model", args.imgsz, images[:32], tmp)
        imgsz = json.loads((model / "model_card.json").read_text())["imgsz"]
        broker = Mosquitto(tmp / "mosquitto")
        broker.start()
        results: dict[str, dict] = {}
        try:
            idle = EdgeDevice(tmp / "idle", model, broker.port, token=TOKEN)  # camera folder stays empty
            idle.start()
            try:
                hammer(idle, bodies, 2, 3.0)  # warm-up
                for clients in (1, 4, 16):
                    results[f"http{clients}"] = m = hammer(idle, bodies, clients, args.seconds)
                    print(f"http {clients:>2} clients: {m['rps']:.1f} req/s, p50 {m['p50_ms']:.1f} ms, "
                          f"p99 {m['p99_ms']:.1f} ms, statuses {m['statuses']}", flush=True)
            finally:
                idle.stop()
            camera = EdgeDevice(tmp / "camera", model, broker.port, token=TOKEN, source=f"loop:{tmp / 'images'}")
            camera.start()
            try:
                time.sleep(3.0)  # warm-up
                alone = camera_fps(camera, args.seconds)
                print(f"camera alone: {alone:.1f} frames/s", flush=True)
                before, started = _frames(camera), time.monotonic()
                loaded = hammer(camera, bodies, 4, args.seconds)
                frames, elapsed = _frames(camera) - before, time.monotonic() - started
                under = (frames - loaded["answered"]) / elapsed
                print(f"camera + 4 http clients: camera {under:.1f} frames/s; http {loaded['rps']:.1f} req/s, "
                      f"p50 {loaded['p50_ms']:.1f} ms, p99 {loaded['p99_ms']:.1f} ms, statuses {loaded['statuses']}",
                      flush=True)
            finally:
                camera.stop()
        finally:
            broker.stop()
    parts = [f"imgsz={imgsz}", f"camera_fps={alone:.1f}"]
    for clients in (1, 4, 16):
        m = results[f"http{clients}"]
        parts += [f"http{clients}_rps={m['rps']:.1f}", f"http{clients}_p50_ms={m['p50_ms']:.1f}",
                  f"http{clients}_p99_ms={m['p99_ms']:.1f}"]
    parts += [f"camera_fps_under_http4={under:.1f}", f"camera_share_under_http4={under / alone:.2f}",
              f"http4_rps_with_camera={loaded['rps']:.1f}", f"http4_p99_ms_with_camera={loaded['p99_ms']:.1f}"]
    print("RESULT " + " ".join(parts), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
