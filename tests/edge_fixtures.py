"""Shared pieces of the edge tests: tiny exported YOLO models, test images, a real Mosquitto, an MQTT collector.

Models are exported by Ultralytics in a subprocess (the edge package itself never imports
torch or ultralytics) and cached for the whole session under pytest's basetemp. Run as a
script, this module is that exporter (``python edge_fixtures.py export CALIBRATION_DIR
OUT_DIR=IMGSZ:SEED:VERSION:DATASET_VERSION ...``) and the Ultralytics predictor the parity
test compares against (``predict``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from polling import wait_until

REPO = Path(__file__).resolve().parents[1]
REAL_DATASET = REPO.parent / "shared" / "data" / "metal-tags"
MODEL_A = {"imgsz": 128, "seed": 0, "version": "1", "dataset_version": "ds-edge-1"}
MODEL_B = {"imgsz": 160, "seed": 1, "version": "2", "dataset_version": "ds-edge-2"}


# --------------------------------------------------------------------------- images
def synthetic_tag_image(path: Path, seed: int, size: tuple[int, int] = (450, 300)) -> Path:
    """A metal-tag-like JPEG: brushed grey plate with a few dark scratch strokes (non-square by default)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    w, h = size
    base = 150 + 20 * np.sin(np.linspace(0, 12, w))[None, :] + rng.normal(0, 6, (h, w))
    image = Image.fromarray(np.clip(np.stack([base] * 3, axis=-1), 0, 255).astype("uint8"))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(1, 4))):
        x, y = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 30))
        draw.line([(x, y), (x + int(rng.integers(20, 60)), y + int(rng.integers(-20, 30)))], fill=(40, 40, 45),
                  width=int(rng.integers(2, 5)))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="JPEG", quality=92)
    return path


def sample_images(folder: Path, count: int) -> list[Path]:
    """``count`` images in ``folder``: real dataset images when present (non-square 450x300), else synthetic."""
    folder.mkdir(parents=True, exist_ok=True)
    real = sorted((REAL_DATASET / "images" / "bad").glob("*.jpg"))
    out = []
    for i in range(count):
        target = folder / f"tag-{i:03d}.jpg"
        if real:
            shutil.copyfile(real[(i * 7) % len(real)], target)
        else:
            synthetic_tag_image(target, seed=i)
        out.append(target)
    return out


# --------------------------------------------------------------------------- models
def ultralytics_env(state: Path) -> dict[str, str]:
    """Environment for an Ultralytics subprocess: offline, settings and caches inside ``state``."""
    return {**os.environ, "YOLO_OFFLINE": "1", "YOLO_CONFIG_DIR": str(state / "ultralytics"),
            "MPLCONFIGDIR": str(state / "matplotlib"), "OMP_NUM_THREADS": "2"}


def export_model_dirs(specs: dict[Path, dict], *, calibration_dir: Path, state: Path) -> None:
    """Export tiny yolov8n models (one Ultralytics subprocess for all): ``{out_dir: spec}`` with
    spec keys imgsz, seed, version, dataset_version; each out_dir gets model.onnx + model_card.json."""
    args = [f"{out}={s['imgsz']}:{s['seed']}:{s['version']}:{s['dataset_version']}" for out, s in specs.items()]
    subprocess.run([sys.executable, __file__, "export", str(calibration_dir), *args], check=True,
                   env=ultralytics_env(state), capture_output=True, timeout=600)


def model_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model A (imgsz 128, version "1") and B (imgsz 160, version "2"), built once per session."""
    cache = tmp_path_factory.getbasetemp() / "edge-model-cache"
    done = cache / "ready.json"
    if done.exists():
        return {k: Path(v) for k, v in json.loads(done.read_text()).items()}
    shutil.rmtree(cache, ignore_errors=True)
    calibration = cache / "calibration"
    sample_images(calibration, 16)
    dirs = {"a": cache / "model-a", "b": cache / "model-b"}
    export_model_dirs({dirs["a"]: MODEL_A, dirs["b"]: MODEL_B}, calibration_dir=calibration, state=cache / "state")
    done.write_text(json.dumps({k: str(v) for k, v in dirs.items()}))
    return dirs


def copy_model(source: Path, target: Path) -> Path:
    """Copy a model directory (card written last, as a deployment would)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.name != "model_card.json":
            shutil.copyfile(path, target / path.name)
    shutil.copyfile(source / "model_card.json", target / "model_card.json")
    return target


