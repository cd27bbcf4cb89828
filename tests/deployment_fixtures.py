"""Shared pieces of the deployment tests: registered models from the edge tests' tiny ONNX exports,
the real wheel bundle of the inference component, and an in-process local device.

Models are the session-cached exports of ``edge_fixtures.tiny_models`` (no training here),
stored the way training stores a model (``models/<id>/`` with a commit record) and
registered through the real registry API.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge_fixtures import sample_images
from edge_runtime.config_sources import FileConfigSource
from edge_runtime.publishers import MqttPublisher
from edge_runtime.service import EdgeRuntime
from tagqa_assets.contracts.edge import Release
from tagqa_assets.contracts.models import APPROVED, COMMIT_FILE, MODEL_CARD_FILE, ONNX_FILE, ModelRecord, ModelVersion, model_key
from tagqa_assets.deployment.components import build_inference_component, build_model_component
from tagqa_assets.deployment.device_process import register_device
from tagqa_assets.deployment.local_target import RUNTIME_CONFIG
from tagqa_assets.deployment.resources import INFERENCE_TEMPLATE
from tagqa_assets.deployment.wheels import WheelBundle, prepare_wheel_bundle
from tagqa_assets.model_catalog.registry import ModelRegistry
from tagqa_assets.storage import ObjectStore

METRICS = {"test": {"map50": 0.5, "map50_95": 0.3, "precision": 0.6, "recall": 0.5}}


def register_model(store: ObjectStore, registry: ModelRegistry, model_dir: Path, model_id: str, *,
                   status: str = APPROVED, card: dict[str, Any] | None = None, onnx: bytes | None = None) -> ModelVersion:
    """Store ``model_dir`` as ``models/<model_id>/`` (card and commit record as training writes them) and register it.

    ``card`` overrides model card keys; ``onnx`` replaces the ONNX bytes (the card keeps its digest).
    """
    onnx = onnx if onnx is not None else (model_dir / ONNX_FILE).read_bytes()
    data = {**json.loads((model_dir / MODEL_CARD_FILE).read_text()), "model_id": model_id, "model_version": None,
            **(card or {})}
    store.put_bytes(model_key(model_id, ONNX_FILE), onnx)
    if (model_dir / "verification_frames.tar").exists():  # the frames the model ships (no dataset in the store)
        store.put_bytes(model_key(model_id, "verification_frames.tar"), (model_dir / "verification_frames.tar").read_bytes())
    store.put_json(model_key(model_id, MODEL_CARD_FILE), data)
    record = ModelRecord(
        model_id=model_id, dataset_version=data["dataset_version"], created_at="2026-01-01T00:00:00Z", run_id="test",
        class_names=tuple(data["class_names"]), imgsz=data["imgsz"], training_config={"epochs": 1},
        config_sha256="0" * 64, code_versions={}, git_sha="unknown",
        files={ONNX_FILE: hashlib.sha256(onnx).hexdigest()}, metrics=METRICS, opset=data["opset"])
    store.put_json(model_key(model_id, COMMIT_FILE), record.to_dict())
    return registry.register(ModelVersion(
        version=0, model_id=model_id, dataset_version=data["dataset_version"], status=status, created_at="",
        metrics=METRICS, training_config={"epochs": 1}, config_sha256="0" * 64, code_version="unknown",
        artifacts={"onnx": store.uri_for(model_key(model_id, ONNX_FILE))}))


def build_release(store: ObjectStore, entry: ModelVersion, bundle: WheelBundle) -> Release:
    """Both components of ``entry`` built into ``store`` (what ``edge_component`` does)."""
    model = build_model_component(store, entry, name="com.tagqa.ScratchModel", author="tagqa")
    inference = build_inference_component(store, bundle, name="com.tagqa.EdgeInference", author="tagqa",
                                          template=INFERENCE_TEMPLATE)
    return Release(entry.version, entry.model_id, entry.dataset_version, model.ref, inference.ref)


@pytest.fixture(scope="session")
def wheel_bundle(tmp_path_factory: pytest.TempPathFactory) -> WheelBundle:
    """The inference component's real wheel bundle, built once per session by deploy/greengrass/prepare_artifact.py."""
    return prepare_wheel_bundle(tmp_path_factory.getbasetemp() / "edge-wheels")


class ThreadDevice:
    """A local device served by an in-process EdgeRuntime: registers like ``tagqa edge up``, waits for the
    first deployment's configuration, then runs until ``stop``."""

    def __init__(self, devices_root: Path, device: str, broker_port: int, images: Path) -> None:
        self.folder = register_device(devices_root, device, broker=f"127.0.0.1:{broker_port}")
        self.device, self.port = device, broker_port
        sample_images(images, 4)
        self.overrides = {"source": f"loop:{images}", "frameIntervalSeconds": 0.2, "healthIntervalSeconds": 1.0,
                          "stateDir": str(self.folder / "work" / "state"), "broker": f"127.0.0.1:{broker_port}"}
        self.runtime: EdgeRuntime | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._main, daemon=True)
        self.thread.start()

    def _main(self) -> None:
        config = self.folder / RUNTIME_CONFIG
        while not config.is_file() and not self._stop.is_set():
            time.sleep(0.05)
        if self._stop.is_set():
            return
        try:
            self.runtime = EdgeRuntime(
                config_source=FileConfigSource(config), overrides=self.overrides, seed=1,
                publisher_factory=lambda c: MqttPublisher("127.0.0.1", self.port, f"edge-{c.device_id}"))
            self.runtime.run()
        except BaseException as exc:  # surfaced by the test through .error
            self.error = exc

    def stop(self) -> None:
        self._stop.set()
        if self.runtime is not None:
            self.runtime.request_stop()
        self.thread.join(30)
        assert not self.thread.is_alive(), "device thread did not stop"
