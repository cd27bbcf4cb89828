"""Retraining a set of dataset versions with a changed config (one run per partition, as a backfill
launches them): new models beside the old ones, champion/challenger on each version's test split."""

from __future__ import annotations

import hashlib
from pathlib import Path

import dagster as dg
import pytest

from model_fixtures import CHAIN, build_version, materialization, materialize_chain, resources
from tagqa_assets.contracts.keys import MODELS_PREFIX
from tagqa_assets.contracts.models import APPROVED, PENDING
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.storage import LocalObjectStore
from tagqa_assets.training.checks import onnx_parity

pytestmark = pytest.mark.slow  # trains several models


# The parity check has its own tests; leaving it out here saves a PyTorch process per run.
WITHOUT_PARITY = [item for item in CHAIN if item is not onnx_parity]


def digests(store: LocalObjectStore) -> dict[str, str]:
    return {info.key: hashlib.sha256(store.get_bytes(info.key)).hexdigest() for info in store.list_objects(MODELS_PREFIX)}


def test_backfill_with_changed_config_keeps_older_models(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    first_version = build_version(store, 12, seed=51)
    second_version = build_version(store, 12, seed=52)
    assert DatasetVersionStore(store).read(second_version).parent == first_version
    versions = [first_version, second_version]
    instance = dg.DagsterInstance.ephemeral()
    policy = resources(store.root, tmp_path / "work", gate_threshold=0.0)

    before = {v: materialization(materialize_chain(instance, v, policy, training={"epochs": 1}, selection=WITHOUT_PARITY), "trained_model")["model_id"]
              for v in versions}
    registry = LocalModelRegistry(store)
    registry.set_status(1, APPROVED, "first champion")
    old_files = digests(store)

    # The backfill: both partitions again with another config. The second version's run uses
    # a negative margin ("not worse by more than 1.0"), so its challenger is approved automatically.
    changed = {"epochs": 2, "imgsz": 96}
    first_run = materialize_chain(instance, first_version, policy, training={**changed, "warm_start": "champion"},
                                  selection=WITHOUT_PARITY)
    second_run = materialize_chain(instance, second_version,
                                   resources(store.root, tmp_path / "work", gate_threshold=0.0, champion_margin=-1.0),
                                   training=changed, selection=WITHOUT_PARITY)
    after = {first_version: materialization(first_run, "trained_model")["model_id"],
             second_version: materialization(second_run, "trained_model")["model_id"]}

    for version in versions:
        assert after[version] != before[version] and after[version].startswith(version + "-")
    # The first version's retraining started from the champion's weights (a warm start).
    champion_weights = f"models/{before[first_version]}/weights/best.pt"
    assert materialization(first_run, "trained_model")["start_weights"] == champion_weights
    assert store.get_json(f"models/{after[first_version]}/training_config.json")["start_weights"] == champion_weights
    # Which champion it started from is recorded in the training config, the model card the device gets,
    # and (through the commit record) the registry entry's lineage; a run from scratch says so.
    started = {"kind": "champion", "champion_version": 1, "champion_model_id": before[first_version],
               "weights": champion_weights}
    assert store.get_json(f"models/{after[first_version]}/training_config.json")["started_from"] == started
    assert store.get_json(f"models/{after[first_version]}/model_card.json")["started_from"] == started
    assert materialization(first_run, "trained_model")["started_from"] == f"champion v1 ({before[first_version]})"
    assert all(digests(store)[key] == digest for key, digest in old_files.items()), "a backfill rewrote an older model"
    entries = registry.list_versions()
    assert [(e.model_id, e.dataset_version, e.training_config["epochs"], e.training_config["imgsz"]) for e in entries] == [
        (before[first_version], first_version, 1, 64), (before[second_version], second_version, 1, 64),
        (after[first_version], first_version, 2, 96), (after[second_version], second_version, 2, 96)]

    # Champion/challenger: each challenger was compared with champion v1 on its own test split.
    evaluation = materialization(first_run, "model_evaluation")
    assert evaluation["champion_version"] == 1 and "champion_test_map50_95" in evaluation
    assert [e.status for e in entries] == [APPROVED, PENDING, PENDING, APPROVED]
    assert "does not beat champion v1" in entries[2].status_reason
    assert entries[2].training_config["started_from"] == started
    assert entries[3].training_config["started_from"]["kind"] == "scratch"
    assert "beats champion v1" in entries[3].status_reason
    assert registry.champion().version == 4
