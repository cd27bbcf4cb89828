"""The product's acceptance test: the whole loop, driven by sensors and runs, with a real device.

Upload images -> raw_image_sensor ingests -> labeling_job_sensor opens an inbox job ->
labels arrive in the inbox -> dataset v1 -> model v1 (train, ONNX, parity, evaluation,
registry) -> approved -> edge component + local deployment -> a real ``tagqa edge up``
process on a real Mosquitto publishes detections with model v1 and uploads uncertain
images -> ingested -> labeled -> hard examples -> dataset v2 -> model v2 -> approved ->
deployed -> the same process switches to model v2 without restarting. Then lineage is
walked from an MQTT result back to raw image keys, and a code-version bump is shown to
request one run, for the newest dataset version only. Once on the local store, once on S3
(moto's server).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from deployment_fixtures import wheel_bundle  # noqa: F401
from edge_fixtures import MqttCollector, free_port, mosquitto  # noqa: F401
from loop_driver import LoopDriver
from model_fixtures import pick_tags
from polling import wait_until
from tagqa_assets.cli import main as tagqa
from tagqa_assets.contracts.keys import LABELS_INBOX_PREFIX
from tagqa_assets.contracts.labels import Annotation, LabelRecord
from tagqa_assets.datasets.hard_examples import load_current
from tagqa_assets.datasets.split import DEFAULT_RATIOS
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.definitions import defs as load_definitions
from tagqa_assets.deployment.local_target import PID_FILE
from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.ingestion.synthetic import generate_tags
from tagqa_assets.ingestion.writers import upload_folder
from tagqa_assets.labeling.label_store import LocalLabelStore, latest_records
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.storage import ObjectStore, open_store
from tagqa_assets.training.sensors import model_training_sensor

pytestmark = pytest.mark.slow  # the whole loop: trains twice, real device process, broker

DEVICE = "line-1"
DETECTIONS, HEALTH = f"tagqa/{DEVICE}/detections", f"tagqa/{DEVICE}/health"
FEEDBACK_PREFIX = f"raw/edge-feedback/{DEVICE}/"


class Labeler:
    """The person at the inbox: answers every open task file with the true boxes (known by content)."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.truth: dict[str, tuple[Annotation, ...]] = {}
        self.answered: set[str] = set()

    def know(self, jpeg: bytes, annotations: tuple[Annotation, ...]) -> None:
        self.truth[hashlib.sha256(jpeg).hexdigest()] = annotations

    def answer_open_tasks(self) -> int:
        """Drop one label file per unanswered task file into the inbox; returns the images labeled."""
        labeled = 0
        for info in self.store.list_objects("inbox/tasks/"):
            if info.key in self.answered:
                continue
            rows = []
            for line in self.store.get_bytes(info.key).decode().splitlines():
                task = json.loads(line)
                assert task["image_sha256"] in self.truth, f"task {info.key} names an image nobody photographed: {task['source_ref']}"
                record = LabelRecord.from_row({**task, "annotations": [a.__dict__ for a in self.truth[task["image_sha256"]]]})
                rows.append(json.dumps({**record.to_row(), "event_time": time.time(), "labeling_job": f"inbox/{info.key.rsplit('/', 1)[-1]}"}))
            name = info.key.rsplit("/", 1)[-1]
            self.store.put_bytes(f"{LABELS_INBOX_PREFIX}answer-{name}", ("\n".join(rows) + "\n").encode())
            self.answered.add(info.key)
            labeled += len(rows)
        return labeled


def _write_images(folder: Path, tags, labeler: Labeler) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for tag in tags:
        labeler.know(tag.jpeg, tag.annotations)
        (folder / f".{tag.name}").write_bytes(tag.jpeg)
        (folder / f".{tag.name}").rename(folder / tag.name)  # the camera's atomic write


