"""The model registry: local (in the store) and SageMaker Model Registry (moto's server), the CLI, the champion."""

from __future__ import annotations

import shutil
from pathlib import Path

import boto3
import pytest

from edge_runtime.detector import Thresholds
from model_fixtures import Chain, trained_chain
from tagqa_assets.cli import main
from tagqa_assets.contracts.models import APPROVED, PENDING, REJECTED, ModelVersion
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.labeling.backends.base import ImageRef
from tagqa_assets.model_catalog.registry import EVENTS_PREFIX, LocalModelRegistry, ModelRegistry, UnknownModelVersion
from tagqa_assets.model_catalog.sagemaker import SageMakerModelRegistry, to_properties
from tagqa_assets.registry.champion import predict_boxes
from tagqa_assets.storage import LocalObjectStore


def candidate(model_id: str, status: str = PENDING, map50_95: float = 0.5) -> ModelVersion:
    return ModelVersion(
        version=0, model_id=model_id, dataset_version=model_id.rsplit("-", 1)[0], status=status, created_at="",
        metrics={"test": {"map50": 0.9, "map50_95": map50_95, "precision": 0.8, "recall": 0.7}},
        training_config={"epochs": 60, "imgsz": 480, "overrides": {}}, config_sha256="ab" * 32,
        code_version="c0ffee" * 6 + "abcd", artifacts={"onnx": f"s3://bucket/tagqa/models/{model_id}/model.onnx"},
        status_reason="gate passed",
    )


