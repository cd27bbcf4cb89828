"""The local target against a real Mosquitto and an in-process edge runtime: nucleus-like install,
confirmation through health messages, history, manual rollback, and the bad inputs (unknown
device, unreachable broker, dead device process, timeout): the previous release stays."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from deployment_fixtures import ThreadDevice, build_release, register_model, wheel_bundle  # noqa: F401
from edge_fixtures import free_port, mosquitto, tiny_models  # noqa: F401
from tagqa_assets.contracts.edge import AUTO_ROLLBACK, DEPLOY, DEPLOYED, FAILED, ROLLBACK, TIMED_OUT
from tagqa_assets.contracts.models import APPROVED, REJECTED
from tagqa_assets.deployment.deployer import DeploymentFailed, deploy_release, roll_back
from tagqa_assets.deployment.device_process import register_device
from tagqa_assets.deployment.history import DeploymentHistory
from tagqa_assets.deployment.local_target import EFFECTIVE_CONFIG, PID_FILE, RUNTIME_CONFIG, LocalDeviceTarget
from tagqa_assets.deployment.resources import DeploymentResource
from tagqa_assets.deployment.targets import TargetNotFound
from tagqa_assets.model_catalog.registry import LocalModelRegistry


@pytest.fixture
def two_releases(local_store, tiny_models, wheel_bundle):
    registry = LocalModelRegistry(local_store)
    a = build_release(local_store, register_model(local_store, registry, tiny_models["a"], "ds1-aaaaaaaa"), wheel_bundle)
    b = build_release(local_store, register_model(local_store, registry, tiny_models["b"], "ds2-bbbbbbbb"), wheel_bundle)
    return registry, a, b


def _target(store, root: Path, port: int, timeout: float = 30.0) -> LocalDeviceTarget:
    return LocalDeviceTarget(store, devices_root=root, device_ids=["line-1"], broker=f"127.0.0.1:{port}",
                             timeout_seconds=timeout)


def _model_dir(root: Path) -> str:
    return json.loads((root / "line-1" / RUNTIME_CONFIG).read_text())["modelDir"]


def test_deploy_installs_like_a_nucleus_swaps_the_running_model_and_rolls_back(
        local_store, two_releases, mosquitto, tmp_path: Path) -> None:
    registry, a, b = two_releases
    root = tmp_path / "devices"
    device = ThreadDevice(root, "line-1", mosquitto.port, tmp_path / "camera")
    target = _target(local_store, root, mosquitto.port)
    try:
        first = deploy_release(target, local_store, registry, a, run_id="run-a")
        assert first.record.status == DEPLOYED and first.record.devices["line-1"]["status"] == DEPLOYED
        packages = root / "line-1" / "packages"
        assert (packages / "recipes" / f"{a.model}.recipe.yaml").is_file()
        model_dir = packages / "artifacts" / a.model.name / a.model.version
        assert json.loads((model_dir / "model_card.json").read_text())["model_version"] == "1"
        wheels = packages / "artifacts-unarchived" / a.inference.name / a.inference.version / "greengrass" / "wheels"
        assert any(w.name.startswith("tagqa-") for w in wheels.glob("*.whl")), "the zip is unpacked like Unarchive: ZIP"
        assert _model_dir(root) == str(model_dir)
        effective = json.loads((root / "line-1" / EFFECTIVE_CONFIG).read_text())
        assert effective["services"][a.model.name]["version"] == "1.0.0"
        assert device.runtime.slot.current.card.model_version == "1"
        assert deploy_release(target, local_store, registry, a, run_id="again").already_deployed

        second = deploy_release(target, local_store, registry, b, run_id="run-b")
        assert second.record.status == DEPLOYED and second.record.replaces == first.record.deployment_id
        assert device.runtime.slot.current.card.model_version == "2"
        assert device.runtime.metrics.model_swaps == 1, "hot swap, not a restart"

        back = roll_back(target, local_store, registry, run_id="cli", reason="scratches missed on line 1")
        assert back.record.kind == ROLLBACK and back.record.release == a
        assert device.runtime.slot.current.card.model_version == "1"
        assert back.marked.version == b.model_version and registry.get(b.model_version).status == REJECTED
        assert "scratches missed" in registry.get(b.model_version).status_reason
        records = DeploymentHistory(local_store).records("local")
        assert [(r.kind, r.release.model_version, r.status) for r in records] == [
            (DEPLOY, 1, DEPLOYED), (DEPLOY, 2, DEPLOYED), (ROLLBACK, 1, DEPLOYED)]
        assert [r.run_id for r in records] == ["run-a", "run-b", "cli"]
    finally:
        device.stop()
    assert device.error is None


def test_an_unknown_device_is_refused_before_anything_is_installed(local_store, two_releases, tmp_path: Path) -> None:
    registry, a, _ = two_releases
    with pytest.raises(TargetNotFound, match=r"local device 'line-1' does not exist.*tagqa edge up"):
        deploy_release(_target(local_store, tmp_path / "devices", free_port()), local_store, registry, a, run_id="r")
    assert not (tmp_path / "devices").exists()
    assert DeploymentHistory(local_store).records("local") == []


def test_an_unreachable_broker_fails_before_the_device_config_changes(local_store, two_releases, tmp_path: Path) -> None:
    registry, a, _ = two_releases
    register_device(tmp_path / "devices", "line-1", broker="127.0.0.1:1")
    with pytest.raises(DeploymentFailed, match=r"before any device changed.*broker .* unreachable"):
        deploy_release(_target(local_store, tmp_path / "devices", free_port()), local_store, registry, a, run_id="r")
    assert not (tmp_path / "devices" / "line-1" / RUNTIME_CONFIG).exists()
    [record] = DeploymentHistory(local_store).records("local")
    assert record.status == FAILED and "unreachable" in record.error
    assert DeploymentHistory(local_store).current("local") is None


def test_a_dead_device_process_fails_fast(local_store, two_releases, mosquitto, tmp_path: Path) -> None:
    registry, a, _ = two_releases
    folder = register_device(tmp_path / "devices", "line-1", broker=mosquitto.address)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (folder / PID_FILE).write_text(gone.stdout)
    with pytest.raises(DeploymentFailed, match=r"is not running .*tagqa edge up"):
        deploy_release(_target(local_store, tmp_path / "devices", mosquitto.port), local_store, registry, a, run_id="r")
    assert not (folder / RUNTIME_CONFIG).exists()


@pytest.mark.slow  # seconds of waiting: in make test, not the quick tier
def test_a_timeout_restores_the_previous_release_and_does_not_blame_the_model(
        local_store, two_releases, mosquitto, tmp_path: Path) -> None:
    registry, a, b = two_releases
    root = tmp_path / "devices"
    device = ThreadDevice(root, "line-1", mosquitto.port, tmp_path / "camera")
    try:
        deploy_release(_target(local_store, root, mosquitto.port), local_store, registry, a, run_id="run-a")
    finally:
        device.stop()  # the device hangs: its process lives on (pid file) but nothing answers
    previous = _model_dir(root)
    with pytest.raises(DeploymentFailed, match=r"timed_out.*no health message.*rolled back to com.tagqa.ScratchModel@1.0.0"):
        deploy_release(_target(local_store, root, mosquitto.port, timeout=1.5), local_store, registry, b, run_id="run-b")
    assert _model_dir(root) == previous, "the device configuration points at the previous model again"
    records = DeploymentHistory(local_store).records("local")
    assert [(r.kind, r.status) for r in records] == [(DEPLOY, DEPLOYED), (DEPLOY, TIMED_OUT), (AUTO_ROLLBACK, TIMED_OUT)]
    assert DeploymentHistory(local_store).current("local").release == a, "nothing half-deployed counts as deployed"
    assert registry.get(b.model_version).status == APPROVED, "a silent device says nothing about the model"


def test_a_bad_device_configuration_is_refused_before_it_reaches_a_device(local_store, two_releases,
                                                                          tmp_path: Path) -> None:
    registry, a, _ = two_releases
    register_device(tmp_path / "devices", "line-1", broker="127.0.0.1:1")
    target = LocalDeviceTarget(local_store, devices_root=tmp_path / "devices", device_ids=["line-1"],
                               broker="127.0.0.1:1", device_configuration={"confTreshold": 0.3})
    with pytest.raises(DeploymentFailed, match=r"unknown key 'confTreshold'"):
        deploy_release(target, local_store, registry, a, run_id="r")
    assert not (tmp_path / "devices" / "line-1" / RUNTIME_CONFIG).exists()


@pytest.mark.parametrize("settings, message", [
    # A target kind that does not exist.
    ({"target": "ftp"}, r"unknown deployment target 'ftp'"),
    # TAGQA_DEVICE_CONFIGURATION must be a JSON object of configuration keys.
    ({"device_configuration": "[1, 2]"}, r"must be a JSON object"),
    ({"device_configuration": "{source:"}, r"not valid JSON"),
    # The Greengrass target needs its thing group ARN.
    ({"target": "greengrass"}, r"TAGQA_GREENGRASS_TARGET_ARN"),
])
def test_bad_deployment_settings_are_named(local_store, settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeploymentResource(**settings).open_target(local_store, greengrass=object(), iot=object())
