"""Where training starts: the architecture, a given checkpoint (path, store URI, store key) or the champion."""

from __future__ import annotations

import logging
from pathlib import Path

import dagster as dg
import pytest

from tagqa_assets.contracts.models import APPROVED, ModelVersion
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.storage import LocalObjectStore
from tagqa_assets.training.start_weights import resolve_start_weights, start_point
from tagqa_trainer.params import TrainingParams

LOG = logging.getLogger("test")


@pytest.fixture
def store(tmp_path: Path) -> LocalObjectStore:
    store = LocalObjectStore(tmp_path / "store")
    store.put_bytes("models/m1/weights/best.pt", b"checkpoint")
    return store


def test_from_scratch_by_default(store: LocalObjectStore):
    assert resolve_start_weights(TrainingParams(), store, LocalModelRegistry(store), LOG) == ""


@pytest.mark.parametrize(
    "reference, expected",
    [
        ("models/m1/weights/best.pt", "models/m1/weights/best.pt"),  # a store key
        ("{root}/models/m1/weights/best.pt", "models/m1/weights/best.pt"),  # the store's own address of it
    ],
)
def test_base_weights_in_the_store(store: LocalObjectStore, reference: str, expected: str):
    params = TrainingParams(base_weights=reference.format(root=store.uri))
    assert resolve_start_weights(params, store, LocalModelRegistry(store), LOG) == expected


def test_base_weights_as_a_local_file(store: LocalObjectStore, tmp_path: Path):
    checkpoint = tmp_path / "pretrained.pt"
    checkpoint.write_bytes(b"x")
    assert resolve_start_weights(TrainingParams(base_weights=str(checkpoint)), store, LocalModelRegistry(store), LOG) == str(checkpoint)


@pytest.mark.parametrize(
    "reference, message",
    [
        ("/nowhere/pretrained.pt", "no such file"),  # absolute path that does not exist
        ("models/none/weights/best.pt", "no such object in the store"),  # key that does not exist
        ("s3://another-bucket/x.pt", "not inside the store"),  # the trainer only reads the store
    ],
)
def test_missing_base_weights_are_named(store: LocalObjectStore, reference: str, message: str):
    with pytest.raises(dg.Failure, match=message):
        resolve_start_weights(TrainingParams(base_weights=reference), store, LocalModelRegistry(store), LOG)


def test_warm_start_takes_the_champion_or_falls_back(store: LocalObjectStore, caplog: pytest.LogCaptureFixture):
    registry = LocalModelRegistry(store)
    params = TrainingParams(warm_start="champion")
    with caplog.at_level(logging.WARNING):
        assert resolve_start_weights(params, store, registry, LOG) == ""
    assert "no model version is Approved" in caplog.text
    registry.register(ModelVersion(0, "m1", "v0001-aaaaaaaa", APPROVED, "", {}, {}, "", "unknown", {}))
    assert resolve_start_weights(params, store, registry, LOG) == "models/m1/weights/best.pt"


def _champion(store: LocalObjectStore, architecture: str = "yolov8n.yaml", classes: tuple[str, ...] = ("scratch",)) -> LocalModelRegistry:
    from tagqa_assets.contracts.datasets import DatasetRecord
    from tagqa_assets.contracts.keys import dataset_prefix

    version = "v0001-aaaaaaaa"
    record = DatasetRecord(version, None, "", "a" * 64, classes, {"train": 1.0}, {}, {}, "")
    store.put_json(dataset_prefix(version) + "dataset.json", record.to_dict())
    registry = LocalModelRegistry(store)
    registry.register(ModelVersion(0, "m1", version, APPROVED, "", {}, {"architecture": architecture}, "", "unknown", {}))
    return registry


def test_a_warm_start_names_its_champion(store: LocalObjectStore):
    started = start_point(TrainingParams(warm_start="champion"), store, _champion(store), LOG, class_names=("scratch",))
    assert started.lineage() == {"kind": "champion", "champion_version": 1, "champion_model_id": "m1",
                                 "weights": "models/m1/weights/best.pt"}
    assert start_point(TrainingParams(), store, _champion(store), LOG).lineage()["kind"] == "scratch"


@pytest.mark.parametrize(
    "architecture, classes, why",
    [
        ("yolov8s.yaml", ("scratch",), "another architecture"),  # weights of another network do not fit
        ("yolov8n.yaml", ("scratch", "dent"), "another taxonomy"),  # the head has another class count/meaning
    ],
)
def test_a_warm_start_falls_back_to_scratch_for_another_network(store: LocalObjectStore, architecture, classes, why):
    registry = _champion(store, architecture, classes)
    started = start_point(TrainingParams(warm_start="champion"), store, registry, LOG, class_names=("scratch",))
    assert started.weights == "" and why in started.note and started.lineage()["kind"] == "scratch"


def test_automatic_retraining_profile_fine_tunes_only_when_set():
    from tagqa_assets.training.resources import TrainingProfileResource

    assert TrainingProfileResource().run_config() == {}
    config = TrainingProfileResource(warm_start="champion", warm_epochs=7, imgsz=320).run_config()["ops"]["trained_model"]["config"]
    assert config["warm_start"] == "champion" and config["epochs"] == 7 and config["imgsz"] == 320
    assert config["optimizer"] == "AdamW" and config["overrides"] == {"warmup_epochs": "0", "close_mosaic": "3"}
    with pytest.raises(ValueError, match="TAGQA_RETRAIN_WARM_START"):
        TrainingProfileResource(warm_start="latest").run_config()
