"""Execution providers: peak RSS, load time and throughput of the runtime on CPU vs OpenVINO, and install size.

Each run is one subprocess (peak RSS is that run's alone) serving the real metal-tag images
from a ``loop:`` source through the whole runtime (decode, letterbox, inference, NMS, result
records into an acknowledging in-memory publisher) on one provider list:

  cpu        ``["CPUExecutionProvider"]`` (the default);
  openvino   OpenVINO on the CPU in fp32 (``edge_runtime.providers.OPENVINO_CPU_FP32``), then CPU.

Runs are interleaved over ``--rounds``; the RESULT line takes each list's best throughput and
largest peak RSS. It also says whether OpenVINO with its own default options (bf16 on CPUs
with AMX / AVX512-BF16) passed the CPU comparison, and the installed size of the
``onnxruntime-ep-openvino`` plugin (the ``edge-openvino`` extra) next to onnxruntime's.

    python benchmarks/edge_providers.py                  # exports a yolov8n at imgsz 480
    python benchmarks/edge_providers.py --model models/x

Last line: ``RESULT imgsz=N cpu_ips=X openvino_ips=X openvino_vs_cpu=R cpu_rss_mb=M
openvino_rss_mb=M openvino_load_s=S cpu_load_s=S openvino_default_precision=accepted|refused
openvino_install_mb=M onnxruntime_install_mb=M``.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "metal-tags"
WARMUP = 10


def _measure(model_dir: str, images: str, frames: str, providers: str) -> None:
    """One run (in its own process): load on ``providers`` and serve ``frames`` frames; prints JSON."""
    import resource
    import time
    from concurrent.futures import Future

    sys.path.insert(0, str(REPO))
    from edge_runtime.config_sources import NoConfigSource
    from edge_runtime.publishers import Publisher
    from edge_runtime.service import EdgeRuntime

    published: list[float] = []

    class Acknowledging(Publisher):
        """Acknowledges every publish at once: the run measures the runtime, not a broker."""

        def start(self) -> None: ...
        def is_connected(self) -> bool: return True
        def wait_connected(self, timeout: float) -> bool: return True
        def subscribe(self, topic, handler) -> None: ...
        def close(self) -> None: ...

        def publish(self, topic: str, payload: bytes, *, qos: int = 1) -> Future:
            if topic.endswith("/detections"):
                published.append(time.perf_counter())
            future: Future = Future()
            future.set_result(None)
            return future

    count = int(frames)
    with tempfile.TemporaryDirectory() as state:
        overrides = {"deviceId": "bench", "modelDir": model_dir, "source": f"loop:{images}", "stateDir": state,
                     "healthIntervalSeconds": 3600, "providers": json.loads(providers)}
        started = time.perf_counter()
        runtime = EdgeRuntime(config_source=NoConfigSource(), overrides=overrides, max_frames=WARMUP + count,
                              publisher_factory=lambda c: Acknowledging(), seed=0)
        load_s = time.perf_counter() - started
        model = runtime.slot.current
        runtime.run()
    print(json.dumps({"provider": model.provider, "refused": [why for _, why in model.provider_refusals],
                      "load_s": load_s, "ips": count / (published[-1] - published[WARMUP - 1]),
                      "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run(model_dir: Path, images: Path, frames: int, providers: list) -> dict:
    done = subprocess.run([sys.executable, __file__, "_measure", str(model_dir), str(images), str(frames),
                           json.dumps(providers)], capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"run on {providers} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def installed_mb(distribution: str) -> float:
    """Bytes of a distribution's installed files, in MB (0 when it is not installed)."""
    try:
        files = importlib.metadata.distribution(distribution).files or []
    except importlib.metadata.PackageNotFoundError:
        return 0.0
    return sum(Path(f.locate()).stat().st_size for f in files if Path(f.locate()).is_file()) / 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="model directory (default: export a yolov8n)")
    parser.add_argument("--imgsz", type=int, default=480)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from edge_runtime.providers import OPENVINO_CPU_FP32

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        images = work / "images"
        images.mkdir()
        real = sorted(args.data.rglob("*.jpg"))
        for path in real:  # loop: reads one folder
            (images / f"{path.parent.name}-{path.name}").write_bytes(path.read_bytes())
        model_dir = args.model
        if model_dir is None:
            sys.path.insert(0, str(Path(__file__).parent))
            from edge_inference import export_model

            model_dir = export_model(work / "model", args.imgsz, real[:16], work / "state")
        imgsz = json.loads((model_dir / "model_card.json").read_text())["imgsz"]
        lists = {"cpu": ["CPUExecutionProvider"], "openvino": [OPENVINO_CPU_FP32, "CPUExecutionProvider"]}
        runs: dict[str, list[dict]] = {name: [] for name in lists}
        for round_ in range(args.rounds):
            for name, providers in lists.items():
                measured = run(model_dir, images, args.frames, providers)
                runs[name].append(measured)
                print(f"round {round_ + 1} {name:8s} on {measured['provider']}: {measured['ips']:6.1f} img/s, "
                      f"peak RSS {measured['rss_mb']:6.1f} MB, load {measured['load_s']:.2f} s", flush=True)
        default = run(model_dir, images, 20, ["OpenVINOExecutionProvider", "CPUExecutionProvider"])
        verdict = "accepted" if default["provider"] == "OpenVINOExecutionProvider" else "refused"
        print(f"OpenVINO with its default options: {verdict} {default['refused']}")
    if any(r["provider"] != "OpenVINOExecutionProvider" for r in runs["openvino"]):
        print("OpenVINO was not chosen in every openvino run: is the edge-openvino extra installed?")
        return 1
    best = {name: max(r["ips"] for r in rs) for name, rs in runs.items()}
    rss = {name: max(r["rss_mb"] for r in rs) for name, rs in runs.items()}
    load = {name: min(r["load_s"] for r in rs) for name, rs in runs.items()}
    print(f"RESULT imgsz={imgsz} cpu_ips={best['cpu']:.1f} openvino_ips={best['openvino']:.1f} "
          f"openvino_vs_cpu={best['openvino'] / best['cpu']:.2f} cpu_rss_mb={rss['cpu']:.0f} "
          f"openvino_rss_mb={rss['openvino']:.0f} cpu_load_s={load['cpu']:.2f} openvino_load_s={load['openvino']:.2f} "
          f"openvino_default_precision={verdict} openvino_install_mb={installed_mb('onnxruntime-ep-openvino'):.0f} "
          f"onnxruntime_install_mb={installed_mb('onnxruntime'):.0f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        _measure(*sys.argv[2:])
    else:
        sys.exit(main())