@pytest.fixture(params=["local", "sagemaker"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> ModelRegistry:
    if request.param == "local":
        return LocalModelRegistry(LocalObjectStore(tmp_path / "store"))
    endpoint = request.getfixturevalue("moto_endpoint")
    client = boto3.client("sagemaker", endpoint_url=endpoint, region_name="us-east-1")
    return SageMakerModelRegistry(client, f"tagqa-test-{tmp_path.name[-20:].replace('_', '-')}")


def test_versions_increment_and_keep_their_links(registry: ModelRegistry):
    first = registry.register(candidate("v0001-aaaaaaaa-11111111"))
    second = registry.register(candidate("v0002-bbbbbbbb-22222222", status=APPROVED))
    assert (first.version, second.version) == (1, 2)
    listed = registry.list_versions()
    assert [(e.version, e.model_id, e.status) for e in listed] == [
        (1, "v0001-aaaaaaaa-11111111", PENDING), (2, "v0002-bbbbbbbb-22222222", APPROVED)]
    entry = registry.get(1)
    assert entry.metrics["test"]["map50_95"] == 0.5 and entry.training_config == {"epochs": 60, "imgsz": 480, "overrides": {}}
    assert entry.dataset_version == "v0001-aaaaaaaa" and entry.code_version.startswith("c0ffee")
    assert entry.artifacts["onnx"].endswith("/model.onnx") and entry.created_at
    assert registry.find_model("v0002-bbbbbbbb-22222222").version == 2 and registry.find_model("nope") is None


def test_approval_and_rejection_move_the_champion(registry: ModelRegistry):
    assert registry.champion() is None
    registry.register(candidate("v0001-aaaaaaaa-11111111"))
    registry.register(candidate("v0002-bbbbbbbb-22222222"))
    registry.set_status(1, APPROVED, "looked good")
    assert registry.champion().version == 1
    approved = registry.set_status(2, APPROVED, "better on the line")
    assert approved.status == APPROVED and approved.status_reason == "better on the line"
    assert registry.champion().version == 2
    registry.set_status(2, REJECTED, "false alarms on shiny tags")
    assert registry.champion().version == 1
    # Approval must not lose what the version is linked to.
    assert registry.get(2).metrics["test"]["map50"] == 0.9 and registry.get(2).model_id == "v0002-bbbbbbbb-22222222"


def test_what_the_labels_bought_travels_with_the_version(registry: ModelRegistry):
    # Long but realistic values: SageMaker keeps each metadata value within 256 characters.
    since = {"parent": "v01234-0123abcd-89abcdef", "parent_version": 12345, "via": "warm start",
             "labels_spent": 123456, "labels_added": 123000, "labels_relabeled": 456, "labels_since": "v01233-0123abcd",
             "test_gain": {"map50": -0.1234, "map50_95": -0.1234}, "hard_gain": {"map50": -0.1234, "map50_95": 0.1234}}
    registry.register(ModelVersion.from_dict({**candidate("v0001-aaaaaaaa-11111111").to_dict(), "since_parent": since}))
    registry.register(candidate("v0002-bbbbbbbb-22222222"))  # registered before labels and gains were tracked
    assert registry.get(1).since_parent == since
    assert registry.get(2).since_parent == {}
    registry.set_status(1, APPROVED, "ok")
    assert registry.get(1).since_parent == since  # approval keeps it


def test_cli_lists_labels_spent_and_gain(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    store = LocalObjectStore(tmp_path / "store")
    monkeypatch.setenv("TAGQA_STORE", str(store.root))
    monkeypatch.setenv("TAGQA_REGISTRY_BACKEND", "local")
    monkeypatch.chdir(tmp_path)
    registry = LocalModelRegistry(store)
    registry.register(candidate("v0001-aaaaaaaa-11111111"))
    registry.register(ModelVersion.from_dict({**candidate("v0002-bbbbbbbb-22222222").to_dict(), "since_parent": {
        "parent": "v0001-aaaaaaaa-11111111", "parent_version": 1, "via": "champion", "labels_spent": 30,
        "test_gain": {"map50": 0.02, "map50_95": 0.031}, "hard_gain": None}}))
    assert main(["models", "list"]) == 0
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split()[7:9] == ["labels", "gain_map50_95"]
    assert first.split()[7:9] == ["-", "-"] and second.split()[7:9] == ["30", "+0.031"]


def test_unknown_versions_and_statuses_are_refused(registry: ModelRegistry):
    registry.register(candidate("v0001-aaaaaaaa-11111111"))
    with pytest.raises(UnknownModelVersion, match="no model version 9"):
        registry.get(9)
    with pytest.raises(ValueError, match="is not one of"):
        registry.set_status(1, "Deployed")


def test_local_registry_writes_an_event_per_change(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    registry = LocalModelRegistry(store)
    registry.register(candidate("v0001-aaaaaaaa-11111111"))
    registry.set_status(1, APPROVED, "ok")
    events = [store.get_json(i.key) for i in store.list_objects(EVENTS_PREFIX)]
    assert [(e["event"], e["status"]) for e in events] == [("registered", PENDING), ("status", APPROVED)]


def test_sagemaker_packages_carry_the_metadata(moto_endpoint: str):
    client = boto3.client("sagemaker", endpoint_url=moto_endpoint, region_name="us-east-1")
    registry = SageMakerModelRegistry(client, "tagqa-metadata-test")
    entry = registry.register(candidate("v0001-aaaaaaaa-11111111"))
    described = client.describe_model_package(ModelPackageName=entry.external_id)
    assert described["ModelPackageGroupName"] == "tagqa-metadata-test"
    assert described["ModelApprovalStatus"] == PENDING
    props = described["CustomerMetadataProperties"]
    assert props["tagqa.model_id"] == "v0001-aaaaaaaa-11111111" and props["tagqa.metric.test.map50_95"] == "0.5"
    assert props["tagqa.config.imgsz"] == "480" and props["tagqa.artifact.onnx"].startswith("s3://")
    registry.set_status(entry.version, APPROVED, "approved in a test")
    assert client.describe_model_package(ModelPackageName=entry.external_id)["ModelApprovalStatus"] == APPROVED


def test_sagemaker_metadata_limits_are_enforced():
    long_uri = "s3://bucket/" + "x" * 300
    entry = ModelVersion.from_dict({**candidate("v0001-aaaaaaaa-11111111").to_dict(), "artifacts": {"onnx": long_uri}})
    with pytest.raises(ValueError, match="artifact.onnx"):
        to_properties(entry)


def test_cli_lists_approves_and_rejects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    store = LocalObjectStore(tmp_path / "store")
    monkeypatch.setenv("TAGQA_STORE", str(store.root))
    monkeypatch.setenv("TAGQA_REGISTRY_BACKEND", "local")
    monkeypatch.chdir(tmp_path)
    assert main(["models", "list"]) == 0
    assert "no registered model versions" in capsys.readouterr().out
    registry = LocalModelRegistry(store)
    registry.register(candidate("v0001-aaaaaaaa-11111111"))
    registry.register(candidate("v0002-bbbbbbbb-22222222"))
    assert main(["models", "approve", "1", "--reason", "checked on the line"]) == 0
    assert "is now Approved" in capsys.readouterr().out
    assert main(["models", "reject", "2"]) == 0
    capsys.readouterr()
    assert main(["models", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["version", "status", "model_id"]
    assert lines[1].split()[:2] == ["1*", APPROVED] and lines[2].split()[:2] == ["2", REJECTED]
    assert registry.get(1).status_reason == "checked on the line"
    assert main(["models", "approve", "7"]) == 2


def test_cli_speaks_to_sagemaker(tmp_path: Path, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture):
    group = "tagqa-cli-test"
    SageMakerModelRegistry(boto3.client("sagemaker", endpoint_url=moto_endpoint, region_name="us-east-1"), group).register(
        candidate("v0001-aaaaaaaa-11111111"))
    for key, value in {"TAGQA_STORE": str(tmp_path / "store"), "TAGQA_REGISTRY_BACKEND": "sagemaker",
                       "TAGQA_SAGEMAKER_ENDPOINT_URL": moto_endpoint, "TAGQA_SAGEMAKER_MODEL_PACKAGE_GROUP": group}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    assert main(["models", "approve", "1"]) == 0
    assert main(["models", "list", "--json"]) == 0
    assert '"status": "Approved"' in capsys.readouterr().out


@pytest.fixture
def chain_copy(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Chain:
    """The session chain's store copied, so approvals here do not leak into other tests."""
    chain = trained_chain(tmp_path_factory)
    shutil.copytree(chain.root / "store", tmp_path / "store")
    return Chain(chain.instance, LocalObjectStore(tmp_path / "store"), tmp_path, chain.version, chain.model_id, chain.result)


def test_predict_boxes_is_empty_without_a_champion(chain_copy: Chain):
    ref = ImageRef("raw/x.jpg", "0" * 64, 450, 300, "raw/x.jpg")
    assert predict_boxes(chain_copy.store, [ref], registry=LocalModelRegistry(chain_copy.store)) == {}


def test_predict_boxes_uses_the_champion(chain_copy: Chain):
    registry = LocalModelRegistry(chain_copy.store)
    registry.set_status(1, APPROVED, "champion for the test")
    assert registry.champion().model_id == chain_copy.model_id
    manifest = DatasetVersionStore(chain_copy.store).manifest(chain_copy.version).head(3)
    refs = [ImageRef(row.image_key, row.sha256, row.width, row.height, row.image_key) for row in manifest.itertuples()]
    predictions = predict_boxes(chain_copy.store, refs, registry=registry, thresholds=Thresholds(conf=0.001, iou=0.7,
                                                                                                 max_detections=5))
    assert set(predictions) == {ref.key for ref in refs}
    boxes = [a for annotations in predictions.values() for a in annotations]
    assert boxes, "an untrained model still proposes boxes at conf 0.001"
    assert all(0 <= a.left <= 450 and 0 <= a.top <= 300 and a.width >= 0 and a.height >= 0 for a in boxes)


def test_predict_boxes_names_an_undecodable_image(chain_copy: Chain):
    registry = LocalModelRegistry(chain_copy.store)
    registry.set_status(1, APPROVED)
    chain_copy.store.put_bytes("raw/camera-1/2026/01/01/broken.jpg", b"not a jpeg")
    ref = ImageRef("raw/camera-1/2026/01/01/broken.jpg", "0" * 64, 450, 300, "")
    with pytest.raises(ValueError, match="broken.jpg: cannot decode image"):
        predict_boxes(chain_copy.store, [ref], registry=registry)


def test_the_registry_resource_builds_its_client_once_and_names_unknown_backends(local_store):
    from tagqa_assets.model_catalog.resources import REGISTRY_BACKENDS, ModelRegistryResource

    resource = ModelRegistryResource(backend="sagemaker", aws_region="us-east-1")
    first, second = resource.open(local_store), resource.open(local_store)
    assert isinstance(first, SageMakerModelRegistry) and first.client is second.client
    assert isinstance(ModelRegistryResource(backend="").open(local_store), LocalModelRegistry)  # unset: local
    assert REGISTRY_BACKENDS == ("local", "sagemaker")
    with pytest.raises(ValueError, match=r"unknown registry backend 'sagemkaer'; use one of \('local', 'sagemaker'\)"):
        ModelRegistryResource(backend="sagemkaer").open(local_store)
