"""Edge inference throughput and memory: this runtime vs bare ONNX Runtime, bare OpenVINO and Ultralytics.

Contenders on the same ONNX model and the real metal-tag images, each measured in its own
subprocess (so peak RSS is that contender's alone), interleaved over several rounds so that
load from other processes hits all of them alike. The RESULT line takes each contender's best
round (on a shared machine, its least disturbed one); medians are printed too. Peak RSS is the
largest over the rounds (VmHWM of the measuring process):

  ours            this runtime end to end: JPEG file -> decode -> letterbox -> ONNX Runtime ->
                  NMS -> result JSON published to a real Mosquitto and acknowledged (QoS 1),
                  with its default configuration (capture policy on, no upload target);
  limit_parallel  two threads calling ``InferenceSession.run`` on one session, one ONNX Runtime
                  thread each, on one preprocessed tensor: inference alone on both cores, the
                  reference of the issue-18 targets (``vs_limit_parallel``);
  openvino        the same ONNX file in bare OpenVINO: ``compile_model`` on the CPU with one
                  stream and one infer request per core (``AsyncInferQueue``), one tensor;
  openvino_frames the same, on the real files: each read, decoded and letterboxed (the runtime's
                  functions) in the calling thread while the requests infer, as an OpenVINO user's
                  loop over camera frames runs; ``vs_openvino_frames`` is ours_providers against it;
  limit_providers inference alone on the first provider of ``--providers`` (a bare session built as the
                  runtime builds it, ``--workers`` callers, default 2, on one preprocessed tensor): the
                  reference for ours_providers on an accelerator (``providers_vs_limit``);
  ours_providers  ours with ``--providers`` (the runtime's ``providers`` setting, e.g.
                  ``OpenVINOExecutionProvider,CPUExecutionProvider``): ``vs_openvino`` is it
                  against bare OpenVINO; the RESULT line says which provider the list chose;
  ultralytics     ``YOLO(model.onnx).predict(path)`` one image at a time, as the reference
                  component did (it refuses the ten ``.jpg_0``-style files, so it gets the others);
  limit           bare ``InferenceSession.run`` (default options, ORT's own two threads);
  ours_numpy      ours with the numpy letterbox (a device where the native kernel is not built).

Every model runs in fp32 and, quantized as the int8 study does, in int8 (``--precision``).
Beside images per second each contender reports CPU per image (all its threads): on a machine
shared with other work, throughput follows CPU per image, so ``cpu_vs_limit_parallel`` is the
ratio least disturbed by the neighbours. For ours it splits the CPU by thread group (workers,
sink, outbox, captures, other), gives the time the frame workers slept per frame, which in a
saturated pipeline is waiting for the GIL, and counts each group's context switches per frame
(voluntary: it blocked; involuntary: it was preempted, mostly by another of the runtime's threads
waking up). Ours and the bare sessions also count minor page faults per image (first touches of
fresh memory). The 1-minute load average is printed beside every figure.

    python benchmarks/edge_inference.py                     # exports a yolov8n per size, fp32 + int8
    python benchmarks/edge_inference.py --model models/x    # an existing model dir (its imgsz)
    python benchmarks/edge_inference.py --providers OpenVINOExecutionProvider,CPUExecutionProvider
    python benchmarks/edge_inference.py int8 --model models/x --dataset datasets/v/yolo

``int8`` quantizes a trained model as the platform does (``tagqa_assets/training/quantization.py``:
``onnxruntime.quantization`` static, QDQ, int8 per-channel weights, uint8 activations,
convolutions only so the detection head stays float; MinMax calibration on 64 training
images spread over the split), evaluates both models on the dataset
version's val and test splits with the platform's evaluation (which predicts through this
runtime's pipeline) and measures both speeds; it prints ``INT8 ...`` lines.

The last line per model is ``RESULT imgsz=N precision=P ours_ips=X limit_parallel_ips=X
openvino_ips=X ... vs_limit_parallel=R vs_ultralytics=R vs_limit=R vs_openvino=R vs_openvino_frames=R
providers_vs_limit=R cpu_vs_limit_parallel=R ours_rss_mb=M ... load=L`` (``n/a`` for a contender not run).
Results and the machine description go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "metal-tags"
CONTENDERS = ("limit", "limit_parallel", "limit_providers", "openvino", "openvino_frames", "ultralytics", "ours",
              "ours_numpy")
PROVIDERS_CONTENDER = "ours_providers"  # ours with --providers (e.g. the OpenVINO execution provider)


# ------------------------------------------------------------------ measurements (in subprocesses)
def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: its own, where getrusage's maximum carries the parent's
    over fork and exec, e.g. after the parent quantized a model)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _process_cpu() -> float:
    """CPU seconds (user + system) this process has used, all its threads together."""
    times = os.times()
    return times.user + times.system


def _minor_faults() -> int:
    """Minor page faults this process has taken, all its threads (each first touch of fresh memory is one)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def measure_limit(model_dir: Path, images: list[Path], runs: int, parallel: int = 0,
                  providers: str | None = None) -> dict:
    """Bare session runs on one preprocessed tensor; ``parallel`` > 0: that many single-threaded callers.

    ``providers`` (a ``--providers`` value): the session is on the list's first provider, built by the
    runtime's session factory with its options (CUDA and cuDNN preloaded, plugins registered).
    """
    import numpy as np
    import onnxruntime as ort

    sys.path.insert(0, str(REPO))
    from edge_runtime.imaging import decode_image
    from edge_runtime.letterbox import letterbox

    card = json.loads((model_dir / "model_card.json").read_text())
    options = ort.SessionOptions()
    if parallel:
        options.intra_op_num_threads = 1
    provider = "CPUExecutionProvider"
    if providers:
        from edge_runtime.device_config import parse_providers, provider_list_text
        from edge_runtime.providers import OnnxRuntimeSessions

        spec = parse_providers(provider_list_text(providers), "--providers")[0]
        factory = OnnxRuntimeSessions(tempfile.mkdtemp(prefix="provider-cache-"))
        if spec.name not in factory.available({spec.name}):
            raise RuntimeError(f"{spec.name}: {factory.unavailable_reason(spec.name)}")
        session = factory.create((model_dir / card["onnx_file"]).read_bytes(), spec, options)
        provider = session.get_providers()[0]
    else:
        session = ort.InferenceSession(str(model_dir / card["onnx_file"]), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    tensor, _ = letterbox(decode_image(images[0].read_bytes()), card["imgsz"], card["imgsz"])

    def loop(count: int) -> None:
        for _ in range(count):
            session.run(None, {name: tensor})

    callers = max(parallel, 1)
    loop(10)
    threads = [threading.Thread(target=loop, args=(runs // callers,)) for _ in range(callers)]
    started, cpu, faults = time.perf_counter(), _process_cpu(), _minor_faults()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed, cpu, faults = time.perf_counter() - started, _process_cpu() - cpu, _minor_faults() - faults
    done = callers * (runs // callers)
    return {"ips": done / elapsed, "frames": done, "rss_mb": _peak_rss_mb(), "cpu_ms": cpu * 1000 / done,
            "faults_per_frame": round(faults / done, 1),
            "checksum": float(np.sum(tensor)), "provider": provider}


def measure_openvino(model_dir: Path, images: list[Path], runs: int, precision: str = "",
                     frames: bool = False) -> dict:
    """The same ONNX file in bare OpenVINO on the CPU, as an OpenVINO user runs it: ``compile_model`` with
    one stream and one infer request per core (``AsyncInferQueue``), on one preprocessed tensor; with
    ``frames``, on the real files instead, each read, decoded and letterboxed (the runtime's own
    functions, so the same pixels) in the calling thread while the requests infer."""
    import numpy as np
    import openvino as ov

    sys.path.insert(0, str(REPO))
    from edge_runtime.imaging import decode_image
    from edge_runtime.letterbox import letterbox

    card = json.loads((model_dir / "model_card.json").read_text())
    cores = os.cpu_count() or 1
    core = ov.Core()
    compiled = core.compile_model(str(model_dir / card["onnx_file"]), "CPU",
                                  {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(cores),
                                   "INFERENCE_NUM_THREADS": str(cores),
                                   **({"INFERENCE_PRECISION_HINT": precision} if precision else {})})
    tensor, _ = letterbox(decode_image(images[0].read_bytes()), card["imgsz"], card["imgsz"])
    requests = ov.AsyncInferQueue(compiled, cores)
    for _ in range(10):
        requests.start_async({0: tensor})
    requests.wait_all()
    started, cpu = time.perf_counter(), _process_cpu()
    for i in range(runs):
        if frames:
            tensor, _ = letterbox(decode_image(images[i % len(images)].read_bytes()), card["imgsz"], card["imgsz"])
        requests.start_async({0: tensor})  # blocks while every request is busy
    requests.wait_all()
    elapsed, cpu = time.perf_counter() - started, _process_cpu() - cpu
    return {"ips": runs / elapsed, "frames": runs, "rss_mb": _peak_rss_mb(), "cpu_ms": cpu * 1000 / runs,
            "checksum": float(np.sum(tensor)),
            "requests": cores, "precision": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
            "openvino": ov.__version__}


def measure_ultralytics(model_dir: Path, images: list[Path], passes: int) -> dict:
    from ultralytics import YOLO

    card = json.loads((model_dir / "model_card.json").read_text())
    model = YOLO(str(model_dir / card["onnx_file"]), task="detect")
    accepted = [p for p in images if p.suffix.lower() == ".jpg"]  # it refuses .jpg_0 ... by extension
    for path in accepted[:10]:
        model.predict(str(path), imgsz=card["imgsz"], verbose=False)
    started, cpu = time.perf_counter(), _process_cpu()
    for _ in range(passes):
        for path in accepted:
            model.predict(str(path), imgsz=card["imgsz"], verbose=False)
    elapsed, cpu = time.perf_counter() - started, _process_cpu() - cpu
    frames = passes * len(accepted)
    return {"ips": frames / elapsed, "frames": frames, "rss_mb": _peak_rss_mb(), "cpu_ms": cpu * 1000 / frames}


def _thread_stats() -> dict[int, tuple[float, float, int, int]]:
    """Per live thread, by native thread id: (seconds on a CPU, seconds runnable but waiting for a CPU,
    voluntary context switches, involuntary context switches).

    The times come from the scheduler's statistics (/proc/<pid>/task/<tid>/schedstat, nanoseconds): what a
    thread spent neither running nor waiting for a CPU it spent asleep (for the GIL, a lock, a queue). The
    switches from its status: voluntary, it blocked (a queue, a lock, the GIL, I/O); involuntary, the
    scheduler took its CPU away, mostly because another thread of the process woke up on a busy machine.
    """
    out = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            running, waiting = Path(f"/proc/self/task/{tid}/schedstat").read_text().split()[:2]
            fields = dict(line.split(":\t", 1) for line in
                          Path(f"/proc/self/task/{tid}/status").read_text().splitlines() if ":\t" in line)
            out[int(tid)] = (int(running) / 1e9, int(waiting) / 1e9,
                             int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"]))
        except (OSError, ValueError, KeyError):
            continue  # the thread ended meanwhile
    return out


def _thread_group(name: str) -> str:
    """The runtime's threads in a few groups, for the CPU-per-frame breakdown."""
    for prefix, group in (("frame-worker", "workers"), ("frame-sink", "sink"), ("frame-source", "source"),
                          ("result-", "outbox"), ("capture-", "captures")):
        if name.startswith(prefix):
            return group
    return "other"  # main/control thread, the MQTT client's event loop (a C thread), ...


def measure_ours(model_dir: Path, images: list[Path], passes: int, broker: str, workers: int,
                 numpy_letterbox: bool = False, providers: str | None = None) -> dict:
    sys.path.insert(0, str(REPO))
    from edge_runtime import letterbox
    from edge_runtime.config_sources import NoConfigSource
    from edge_runtime.device_config import provider_list_text
    from edge_runtime.publishers import MqttPublisher
    from edge_runtime.service import EdgeRuntime

    if numpy_letterbox:  # as if the optional extension had not been built (no C compiler on the device)
        letterbox._letterbox = None
    acked: list[float] = []  # when each result's PUBACK arrived, in publish order

    class TimedPublisher(MqttPublisher):
        """Stamps every acknowledgement, so the clock stops at the last result without polling
        (a polling loop here would take the GIL hundreds of times a second from the runtime)."""

        def publish(self, topic: str, payload: bytes, *, qos: int = 1):
            future = super().publish(topic, payload, qos=qos)
            if topic.endswith("/detections"):  # not health messages
                future.add_done_callback(lambda f: f.exception() is None and acked.append(time.perf_counter()))
            return future

    warmup, frames = 30, passes * len(images)
    cpu_marks: list[tuple[float, float, dict, dict[int, str], int]] = []  # at the warm-up's end and the last frame
    records = 0

    def mark_cpu(record: dict) -> None:  # a record listener: runs on the sink thread, once per frame
        nonlocal records
        records += 1
        if records in (warmup, warmup + frames):
            cpu_marks.append((time.perf_counter(), _process_cpu(), _thread_stats(),
                              {t.native_id: t.name for t in threading.enumerate()}, _minor_faults()))

    with tempfile.TemporaryDirectory() as tmp:
        overrides = {"deviceId": "bench", "modelDir": str(model_dir), "source": f"loop:{images[0].parent}",
                     "broker": broker, "stateDir": tmp, "healthIntervalSeconds": 3600, "workers": workers}
        if providers:  # as tagqa-edge run --providers: a JSON list (names and options) or comma-separated names
            overrides["providers"] = provider_list_text(providers)
            if os.environ.get("TAGQA_BENCH_PROVIDER_CHECK_IOU"):
                overrides["providerCheckIou"] = float(os.environ["TAGQA_BENCH_PROVIDER_CHECK_IOU"])
        host, _, port = broker.rpartition(":")
        runtime = EdgeRuntime(config_source=NoConfigSource(), overrides=overrides, max_frames=warmup + frames,
                              publisher_factory=lambda c: TimedPublisher(host, int(port), "edge-bench"), seed=0)
        runtime.record_listeners.append(mark_cpu)
        runtime.run()  # returns once max_frames results are published and the runtime shut down
        snapshot = runtime.metrics.snapshot()
        provider = getattr(runtime.slot.current, "provider", "CPUExecutionProvider")
    if len(acked) < warmup + frames:
        raise RuntimeError(f"only {len(acked)} of {warmup + frames} results were acknowledged")
    elapsed = acked[warmup + frames - 1] - acked[warmup - 1]
    cpu_ms: dict[str, float] = {}
    switches: dict[str, list[float]] = {}
    worker_asleep_ms = process_cpu_ms = faults_per_frame = None
    if len(cpu_marks) == 2:
        (start, cpu_start, before, _, faults_start), (end, cpu_end, after, names, faults_end) = cpu_marks
        process_cpu_ms = (cpu_end - cpu_start) * 1000 / frames
        faults_per_frame = round((faults_end - faults_start) / frames, 1)
        asleep = 0.0
        for tid, stats in after.items():  # threads that ended in between (the source) are left out
            group = _thread_group(names.get(tid, ""))
            ran, waited, voluntary, involuntary = (a - b for a, b in zip(stats, before.get(tid, (0, 0, 0, 0))))
            cpu_ms[group] = cpu_ms.get(group, 0.0) + ran * 1000 / frames
            if group == "workers":  # a busy worker sleeps only for the GIL (or for want of frames)
                asleep += (end - start) - ran - waited
            counted = switches.setdefault(group, [0.0, 0.0])
            counted[0] += voluntary / frames
            counted[1] += involuntary / frames
        worker_asleep_ms = round(asleep * 1000 / frames, 2)
    return {"ips": frames / elapsed, "frames": frames, "rss_mb": _peak_rss_mb(), "cpu_ms": process_cpu_ms,
            "faults_per_frame": faults_per_frame, "workers": runtime.workers,
            "native_letterbox": letterbox._letterbox is not None, "provider": provider,
            "corrupt": snapshot["frames_corrupt"], "captured": snapshot.get("captured"),
            "latency_ms_p50": snapshot["latency_ms_p50"], "latency_ms_p95": snapshot["latency_ms_p95"],
            "cpu_ms_per_frame": {k: round(v, 2) for k, v in sorted(cpu_ms.items())},
            "worker_asleep_ms_per_frame": worker_asleep_ms,
            "switches_per_frame": {k: [round(v[0], 2), round(v[1], 2)] for k, v in sorted(switches.items())}}


# ----------------------------------------------------------------------------- int8 study
def int8_study(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edge_inference.py int8")
    parser.add_argument("--model", type=Path, required=True, help="trained model dir (model.onnx + card)")
    parser.add_argument("--dataset", type=Path, required=True, help="YOLO export with images/{train,val,test}")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="keep the int8 model dir here (e.g. to run the main benchmark on it)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))
    from tagqa_assets.training.detections import OnnxModel, load_split
    from tagqa_assets.training.evaluation import evaluate
    from tagqa_assets.training.quantization import DEFAULT_CALIBRATION_IMAGES, calibration_images, quantize_model_dir

    print(f"machine: {machine_description()}")
    with tempfile.TemporaryDirectory(prefix="edge-int8-") as tmp_name:
        tmp = Path(tmp_name)
        calibration = calibration_images(args.dataset / "images" / "train", DEFAULT_CALIBRATION_IMAGES)
        started = time.perf_counter()
        quantized = quantize_model_dir(args.model, args.out or tmp / "int8", calibration)
        print(f"quantized in {time.perf_counter() - started:.1f} s "
              f"({(args.model / 'model.onnx').stat().st_size / 1e6:.1f} MB -> "
              f"{(quantized / 'model.onnx').stat().st_size / 1e6:.1f} MB)")
        metrics = {}
        for split in ("val", "test"):
            images = load_split(args.dataset, split)
            for name, model_dir in (("fp32", args.model), ("int8", quantized)):
                metrics[split, name] = evaluate(images, OnnxModel(model_dir).predict_all(images))
                print(f"{split} {name}: {metrics[split, name]}")
        images = sorted(p for p in (args.data / "images").glob("*/*") if p.is_file())
        image_dir = tmp / "images"
        image_dir.mkdir()
        for path in images:
            (image_dir / f"{path.parent.name}-{path.name}").symlink_to(path)
        speed: dict[tuple[str, str], list[float]] = {}
        namespace = argparse.Namespace(passes=2, workers=0)
        for _ in range(args.rounds):
            for name, model_dir in (("fp32", args.model), ("int8", quantized)):
                for kind in ("limit", "limit_parallel"):
                    m = run_contender(kind, model_dir, image_dir, namespace, "unused:0", tmp)
                    speed.setdefault((name, kind), []).append(m["ips"])
        imgsz = json.loads((args.model / "model_card.json").read_text())["imgsz"]
        ips = {key: statistics.median(values) for key, values in speed.items()}
        for split in ("val", "test"):
            fp, q = metrics[split, "fp32"], metrics[split, "int8"]
            print(f"INT8 imgsz={imgsz} split={split} map50_fp32={fp.map50:.4f} map50_int8={q.map50:.4f} "
                  f"map50_95_fp32={fp.map50_95:.4f} map50_95_int8={q.map50_95:.4f} "
                  f"delta_map50_95={q.map50_95 - fp.map50_95:+.4f}")
        print(f"INT8 imgsz={imgsz} limit_ips_fp32={ips['fp32', 'limit']:.1f} limit_ips_int8={ips['int8', 'limit']:.1f} "
              f"parallel_ips_fp32={ips['fp32', 'limit_parallel']:.1f} "
              f"parallel_ips_int8={ips['int8', 'limit_parallel']:.1f} "
              f"speedup={ips['int8', 'limit_parallel'] / ips['fp32', 'limit_parallel']:.2f}")
    return 0


# ----------------------------------------------------------------------------- orchestration
def export_model(out_dir: Path, imgsz: int, calibration: list[Path], state: Path) -> Path:
    """yolov8n (1 class) from yolov8n.yaml, BatchNorm statistics estimated on real images, static ONNX."""
    code = f"""
import json, hashlib, shutil, sys, numpy as np, torch, yaml, onnx, ultralytics
from pathlib import Path
from PIL import Image
from ultralytics import YOLO
sys.path.insert(0, {str(REPO)!r})
from edge_runtime.letterbox import letterbox
out, size = Path({str(out_dir)!r}), {imgsz}
out.mkdir(parents=True, exist_ok=True)
cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text())
cfg["nc"] = 1
(out / "yolov8n.yaml").write_text(yaml.safe_dump(cfg))
torch.manual_seed(0)
model = YOLO(str(out / "yolov8n.yaml"))
model.model.names = {{0: "scratch"}}
batch = torch.from_numpy(np.stack([letterbox(np.asarray(Image.open(p).convert("RGB")), size, size)[0][0]
                                   for p in {[str(p) for p in calibration]!r}]))
for m in model.model.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.reset_running_stats(); m.momentum = None
model.model.train()
with torch.no_grad():
    for i in range(0, len(batch), 8): model.model(batch[i:i + 8])
model.model.eval()
onnx_path = Path(model.export(format="onnx", imgsz=size, opset=17, simplify=True))
shutil.move(onnx_path, out / "model.onnx")
(out / "yolov8n.yaml").unlink()
data = (out / "model.onnx").read_bytes()
(out / "model_card.json").write_text(json.dumps({{"schema": "tagqa.model_card/1", "model_id": "bench-yolov8n-{imgsz}",
    "model_version": None, "dataset_version": "metal-tags-raw", "class_names": ["scratch"], "imgsz": size,
    "onnx_file": "model.onnx", "onnx_sha256": hashlib.sha256(data).hexdigest(), "opset": 17}}, indent=2))
"""
    subprocess.run([sys.executable, "-c", code], check=True, env=_ultralytics_env(state), capture_output=True)
    return out_dir


def _ultralytics_env(state: Path) -> dict[str, str]:
    return {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(state / "ultralytics"),
            "MPLCONFIGDIR": str(state / "matplotlib")}


class Broker:
    """A Mosquitto on a free loopback port (the results' destination for contender (a))."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(binary).exists():
            sys.exit("mosquitto not found: apt-get install -y mosquitto (make test installs it)")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        config = workdir / "mosquitto.conf"
        config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.process = subprocess.Popen([binary, "-c", str(config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        time.sleep(0.3)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def run_contender(kind: str, model_dir: Path, image_dir: Path, args: argparse.Namespace, broker: str,
                  state: Path) -> dict:
    command = [sys.executable, __file__, "_measure", kind, str(model_dir), str(image_dir), broker,
               str(args.passes), str(args.workers), getattr(args, "providers", None) or ""]
    done = subprocess.run(command, capture_output=True, text=True, env=_ultralytics_env(state), timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _describe(m: dict) -> str:
    """One contender's measurement as printed per round."""
    line = f"{m['ips']:7.1f} img/s  peak RSS {m['rss_mb']:6.1f} MB  CPU {m.get('cpu_ms') or 0:5.1f} ms/img"
    if m.get("faults_per_frame") is not None:
        line += f"  {m['faults_per_frame']} minor faults/img"
    if "workers" in m:  # the runtime (ours, ours_numpy, ours_providers)
        line += (f"  p50 {m['latency_ms_p50']} ms p95 {m['latency_ms_p95']} ms, {m['workers']} workers, "
                 f"{'native' if m['native_letterbox'] else 'numpy'} letterbox, {m['provider']}, "
                 f"{m['captured']} captured; CPU ms/frame "
                 + " ".join(f"{k} {v}" for k, v in m["cpu_ms_per_frame"].items())
                 + f"; workers asleep {m['worker_asleep_ms_per_frame']} ms/frame; context switches/frame "
                 "(voluntary/involuntary) "
                 + " ".join(f"{k} {v[0]}/{v[1]}" for k, v in m["switches_per_frame"].items()))
    if "requests" in m:  # bare OpenVINO
        line += f"  {m['requests']} requests, inference precision {m['precision']}, openvino {m['openvino']}"
    return line


def load_average() -> str:
    """The 1-minute load average (the machine is shared: printed beside every figure)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "n/a"


def result_line(imgsz: int, precision: str, best: dict[str, float], rss: dict[str, float], cpu: dict[str, float],
                load: str, provider: str | None = None) -> str:
    """The RESULT line of one model (image size and precision) from each contender's best round.

    ``cpu_vs_limit_parallel`` (CPU per image of inference alone over ours', medians) is the ratio that
    load from other processes disturbs least: on a saturated machine throughput follows CPU per image.
    """
    def ratio(a: str, b: str) -> str:
        return f"{best[a] / best[b]:.2f}" if a in best and b in best else "n/a"

    fields = [f"imgsz={imgsz}", f"precision={precision}"]
    fields += [f"{k}_ips={best[k]:.1f}" for k in ("ours", "limit_parallel", "openvino", "openvino_frames",
                                                  "ultralytics", "limit", PROVIDERS_CONTENDER, "limit_providers")
               if k in best]
    fields += [f"vs_limit_parallel={ratio('ours', 'limit_parallel')}", f"vs_ultralytics={ratio('ours', 'ultralytics')}",
               f"vs_limit={ratio('ours', 'limit')}", f"vs_openvino={ratio(PROVIDERS_CONTENDER, 'openvino')}",
               f"vs_openvino_frames={ratio(PROVIDERS_CONTENDER, 'openvino_frames')}",
               f"providers_vs_limit={ratio(PROVIDERS_CONTENDER, 'limit_providers')}"]
    if cpu.get("ours") and cpu.get("limit_parallel"):
        fields.append(f"cpu_vs_limit_parallel={cpu['limit_parallel'] / cpu['ours']:.2f}")
    fields += [f"{k}_rss_mb={rss[k]:.0f}" for k in ("ours", "ultralytics", "openvino", "openvino_frames",
                                                    PROVIDERS_CONTENDER) if k in rss]
    if provider:  # what the provider list chose (its check may refuse OpenVINO and fall back to CPU)
        fields.append(f"{PROVIDERS_CONTENDER}_ran_on={provider}")
    return "RESULT " + " ".join(fields) + f" load={load}"


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import onnxruntime

    gpus = ""
    if shutil.which("nvidia-smi"):
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True)
        gpus = "".join(f", {line.split(' (UUID')[0]}" for line in listed.stdout.splitlines() if line.strip())
    return (f"{cpu}, {os.cpu_count()} logical CPUs{gpus}, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, onnxruntime {onnxruntime.__version__} "
            f"(providers: {', '.join(onnxruntime.get_available_providers())})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="metal-tags dataset folder")
    parser.add_argument("--model", type=Path, action="append", help="model dir(s); default: export yolov8n per size")
    parser.add_argument("--imgsz", type=int, nargs="+", default=[480, 640])
    parser.add_argument("--precision", nargs="+", choices=["fp32", "int8"], default=["fp32", "int8"],
                        help="int8: also run every model quantized (as the int8 study does)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--passes", type=int, default=1, help="passes over the images per measurement")
    parser.add_argument("--workers", type=int, default=0, help="runtime frame workers (0: its default)")
    parser.add_argument("--contenders", nargs="+", choices=CONTENDERS, default=list(CONTENDERS))
    parser.add_argument("--providers", help="also run ours with this execution provider list (the runtime's "
                        "'providers' setting, e.g. OpenVINOExecutionProvider,CPUExecutionProvider): the "
                        f"'{PROVIDERS_CONTENDER}' contender, compared with bare OpenVINO as vs_openvino")
    parser.add_argument("--openvino-precision", choices=["f32", "bf16", "f16"],
                        help="bare OpenVINO's INFERENCE_PRECISION_HINT (default: OpenVINO's own, bf16 on a CPU with "
                             "AMX); use the same as the provider's load_config for a like-for-like vs_openvino")
    parser.add_argument("--provider-check-iou", type=float,
                        help="the device's providerCheckIou for the --providers run (default: the runtime's 0.99). "
                             "OpenVINO's int8 kernels round differently from ONNX Runtime's: on an int8 model the "
                             "check's low-score candidates overlap CPU's at IoU 0.95 and the default refuses it")
    args = parser.parse_args(argv)
    if args.openvino_precision:  # to the measuring subprocesses
        os.environ["TAGQA_BENCH_OPENVINO_PRECISION"] = args.openvino_precision
    if args.provider_check_iou:
        os.environ["TAGQA_BENCH_PROVIDER_CHECK_IOU"] = str(args.provider_check_iou)
    images = sorted(p for p in (args.data / "images").glob("*/*") if p.is_file())
    if not images:
        sys.exit(f"no images under {args.data / 'images'} (the real metal-tags dataset is needed)")
    contenders = [k for k in args.contenders if k != "limit_providers" or args.providers] \
        + ([PROVIDERS_CONTENDER] if args.providers else [])
    print(f"machine: {machine_description()}")
    print(f"images: {len(images)} from {args.data}")
    if not args.providers:
        print("no --providers: vs_openvino (ours with the OpenVINO provider against bare OpenVINO) is not measured")
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp_name:
        tmp = Path(tmp_name)
        image_dir = tmp / "images"
        image_dir.mkdir()
        for path in images:  # one flat folder for the runtime's loop source
            (image_dir / f"{path.parent.name}-{path.name}").symlink_to(path)
        models = args.model or [export_model(tmp / f"model-{s}", s, images[:32], tmp) for s in args.imgsz]
        if "int8" in args.precision:
            from tagqa_assets.training.quantization import quantize_model_dir
        runs: list[tuple[str, Path]] = []
        for model_dir in models:
            if "quantization" in json.loads((model_dir / "model_card.json").read_text()):
                runs.append(("int8", model_dir))  # given an int8 model dir (e.g. the int8 study's --out)
                continue
            if "fp32" in args.precision:
                runs.append(("fp32", model_dir))
            if "int8" in args.precision:  # as the int8 study quantizes (calibrated on 64 of the images)
                runs.append(("int8", quantize_model_dir(model_dir, tmp / f"{model_dir.name}-int8", images[32:96])))
        broker = Broker(tmp)
        results = []
        try:
            for precision, model_dir in runs:
                imgsz = json.loads((model_dir / "model_card.json").read_text())["imgsz"]
                rounds: dict[str, list[dict]] = {k: [] for k in contenders}
                loads = [load_average()]
                for r in range(args.rounds):
                    for kind in contenders:
                        m = run_contender(kind, model_dir, image_dir, args, f"127.0.0.1:{broker.port}", tmp)
                        rounds[kind].append(m)
                        print(f"imgsz={imgsz} {precision} round={r + 1} {kind:<14} {_describe(m)}  "
                              f"load {load_average()}", flush=True)
                loads.append(load_average())
                median = {k: statistics.median(m["ips"] for m in v) for k, v in rounds.items()}
                best = {k: max(m["ips"] for m in v) for k, v in rounds.items()}
                rss = {k: max(m["rss_mb"] for m in v) for k, v in rounds.items()}
                cpu = {k: statistics.median(m["cpu_ms"] for m in v) for k, v in rounds.items()
                       if all(m.get("cpu_ms") for m in v)}
                print(f"imgsz={imgsz} {precision} CPU ms/img (medians): "
                      + ", ".join(f"{k} {v:.1f}" for k, v in cpu.items()))
                for label, figures in (("medians", median), ("best", best)):
                    ratios = [f"ours/{k} {figures['ours'] / figures[k]:.2f}" for k in figures
                              if k != "ours" and "ours" in figures]
                    print(f"imgsz={imgsz} {precision} {label}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items())
                          + " img/s; " + ", ".join(ratios))
                # Best of the interleaved rounds: on a shared machine it is each contender's least disturbed run.
                chosen = sorted({m["provider"] for m in rounds.get(PROVIDERS_CONTENDER, [])})
                results.append(result_line(imgsz, precision, best, rss, cpu, "-".join(loads), "+".join(chosen) or None))
        finally:
            broker.stop()
    for line in results:
        print(line)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_measure":
        kind, model, image_dir, broker, passes, workers, providers = sys.argv[2:9]
        paths = sorted(Path(image_dir).iterdir())
        if kind in ("limit", "limit_parallel"):
            out = measure_limit(Path(model), paths, runs=int(passes) * len(paths),
                                parallel=2 if kind == "limit_parallel" else 0)
        elif kind == "limit_providers":
            out = measure_limit(Path(model), paths, runs=int(passes) * len(paths), parallel=int(workers) or 2,
                                providers=providers)
        elif kind in ("openvino", "openvino_frames"):
            out = measure_openvino(Path(model), paths, runs=int(passes) * len(paths),
                                   precision=os.environ.get("TAGQA_BENCH_OPENVINO_PRECISION", ""),
                                   frames=kind == "openvino_frames")
        elif kind == "ultralytics":
            out = measure_ultralytics(Path(model), paths, int(passes))
        else:
            out = measure_ours(Path(model), paths, int(passes), broker, int(workers),
                               numpy_letterbox=kind == "ours_numpy",
                               providers=providers if kind == PROVIDERS_CONTENDER else None)
        print(json.dumps(out))
    elif len(sys.argv) > 1 and sys.argv[1] == "int8":
        sys.exit(int8_study(sys.argv[2:]))
    else:
        sys.exit(main())
