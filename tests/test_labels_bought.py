"""What each round of labeling bought: labels spent since a model's parent and the gain, in the registry."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from model_fixtures import build_version, materialization, materialize_chain, resources
from tagqa_assets.contracts.datasets import dataset_version_name
from tagqa_assets.contracts.keys import raw_key
from tagqa_assets.contracts.labels import LabelRecord
from tagqa_assets.contracts.models import APPROVED, COMMIT_FILE, PENDING, ModelRecord, ModelVersion, model_key
from tagqa_assets.datasets.assets import hard_examples
from tagqa_assets.datasets.build import build_dataset_version
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.ingestion.synthetic import generate_tags
from tagqa_assets.labeling.label_store import LocalLabelStore
from tagqa_assets.labeling.resources import LabelStoreResource
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.storage import LocalObjectStore, StoreResource
from tagqa_assets.training.lineage import CHAMPION, WARM_START, ModelParent, labels_since, model_parent, since_parent


def commit(store: LocalObjectStore, model_id: str, dataset_version: str) -> None:
    """A committed model directory as far as lineage reads it (its commit record)."""
    record = ModelRecord(model_id=model_id, dataset_version=dataset_version, created_at="2026-01-01T00:00:00Z",
                         run_id="test", class_names=("scratch",), imgsz=64, training_config={}, config_sha256="0" * 64,
                         code_versions={}, git_sha="unknown", files={}, metrics={}, opset=17)
    store.put_json(model_key(model_id, COMMIT_FILE), record.to_dict())


def register(registry: LocalModelRegistry, model_id: str, status: str) -> ModelVersion:
    return registry.register(ModelVersion(
        version=0, model_id=model_id, dataset_version=model_id.rsplit("-", 1)[0], status=status, created_at="",
        metrics={}, training_config={}, config_sha256="0" * 64, code_version="unknown", artifacts={}))


def test_the_parent_is_the_warm_start_source_else_the_champion(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    registry = LocalModelRegistry(store)
    assert model_parent(store, registry, "v0001-aaaaaaaa-11111111", {}) is None  # the first model has none
    for model_id, status in [("v0001-aaaaaaaa-11111111", APPROVED), ("v0002-bbbbbbbb-22222222", APPROVED),
                             ("v0003-cccccccc-33333333", PENDING)]:
        commit(store, model_id, model_id.rsplit("-", 1)[0])
        register(registry, model_id, status)
    # From scratch: the champion (newest Approved) when it was evaluated.
    parent = model_parent(store, registry, "v0004-dddddddd-44444444", {"start_weights": ""})
    assert (parent.model_id, parent.version, parent.dataset_version, parent.via) == (
        "v0002-bbbbbbbb-22222222", 2, "v0002-bbbbbbbb", CHAMPION)
    # Warm-started: the model whose weights it started from, as the training config names it
    # (started_from, or a start_weights key in the store), even when that is not the champion.
    for config in ({"started_from": {"kind": "champion", "champion_model_id": "v0001-aaaaaaaa-11111111"}},
                   {"start_weights": "models/v0001-aaaaaaaa-11111111/weights/best.pt"}):
        parent = model_parent(store, registry, "v0004-dddddddd-44444444", config)
        assert (parent.model_id, parent.version, parent.via) == ("v0001-aaaaaaaa-11111111", 1, WARM_START)
    # A checkpoint outside the store says nothing about lineage: back to the champion.
    assert model_parent(store, registry, "v0004-dddddddd-44444444", {"start_weights": "/tmp/x.pt"}).via == CHAMPION
    # A registered champion re-evaluated is not its own parent: the Approved version before it is.
    assert model_parent(store, registry, "v0002-bbbbbbbb-22222222", {}).model_id == "v0001-aaaaaaaa-11111111"


def test_labels_since_count_added_and_relabeled_images(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    first = build_version(store, 10, seed=21)
    second = build_version(store, 5, seed=22)  # 5 more labeled images
    # Relabel one image of the first version (other boxes, newer event): it costs a label too.
    labels = LocalLabelStore(store)
    old = labels.snapshot().frame.iloc[0]
    labels.append([LabelRecord(source_ref=old["image_key"], image_sha256=old["sha256"], image_width=int(old["width"]),
                               image_height=int(old["height"]), annotations=(), event_time=old["event_time"] + 10,
                               labeling_job="relabel")])
    snapshot = labels.snapshot()
    third = dataset_version_name(3, snapshot.snapshot_id)
    build_dataset_version(store, snapshot, third, ratios={"train": 0.6, "val": 0.2, "test": 0.2})
    images = {v: len(DatasetVersionStore(store).manifest(v)) for v in (first, second, third)}
    assert labels_since(store, first, None) == {"labels_spent": images[first], "labels_added": images[first],
                                                "labels_relabeled": 0, "labels_since": None}
    assert labels_since(store, second, first) == {"labels_spent": 5, "labels_added": 5, "labels_relabeled": 0,
                                                  "labels_since": first}
    assert labels_since(store, third, first) == {"labels_spent": 6, "labels_added": 5, "labels_relabeled": 1,
                                                 "labels_since": first}
    # A parent trained on a dataset this store does not have: every label of the version counts.
    assert labels_since(store, second, "v0009-0badf00d")["labels_spent"] == images[second]


def test_gains_are_differences_on_the_same_images():
    parent = ModelParent("v0001-aaaaaaaa-11111111", 1, "v0001-aaaaaaaa", CHAMPION)
    labels = {"labels_spent": 30, "labels_added": 30, "labels_relabeled": 0, "labels_since": "v0001-aaaaaaaa"}
    since = since_parent(parent, labels, {"map50": 0.80, "map50_95": 0.50}, {"map50": 0.75, "map50_95": 0.52},
                         {"map50": 0.6, "map50_95": 0.3}, {"map50": 0.4, "map50_95": 0.2})
    assert since["test_gain"] == {"map50": 0.05, "map50_95": -0.02}
    assert since["hard_gain"] == {"map50": 0.2, "map50_95": 0.1}
    assert (since["parent"], since["parent_version"], since["via"], since["labels_spent"]) == (parent.model_id, 1, CHAMPION, 30)
    # The first model: gain over no model; no hard-example set: no hard-example gain.
    first = since_parent(None, labels, {"map50": 0.8, "map50_95": 0.5}, None, None, None)
    assert first["test_gain"] == {"map50": 0.8, "map50_95": 0.5} and first["hard_gain"] is None and first["via"] == "none"
    # A parent without hard-example figures gives no hard-example gain rather than a made-up one.
    assert since_parent(parent, labels, {"map50": 0.8, "map50_95": 0.5}, None, {"map50": 0.6, "map50_95": 0.3},
                        None)["hard_gain"] is None


def _hard_example_set(store: LocalObjectStore, count: int) -> None:
    """Labeled edge-feedback images (their true boxes) and the hard_examples asset over them."""
    keys, records = [], []
    for tag in generate_tags(count, seed=91, prefix="captured"):
        now = datetime.now(timezone.utc)
        key = raw_key("edge-feedback/line-1", f"{now:%Y%m%dT%H%M%S%f}Z-{tag.name}", now)
        store.put_bytes(key, tag.jpeg)
        keys.append(key)
        records.append(LabelRecord(source_ref=key, image_sha256=hashlib.sha256(tag.jpeg).hexdigest(),
                                   image_width=tag.width, image_height=tag.height, annotations=tag.annotations,
                                   event_time=now.timestamp(), labeling_job="operator-review"))
    ingest_keys(store, keys, run_id="captured")
    LocalLabelStore(store).append(records)
    dg.materialize([hard_examples], resources={"store": StoreResource(root=str(store.root)), "labels": LabelStoreResource()})


@pytest.mark.slow  # trains two tiny models
def test_two_versions_two_models_record_labels_spent_and_gain(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    registry = LocalModelRegistry(store)
    instance = dg.DagsterInstance.ephemeral()
    first_version = build_version(store, 20, seed=31)
    _hard_example_set(store, 4)
    lenient = resources(store.root, tmp_path / "work", gate_threshold=0.0, champion_margin=-1.0,
                        approve_without_champion=True)
    first = materialize_chain(instance, first_version, lenient)
    first_id = materialization(first, "trained_model")["model_id"]
    first_eval = store.get_json(materialization(first, "model_evaluation")["evaluation_key"])
    entry = registry.find_model(first_id)
    assert entry.status == APPROVED  # the champion the second model starts from
    first_images = len(DatasetVersionStore(store).manifest(first_version))
    hard = first_eval["hard_examples"]["challenger"]
    assert entry.since_parent == {
        "parent": None, "parent_version": None, "via": "none", "labels_spent": first_images,
        "labels_added": first_images, "labels_relabeled": 0, "labels_since": None,
        "test_gain": {name: first_eval["metrics"]["test"][name] for name in ("map50", "map50_95")},
        "hard_gain": {name: hard[name] for name in ("map50", "map50_95")},
    }

    # One round of labeling: 8 more images, a new version, a model warm-started from the champion.
    second_version = build_version(store, 8, seed=32)
    second = materialize_chain(instance, second_version, lenient, training={"warm_start": "champion"})
    second_id = materialization(second, "trained_model")["model_id"]
    evaluation = store.get_json(materialization(second, "model_evaluation")["evaluation_key"])
    since = registry.find_model(second_id).since_parent
    assert (since["parent"], since["parent_version"], since["via"]) == (first_id, entry.version, WARM_START)
    # Spent since the parent's version: the 8 new images and the 4 labeled captures (feedback
    # images join the next dataset version like any other labeled image).
    assert (since["labels_spent"], since["labels_added"], since["labels_since"]) == (12, 12, first_version)
    # The gain is measured on the second version's test split and the hard examples, parent vs child.
    ours, theirs = evaluation["metrics"]["test"], evaluation["champion"]["metrics"]["test"]
    assert since["test_gain"] == {name: round(ours[name] - theirs[name], 4) for name in ("map50", "map50_95")}
    hard = evaluation["hard_examples"]
    assert since["hard_gain"] == {name: round(hard["challenger"][name] - hard["parent"][name], 4) for name in ("map50", "map50_95")}

    # The registry entry's page in the UI: labels spent, gains as numbers, and one row per round.
    metadata = materialization(second, "registered_model")
    assert metadata["labels_spent"] == 12 and metadata["parent_model"].startswith(f"v{entry.version} {first_id}")
    assert metadata["test_map50_95_gain"] == since["test_gain"]["map50_95"]
    assert metadata["hard_examples_map50_gain"] == since["hard_gain"]["map50"]
    rounds = [row.data for row in metadata["labeling_rounds"].records]
    assert [(row["dataset_version"], row["parent"], row["labels_spent"]) for row in rounds] == [
        (first_version, "none", first_images), (second_version, f"v{entry.version}", 12)]