def _export_main(calibration: str, *specs: str) -> None:
    """Export every ``OUT_DIR=IMGSZ:SEED:VERSION:DATASET_VERSION`` spec (see ``_export_one``)."""
    for spec in specs:
        out, _, rest = spec.rpartition("=")
        _export_one(out, *rest.split(":"), calibration)


def _export_one(out: str, imgsz: str, seed: str, version: str, dataset_version: str, calibration: str) -> None:
    """Build yolov8n from yolov8n.yaml (1 class), calibrate BatchNorm on images, export ONNX + card.

    A freshly initialised network in eval mode gives nearly the same scores for every image
    (BatchNorm still holds its initial statistics); re-estimating those statistics on real
    images makes the outputs depend on the image, so parity and capture tests compare real,
    distinct scores. No weights are downloaded.
    """
    import numpy as np
    import onnx
    import torch
    import ultralytics
    import yaml
    from PIL import Image
    from ultralytics import YOLO

    out_dir, size = Path(out), int(imgsz)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8.yaml").read_text())
    cfg["nc"] = 1
    work = out_dir / "build"
    work.mkdir(exist_ok=True)
    (work / "yolov8n.yaml").write_text(yaml.safe_dump(cfg))
    torch.manual_seed(int(seed))
    model = YOLO(str(work / "yolov8n.yaml"))
    model.model.names = {0: "scratch"}
    sys.path.insert(0, str(REPO))
    from edge_runtime.letterbox import letterbox

    batch = [letterbox(np.asarray(Image.open(p).convert("RGB")), size, size)[0][0]
             for p in sorted(Path(calibration).glob("*.jpg"))]
    net = model.model
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over the calibration batches
    net.train()
    with torch.no_grad():
        tensor = torch.from_numpy(np.stack(batch))
        for start in range(0, len(batch), 8):
            net(tensor[start:start + 8])
    net.eval()
    exported = Path(model.export(format="onnx", imgsz=size, opset=17, simplify=True, verbose=False))
    target = out_dir / "model.onnx"
    shutil.move(exported, target)
    shutil.rmtree(work)
    data = target.read_bytes()
    from edge_runtime.contracts import pack_verification_frames

    # A few of the images it was calibrated on ship with it, as the platform ships validation images.
    frames, frames_entry = pack_verification_frames(
        {p.name: p.read_bytes() for p in sorted(Path(calibration).glob("*.jpg"))[:3]})
    (out_dir / frames_entry["file"]).write_bytes(frames)
    card = {
        "schema": "tagqa.model_card/1", "model_id": f"tiny-{dataset_version}-{seed}", "model_version": version,
        "dataset_version": dataset_version, "class_names": ["scratch"], "imgsz": size, "onnx_file": "model.onnx",
        "onnx_sha256": hashlib.sha256(data).hexdigest(),
        "opset": int(max(o.version for o in onnx.load_from_string(data).opset_import if o.domain in ("", "ai.onnx"))),
        "exported_by": f"ultralytics {ultralytics.__version__}", "verification_frames": frames_entry,
    }
    (out_dir / "model_card.json").write_text(json.dumps(card, indent=2))