def _start_device(workdir: Path, env: dict[str, str], camera: Path) -> subprocess.Popen:
    env = {**env, "TAGQA_EDGE_HTTP": f"127.0.0.1:{free_port()}"}  # not make run's 8081: tests run side by side
    process = subprocess.Popen(
        [sys.executable, "-m", "tagqa_assets.cli", "edge", "up", "--source", str(camera), "--health-interval", "1"],
        cwd=workdir, env=env, stdout=open(workdir / "device.log", "w"), stderr=subprocess.STDOUT,
    )
    pid_file = Path(env["TAGQA_DEVICES_ROOT"]) / DEVICE / PID_FILE

    def log() -> str:
        return (workdir / "device.log").read_text()[-3000:]

    def registered() -> bool:
        if pid_file.is_file():
            return True
        assert process.poll() is None, f"`tagqa edge up` exited with {process.returncode}, wrote no {pid_file}:\n{log()}"
        return False
    try:  # generous: the device imports onnxruntime on a busy machine
        wait_until(registered, f"`tagqa edge up` to write {pid_file}", 90, poll=0.1, diagnose=log)
    except AssertionError:
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    return process


def _runs_of(driver: LoopDriver, asset: str) -> list:
    return [run for run in driver.runs if asset in run.assets]


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_the_loop_closes(backend: str, tmp_path: Path, mosquitto, wheel_bundle, request: pytest.FixtureRequest,
                         monkeypatch: pytest.MonkeyPatch) -> None:
    if backend == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        store_root = f"s3://{request.getfixturevalue('s3_bucket')}/tagqa"
    else:
        endpoint, store_root = "", str(tmp_path / "store")
    settings = {
        "TAGQA_STORE": store_root,
        "TAGQA_S3_ENDPOINT_URL": endpoint,
        "TAGQA_DEVICES_ROOT": str(tmp_path / "devices"),
        "TAGQA_MQTT_BROKER": mosquitto.address,
        "TAGQA_DEVICE_ID": DEVICE,
        "TAGQA_EDGE_WHEELS_DIR": str(wheel_bundle.directory),
        "TAGQA_DEPLOY_TIMEOUT_SECONDS": "120",
        # Capture everything the tiny model sees: it is unsure about every image.
        "TAGQA_DEVICE_CONFIGURATION": json.dumps({"captureBand": [0.0, 1.0], "emptySampleRate": 1.0}),
        # A CI-sized model: two epochs at 64 px cannot pass the production gate of 0.40 mAP50-95.
        "TAGQA_TRAIN_EPOCHS": "2",
        "TAGQA_TRAIN_IMGSZ": "64",
        "TAGQA_TRAIN_BATCH": "8",
        "TAGQA_GATE_THRESHOLD": "0.0",
    }
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    store = open_store(store_root, endpoint_url=endpoint or None)
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    defs = load_definitions()  # after the settings above: the code location reads them when it loads
    driver = LoopDriver(defs, instance)
    labeler = Labeler(store)
    registry = LocalModelRegistry(store)
    camera = tmp_path / "camera"
    camera.mkdir()
    device = _start_device(tmp_path, {**os.environ}, camera)
    collector = MqttCollector(mosquitto.port, [DETECTIONS, HEALTH])
    try:
        # 1. Images are uploaded; the sensors ingest them and open a labeling job.
        _write_images(tmp_path / "upload", pick_tags(20, seed=21, ratios=DEFAULT_RATIOS), labeler)
        assert len(upload_folder(store, tmp_path / "upload", source="camera-1").keys) == 20
        driver.run_until_quiet()
        assert len(RawImageCatalog(store).images()) == 20
        assert labeler.answer_open_tasks() == 20

        # 2. Labels arrive through the inbox: dataset v1, then the model chain, registered v1.
        driver.run_until_quiet()
        assert not driver.failures(), driver.failures()
        [v1] = DatasetVersionStore(store).list_versions()
        [entry] = registry.list_versions()
        assert (entry.version, entry.dataset_version, entry.status) == (1, v1, "PendingManualApproval")

        # 3. A person approves v1: the approval sensor builds the components and deploys them.
        assert tagqa(["models", "approve", "1"]) == 0
        driver.run_until_quiet()
        assert _runs_of(driver, "edge_deployment") and all(r.success for r in _runs_of(driver, "edge_deployment"))
        _write_images(camera, generate_tags(6, seed=31, prefix="cam1"), labeler)
        collector.wait_for(DETECTIONS, lambda m: sum(r["model_version"] == "1" for r in m) >= 6, timeout=90)
        first = [r for r in collector.json(DETECTIONS) if r["model_version"] == "1"]
        assert {r["dataset_version"] for r in first} == {v1} and all(r["verdict"] in ("ok", "defect") for r in first)

        # 4. Uncertain images come back to raw/edge-feedback/, get ingested, labeled, and become hard examples.
        wait_until(lambda: len(list(store.list_objects(FEEDBACK_PREFIX))) >= 6, "feedback uploads", 90, poll=0.3)
        driver.run_until_quiet()
        assert labeler.answer_open_tasks() == 6
        driver.run_until_quiet()
        assert not driver.failures(), driver.failures()
        hard = load_current(store)
        assert hard is not None and hard.images == 6
        versions = DatasetVersionStore(store).list_versions()
        assert len(versions) == 2
        v2 = versions[1]
        assert DatasetVersionStore(store).manifest(v2)["image_key"].str.startswith(FEEDBACK_PREFIX).sum() == 6

        # 5. Model v2 is trained on v2, compared with the champion (also on the hard examples), approved, deployed.
        entry2 = registry.get(2)
        assert entry2.dataset_version == v2
        if entry2.status != "Approved":
            assert tagqa(["models", "approve", "2"]) == 0
        driver.run_until_quiet()
        pid = int((Path(settings["TAGQA_DEVICES_ROOT"]) / DEVICE / PID_FILE).read_text())
        _write_images(camera, generate_tags(4, seed=32, prefix="cam2"), labeler)
        collector.wait_for(DETECTIONS, lambda m: sum(r["model_version"] == "2" for r in m) >= 4, timeout=90)
        assert device.poll() is None and pid == device.pid, "the device switched models without restarting"

        # 6. Lineage: from an MQTT result back to model, dataset version, label records and raw images.
        result = [r for r in collector.json(DETECTIONS) if r["model_version"] == "2"][-1]
        model = registry.get(int(result["model_version"]))
        assert model.dataset_version == result["dataset_version"] == v2
        manifest = DatasetVersionStore(store).manifest(model.dataset_version)
        labels = latest_records(LocalLabelStore(store).records()).set_index("source_ref")
        assert set(manifest["image_key"]) <= set(labels.index)
        assert (labels.loc[list(manifest["image_key"]), "status"] == "APPROVED").all()
        catalog = RawImageCatalog(store).images().set_index("key")
        assert set(manifest["image_key"]) <= set(catalog.index)
        assert (catalog.loc[list(manifest["image_key"]), "sha256"].values == manifest["sha256"].values).all()
        assert store.exists(f"models/{model.model_id}/model.json")

        # 7. A code change re-runs the chain for the newest dataset version only.
        _bumped_code_version_requests_one_run(defs, driver, instance, v1, v2)
    finally:
        collector.close()
        if device.poll() is None:
            device.send_signal(signal.SIGTERM)
            device.wait(timeout=30)


def _bumped_code_version_requests_one_run(defs: dg.Definitions, driver: LoopDriver, instance: dg.DagsterInstance, older: str, newest: str) -> None:
    with dg.build_sensor_context(instance=instance, cursor=driver.cursors["model_training_sensor"],
                                 repository_def=driver.repository, resources=defs.resources) as context:
        unchanged = model_training_sensor(context)
    assert not unchanged.run_requests, "nothing changed: nothing to run"
    bumped = [
        asset.map_asset_specs(lambda spec: spec.replace_attributes(code_version="export-v2"))
        if dg.AssetKey("onnx_model") in asset.keys else asset
        for asset in defs.assets
    ]
    changed = dg.Definitions(assets=bumped, asset_checks=defs.asset_checks, sensors=defs.sensors,
                             schedules=defs.schedules, resources=defs.resources)
    with dg.build_sensor_context(instance=instance, cursor=driver.cursors["model_training_sensor"],
                                 repository_def=changed.get_repository_def(), resources=defs.resources) as context:
        result = model_training_sensor(context)
    [run] = result.run_requests
    assert run.partition_key == newest != older
    assert list(run.asset_selection) == [dg.AssetKey(k) for k in ("onnx_model", "model_evaluation", "registered_model")]
