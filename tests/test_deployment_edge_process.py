"""End to end with a real device process: ``tagqa edge up`` (which becomes ``python -m edge_runtime
run``) on a real Mosquitto, deployments through the Dagster assets, rollback through the CLI.

Model A is deployed and served; B replaces it without a restart (same PID); C, whose ONNX
does not match its card's digest, is refused when its component is built; E's stored
artifact is tampered with after the build and the install refuses it; D passes the
platform's checks but the device refuses it (its card says imgsz 160, the graph takes 128),
so the deployment fails, B comes back automatically and D is marked Rejected; finally
``tagqa deploy rollback`` returns the device to A. After every refusal the device keeps
serving the previous model and the history shows nothing half-deployed as deployed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import dagster as dg
import pytest

from deployment_fixtures import register_model, wheel_bundle  # noqa: F401
from edge_fixtures import MqttCollector, free_port, mosquitto, sample_images, tiny_models  # noqa: F401
from polling import wait_until
from tagqa_assets.cli import main as tagqa
from tagqa_assets.contracts.edge import AUTO_ROLLBACK, DEPLOY, DEPLOYED, FAILED, ROLLBACK, component_key
from tagqa_assets.contracts.models import APPROVED, REJECTED
from tagqa_assets.deployment.assets import edge_component, edge_deployment
from tagqa_assets.deployment.history import DeploymentHistory
from tagqa_assets.deployment.local_target import PID_FILE, RUNTIME_CONFIG
from tagqa_assets.deployment.resources import DeploymentResource
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.storage import LocalObjectStore, StoreResource

pytestmark = pytest.mark.slow  # a real device process hot-swapping models

DETECTIONS, HEALTH = "tagqa/line-1/detections", "tagqa/line-1/health"


class Pipeline:
    """The deployment assets on one Dagster instance, as runs of the code location would execute them."""

    def __init__(self, store_root: Path, devices: Path, broker: str, wheels: Path) -> None:
        self.instance = dg.DagsterInstance.ephemeral()
        self.resources = {
            "store": StoreResource(root=str(store_root)), "model_registry": ModelRegistryResource(),
            "deployment": DeploymentResource(devices_root=str(devices), mqtt_broker=broker, timeout_seconds=60,
                                             device_configuration='{"frameIntervalSeconds": 0.2}',
                                             edge_wheels_dir=str(wheels))}

    def run(self, version: int, *, selection: list | None = None) -> dg.ExecuteInProcessResult:
        return dg.materialize([edge_component, edge_deployment], selection=selection, resources=self.resources,
                              instance=self.instance, raise_on_error=False,
                              run_config={"ops": {"edge_component": {"config": {"model_version": version}}}}
                              if selection is None or edge_component in selection else None)


def _failure(result: dg.ExecuteInProcessResult, step: str) -> str:
    [event] = [e for e in result.all_events if e.is_step_failure and e.step_key == step]
    return str(event.event_specific_data.error.message)


def _serving(collector: MqttCollector, since: int, version: str) -> None:
    """Wait for results published after message ``since`` that all come from model ``version``."""
    collector.wait_for(DETECTIONS, lambda m: len(m) > since + 2 and {r["model_version"] for r in m[-3:]} == {version},
                       timeout=60)


@pytest.fixture
def device(tmp_path: Path, mosquitto):
    camera = tmp_path / "camera"
    sample_images(camera, 4)
    env = {**os.environ, "TAGQA_STORE": str(tmp_path / "store"), "TAGQA_DEVICES_ROOT": str(tmp_path / "devices"),
           "TAGQA_MQTT_BROKER": mosquitto.address, "TAGQA_DEVICE_ID": "line-1", "TAGQA_S3_ENDPOINT_URL": "",
           "TAGQA_EDGE_HTTP": f"127.0.0.1:{free_port()}"}
    process = subprocess.Popen([sys.executable, "-m", "tagqa_assets.cli", "edge", "up", "--source", f"loop:{camera}",
                                "--health-interval", "1"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    pid_file = tmp_path / "devices" / "line-1" / PID_FILE
    wait_until(lambda: pid_file.is_file() or process.poll() is not None, "tagqa edge up to register the device or exit",
               30, poll=0.05)
    assert pid_file.is_file(), f"tagqa edge up did not register the device: {process.communicate(timeout=5)[0]}"
    process.http = env["TAGQA_EDGE_HTTP"]
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def test_a_real_device_process_hot_swaps_refuses_bad_models_and_rolls_back(
        tmp_path: Path, device, mosquitto, tiny_models, wheel_bundle, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    store = LocalObjectStore(tmp_path / "store")
    registry = LocalModelRegistry(store)
    pipeline = Pipeline(tmp_path / "store", tmp_path / "devices", mosquitto.address, wheel_bundle.directory)
    collector = MqttCollector(mosquitto.port, [DETECTIONS, HEALTH])
    history = DeploymentHistory(store)
    try:
        # A: the first deployment starts the runtime (tagqa edge up was waiting for it).
        register_model(store, registry, tiny_models["a"], "ds1-aaaaaaaa")
        assert pipeline.run(1).success
        _serving(collector, 0, "1")
        assert (tmp_path / "devices" / "line-1" / PID_FILE).read_text().strip() == str(device.pid)
        # The local device serves its HTTP API and operator page (make run: 127.0.0.1:8081).
        with urllib.request.urlopen(f"http://{device.http}/v1/model", timeout=30) as answer:
            assert json.loads(answer.read())["card"]["model_version"] == "1"
        with urllib.request.urlopen(f"http://{device.http}/", timeout=30) as answer:
            assert b"tagqa line view" in answer.read()

        # B: hot swap in the same process.
        register_model(store, registry, tiny_models["b"], "ds2-bbbbbbbb")
        assert pipeline.run(2).success
        _serving(collector, len(collector.json(DETECTIONS)), "2")
        assert device.poll() is None
        swaps = collector.wait_for(HEALTH, lambda m: m and m[-1]["model"]["model_version"] == "2")[-1]["model_swaps"]
        assert swaps == 1, "B arrived by a hot swap, not a restart"
        config_b = (tmp_path / "devices" / "line-1" / RUNTIME_CONFIG).read_text()

        # C: its ONNX bytes are not the ones its model card vouches for: no component, nothing deployed.
        register_model(store, registry, tiny_models["a"], "ds3-corrupt0", onnx=(tiny_models["b"] / "model.onnx").read_bytes())
        result = pipeline.run(3)
        assert not result.success and "but its model card says" in _failure(result, "edge_component")
        assert not store.exists(component_key("com.tagqa.ScratchModel", "3.0.0", "recipe.yaml"))

        # E: built fine, then its stored artifact is tampered with: the install checks the recipe digest.
        register_model(store, registry, tiny_models["b"], "ds4-tampered")
        assert pipeline.run(4, selection=[edge_component]).success
        store.put_bytes(component_key("com.tagqa.ScratchModel", "4.0.0", "model.onnx"), b"bit rot")
        result = pipeline.run(4, selection=[edge_deployment])
        assert not result.success and "does not match the recipe digest" in _failure(result, "edge_deployment")
        assert (tmp_path / "devices" / "line-1" / RUNTIME_CONFIG).read_text() == config_b

        # D: passes the platform's checks, the device's verification refuses it.
        register_model(store, registry, tiny_models["a"], "ds5-imgsz160", card={"imgsz": 160})
        result = pipeline.run(5)
        message = _failure(result, "edge_deployment")
        assert "refused by the device" in message and "model card says imgsz 160" in message
        assert "rolled back to com.tagqa.ScratchModel@2.0.0 (deployed)" in message
        assert registry.get(5).status == REJECTED and "imgsz 160" in registry.get(5).status_reason
        _serving(collector, len(collector.json(DETECTIONS)), "2")
        assert device.poll() is None and registry.get(4).status == APPROVED

        # Manual rollback through the CLI: back to A, and B is rejected.
        for name, value in {"TAGQA_STORE": str(tmp_path / "store"), "TAGQA_DEVICES_ROOT": str(tmp_path / "devices"),
                            "TAGQA_MQTT_BROKER": mosquitto.address, "TAGQA_DEPLOY_TARGET": "local"}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(tmp_path)
        assert tagqa(["deploy", "rollback", "--target", "local", "--reason", "B misses scratches"]) == 0
        _serving(collector, len(collector.json(DETECTIONS)), "1")
        assert registry.get(2).status == REJECTED and registry.get(1).status == APPROVED
        assert device.poll() is None
    finally:
        collector.close()

    kinds = [(r.kind, r.release.model_version if r.release else None, r.status) for r in history.records("local")]
    assert kinds == [(DEPLOY, 1, DEPLOYED), (DEPLOY, 2, DEPLOYED), (DEPLOY, 4, FAILED), (DEPLOY, 5, FAILED),
                     (AUTO_ROLLBACK, 2, DEPLOYED), (ROLLBACK, 1, DEPLOYED)]
    assert history.current("local").release.model_version == 1
    capsys.readouterr()
    assert tagqa(["deploy", "history", "--target", "local"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["started_at", "kind", "model_version", "components", "status"]
    assert len(lines) == 7 and "rollback" in lines[1] and "line-1: deployed" in lines[1]
    assert "refused by the device" in lines[3]
    assert json.loads((tmp_path / "devices" / "line-1" / RUNTIME_CONFIG).read_text())["modelDir"].endswith(
        "com.tagqa.ScratchModel/1.0.0")