# --------------------------------------------------------------------------- MQTT
def openvino_device_here() -> bool:
    """Whether the OpenVINO plugin offers a device on this machine. It takes Intel hardware only: on an Intel CPU
    the tests serve on it for real; on another (an AMD EPYC CI machine) they check how it is refused instead."""
    from edge_runtime.providers import OnnxRuntimeSessions

    return "OpenVINOExecutionProvider" in OnnxRuntimeSessions().available({"OpenVINOExecutionProvider"})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mosquitto_binary() -> str:
    """Path of mosquitto; installs the Debian package when missing (as `make test` does)."""
    found = shutil.which("mosquitto") or (os.path.exists("/usr/sbin/mosquitto") and "/usr/sbin/mosquitto")
    if not found:
        subprocess.run("apt-get update -qq && apt-get install -y -qq mosquitto", shell=True, check=True,
                       capture_output=True, timeout=600)
        found = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    return found


class Mosquitto:
    """A real Mosquitto on 127.0.0.1 with persistence, so sessions and queued messages survive a restart.

    ``autosave_seconds`` makes it save its persistence file that often, so sessions also
    survive ``kill()`` (SIGKILL, no save at exit) up to that many seconds back.
    """

    def __init__(self, workdir: Path, *, autosave_seconds: int | None = None) -> None:
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.config = workdir / "mosquitto.conf"
        self.config.write_text(
            # Run as root would make mosquitto drop to user "mosquitto", who cannot write the test folder.
            f"user root\nlistener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {workdir}/\nmax_queued_messages 100000\nlog_dest file {workdir}/mosquitto.log\n"
            + (f"autosave_interval {autosave_seconds}\n" if autosave_seconds else ""))
        self.process: subprocess.Popen | None = None
        self.binary = mosquitto_binary()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        """Start and wait (generously: the machine may be busy) until it accepts connections."""
        self.process = subprocess.Popen([self.binary, "-c", str(self.config)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        process = self.process

        def listening() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"mosquitto ({self.config}) exited with {process.returncode} before accepting "
                                   f"connections on 127.0.0.1:{self.port}; log tail: {self.log_tail()}")
            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0
        try:
            wait_until(listening, f"mosquitto ({self.config}) to accept connections on 127.0.0.1:{self.port}", timeout,
                       poll=0.05, error=RuntimeError, diagnose=lambda: f"log tail: {self.log_tail()}")
        except RuntimeError:
            self.kill()  # never leave a half-started broker behind
            raise

    def log_tail(self, chars: int = 1000) -> str:
        log = self.workdir / "mosquitto.log"
        return log.read_text(errors="replace")[-chars:] if log.exists() else "(no log)"

    def kill(self) -> None:
        """SIGKILL: no persistence saved at exit, connections dropped without a goodbye."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=30)
            self.process = None

    def wait_for_client_gone(self, client_id: str, timeout: float = 10.0) -> None:
        """Wait until the broker has processed ``client_id``'s disconnection (so its session is stored)."""
        log = self.workdir / "mosquitto.log"
        marks = (f"Client {client_id} disconnected", f"Client {client_id} closed its connection")
        wait_until(lambda: log.exists() and any(m in log.read_text(errors="replace") for m in marks),
                   f"mosquitto to log the disconnection of {client_id}", timeout, poll=0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()  # SIGTERM: mosquitto saves its persistence file
            self.process.wait(timeout=10)
            self.process = None


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[Mosquitto]:
    broker = Mosquitto(tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.stop()


class MqttCollector:
    """An independent MQTT 5 subscriber (awscrt) that records every message per topic, in arrival order."""

    def __init__(self, port: int, topics: list[str], client_id: str | None = None) -> None:
        import uuid

        from awscrt import mqtt5

        client_id = client_id or f"test-collector-{uuid.uuid4().hex[:8]}"

        self.messages: dict[str, list[bytes]] = {t: [] for t in topics}
        self._cond = threading.Condition()
        self._connected = threading.Event()
        self._mqtt5 = mqtt5
        self._topics = topics
        self.client = mqtt5.Client(mqtt5.ClientOptions(
            host_name="127.0.0.1", port=port,
            connect_options=mqtt5.ConnectPacket(client_id=client_id, session_expiry_interval_sec=600),
            # REJOIN_ALWAYS: a new collector with the same id resumes the (persisted) session and its queue.
            session_behavior=mqtt5.ClientSessionBehaviorType.REJOIN_ALWAYS,
            min_reconnect_delay_ms=100, max_reconnect_delay_ms=500,
            on_publish_callback_fn=self._on_publish,
            on_lifecycle_event_connection_success_fn=self._on_connected,
            on_lifecycle_event_disconnection_fn=lambda d: self._connected.clear()))
        self.client.start()
        assert self._connected.wait(10), "collector could not connect to mosquitto"

    def _on_connected(self, data) -> None:
        self.session_present = data.connack_packet.session_present
        if data.connack_packet.session_present or not self._topics:
            self._connected.set()
            return
        mqtt5 = self._mqtt5  # never block in an awscrt callback: mark connected once the SUBACK arrives
        self.client.subscribe(mqtt5.SubscribePacket(subscriptions=[
            mqtt5.Subscription(topic_filter=t, qos=mqtt5.QoS.AT_LEAST_ONCE) for t in self._topics])
        ).add_done_callback(lambda future: future.exception() is None and self._connected.set())

    def _on_publish(self, data) -> None:
        with self._cond:
            self.messages.setdefault(data.publish_packet.topic, []).append(bytes(data.publish_packet.payload))
            self._cond.notify_all()

    def json(self, topic: str) -> list[dict]:
        with self._cond:
            return [json.loads(m) for m in self.messages.get(topic, [])]

    def wait_for(self, topic: str, predicate, timeout: float = 30.0) -> list[dict]:
        """Wait until ``predicate(messages)`` holds for the decoded messages on ``topic``; return them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                decoded = [json.loads(m) for m in self.messages.get(topic, [])]
                if predicate(decoded):
                    return decoded
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"timed out on {topic}; got {len(decoded)} messages: {decoded[-3:]}")
                self._cond.wait(min(remaining, 0.2))

    def publish(self, topic: str, payload: bytes) -> None:
        mqtt5 = self._mqtt5
        self.client.publish(mqtt5.PublishPacket(topic=topic, payload=payload, qos=mqtt5.QoS.AT_LEAST_ONCE)).result(10)

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def close(self) -> None:
        self.client.stop()


def _predict_main(onnx_path: str, imgsz: str, conf: str, out: str, *images: str) -> None:
    """Ultralytics' own predictions on ``images`` with an ONNX file, written as JSON (the parity reference)."""
    from ultralytics import YOLO

    model = YOLO(onnx_path, task="detect")
    results = {}
    for image in images:
        result = model.predict(image, imgsz=int(imgsz), conf=float(conf), iou=0.7, verbose=False)[0]
        results[image] = {"boxes": result.boxes.xyxy.tolist(), "scores": result.boxes.conf.tolist(),
                          "classes": result.boxes.cls.tolist()}
    Path(out).write_text(json.dumps(results))


def ultralytics_predictions(onnx_path: Path, imgsz: int, conf: float, images: list[Path], state: Path) -> dict:
    """Run Ultralytics predict in a subprocess and return {image path: boxes, scores, classes}."""
    out = state / "ultralytics-predictions.json"
    subprocess.run([sys.executable, __file__, "predict", str(onnx_path), str(imgsz), str(conf), str(out),
                    *map(str, images)], check=True, env=ultralytics_env(state), capture_output=True, timeout=600)
    return json.loads(out.read_text())


@pytest.fixture
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """{"a": model dir (imgsz 128, version "1"), "b": model dir (imgsz 160, version "2")}, cached per session."""
    return model_dirs(tmp_path_factory)


if __name__ == "__main__" and len(sys.argv) > 3 and sys.argv[1] == "export":
    _export_main(*sys.argv[2:])
elif __name__ == "__main__" and len(sys.argv) > 6 and sys.argv[1] == "predict":
    _predict_main(*sys.argv[2:])
