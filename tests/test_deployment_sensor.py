"""model_approval_sensor: one deployment run per approval, cursor semantics, and end to end from an
approval through the sensor's run request to a model serving on a device."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import boto3
import dagster as dg
import pytest

from deployment_fixtures import ThreadDevice, register_model, wheel_bundle  # noqa: F401
from edge_fixtures import mosquitto, tiny_models  # noqa: F401
from tagqa_assets.cli import main as tagqa
from tagqa_assets.contracts.models import APPROVED, PENDING, REJECTED, ModelVersion
from tagqa_assets.deployment.assets import edge_component, edge_deployment
from tagqa_assets.deployment.resources import DeploymentResource
from tagqa_assets.deployment.sensors import model_approval_sensor
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.model_catalog.sagemaker import SageMakerModelRegistry
from tagqa_assets.storage import LocalObjectStore, StoreResource


def test_the_code_location_runs_registry_to_component_to_deployment() -> None:
    from tagqa_assets.definitions import defs as load_definitions

    defs = load_definitions()
    graph = defs.resolve_asset_graph()
    assert graph.get(edge_component.key).parent_keys == {dg.AssetKey("registered_model")}
    assert graph.get(edge_deployment.key).parent_keys == {edge_component.key}
    assert {graph.get(k).group_name for k in (edge_component.key, edge_deployment.key)} == {"deployment"}
    assert defs.resolve_sensor_def("model_approval_sensor").default_status == dg.DefaultSensorStatus.RUNNING


def _tick(root: Path, cursor: str | None) -> dg.SensorResult:
    context = dg.build_sensor_context(cursor=cursor, resources={"store": StoreResource(root=str(root)),
                                                                "model_registry": ModelRegistryResource()})
    return model_approval_sensor(context)


def test_each_approval_of_the_champion_requests_one_deployment(local_store, tiny_models) -> None:
    root, registry = Path(local_store.uri), LocalModelRegistry(local_store)
    empty = _tick(root, None)
    assert not empty.run_requests and "no newly approved" in empty.skip_reason.skip_message
    register_model(local_store, registry, tiny_models["a"], "m1", status=APPROVED)
    register_model(local_store, registry, tiny_models["a"], "m2", status=APPROVED)
    register_model(local_store, registry, tiny_models["a"], "m3", status=PENDING)
    first = _tick(root, empty.cursor)
    # Two versions are newly approved at once: only the champion is deployed (no run storm).
    [request] = first.run_requests
    assert request.run_key == "model-v2-approval-1"
    assert request.run_config == {"ops": {"edge_component": {"config": {"model_version": 2}}}}
    [target] = model_approval_sensor.targets
    assert set(target.resolvable_to_job.selection.selected_keys) == {edge_component.key, edge_deployment.key}
    again = _tick(root, first.cursor)
    assert not again.run_requests and again.cursor == first.cursor
    # The newcomer's first model waits for a person: the skip reason says what to run.
    assert "version 3 waits for a person: tagqa models approve 3" in again.skip_reason.skip_message

    registry.set_status(3, APPROVED, "approved by QA")  # as `tagqa models approve 3` or the SageMaker console
    [request] = _tick(root, again.cursor).run_requests
    assert request.run_key == "model-v3-approval-1" and request.tags["tagqa/model_version"] == "3"


def test_an_older_version_approved_after_a_newer_one_is_not_deployed(local_store, tiny_models) -> None:
    root, registry = Path(local_store.uri), LocalModelRegistry(local_store)
    register_model(local_store, registry, tiny_models["a"], "m1", status=PENDING)
    register_model(local_store, registry, tiny_models["a"], "m2", status=APPROVED)
    cursor = _tick(root, None).cursor
    registry.set_status(1, APPROVED)
    late = _tick(root, cursor)
    assert not late.run_requests and "version 2 is newer" in late.skip_reason.skip_message


def test_a_version_rejected_and_approved_again_is_deployed_again(local_store, tiny_models) -> None:
    root, registry = Path(local_store.uri), LocalModelRegistry(local_store)
    register_model(local_store, registry, tiny_models["a"], "m1", status=APPROVED)
    first = _tick(root, None)
    registry.set_status(1, REJECTED, "refused by line-1")  # what a failed deployment does
    rejected = _tick(root, first.cursor)
    assert not rejected.run_requests
    registry.set_status(1, APPROVED, "fixed")
    [request] = _tick(root, rejected.cursor).run_requests
    assert request.run_key == "model-v1-approval-2", "a new run key, so Dagster does not drop it as a duplicate"


def test_an_approval_in_the_sagemaker_console_requests_a_deployment(local_store, moto_endpoint: str) -> None:
    client = boto3.client("sagemaker", endpoint_url=moto_endpoint, region_name="us-east-1")
    group = f"tagqa-sensor-{uuid.uuid4().hex[:8]}"
    entry = SageMakerModelRegistry(client, group).register(ModelVersion(
        version=0, model_id="ds1-aaaaaaaa", dataset_version="ds1", status=PENDING, created_at="", metrics={},
        training_config={}, config_sha256="0" * 64, code_version="unknown", artifacts={}))
    resources = {"store": StoreResource(root=local_store.uri), "model_registry": ModelRegistryResource(
        backend="sagemaker", sagemaker_model_package_group=group, sagemaker_endpoint_url=moto_endpoint)}
    cursor = model_approval_sensor(dg.build_sensor_context(resources=resources)).cursor
    # What the console does: only the approval status changes, none of tagqa's metadata.
    client.update_model_package(ModelPackageArn=entry.external_id, ModelApprovalStatus="Approved")
    [request] = model_approval_sensor(dg.build_sensor_context(cursor=cursor, resources=resources)).run_requests
    assert request.run_key == f"model-v{entry.version}-approval-1"


def test_broken_cursor_is_an_error_not_a_silent_restart(local_store) -> None:
    with pytest.raises(Exception, match="unknown shape"):
        _tick(Path(local_store.uri), json.dumps({"v": 99}))


def test_approval_through_the_cli_reaches_a_running_device(tmp_path: Path, tiny_models, wheel_bundle, mosquitto,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    store_root = tmp_path / "store"
    store = LocalObjectStore(store_root)
    registry = LocalModelRegistry(store)
    register_model(store, registry, tiny_models["a"], "ds1-aaaaaaaa", status=PENDING)
    monkeypatch.setenv("TAGQA_STORE", str(store_root))
    monkeypatch.setenv("TAGQA_REGISTRY_BACKEND", "local")
    monkeypatch.chdir(tmp_path)  # relative defaults and ./tagqa.env: keep the checkout out of the test
    cursor = _tick(store_root, None).cursor
    assert tagqa(["models", "approve", "1", "--reason", "looks good"]) == 0
    [request] = _tick(store_root, cursor).run_requests

    device = ThreadDevice(tmp_path / "devices", "line-1", mosquitto.port, tmp_path / "camera")
    resources = {
        "store": StoreResource(root=str(store_root)), "model_registry": ModelRegistryResource(),
        "deployment": DeploymentResource(devices_root=str(tmp_path / "devices"), mqtt_broker=mosquitto.address,
                                         timeout_seconds=30, edge_wheels_dir=str(wheel_bundle.directory)),
    }
    try:
        result = dg.materialize([edge_component, edge_deployment], run_config=request.run_config,
                                resources=resources, instance=dg.DagsterInstance.ephemeral(), tags=request.tags)
        assert result.success
        assert device.runtime.slot.current.card.model_version == "1"
    finally:
        device.stop()
    built = result.asset_materializations_for_node("edge_component")[0].metadata
    assert built["model_component"].value == "com.tagqa.ScratchModel@1.0.0"
    assert built["inference_component"].value == "com.tagqa.EdgeInference@0.1.0"
    deployed = result.asset_materializations_for_node("edge_deployment")[0].metadata
    assert deployed["status"].value == "deployed" and deployed["target"].value == "local"
    history = [record.data for record in deployed["history"].value.records]
    assert any(row["kind"] == "deploy" and str(row["model_version"]) == "1" and row["status"] == "deployed"
               and row["components"] == "com.tagqa.ScratchModel@1.0.0 + com.tagqa.EdgeInference@0.1.0" for row in history)
