"""Training: the whole model chain on a small synthetic version, offline and isolated; config validation."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from edge_runtime.contracts import ModelCard
from model_fixtures import Chain, build_version, materialization, trained_chain
from tagqa_assets.contracts.models import (
    COMMIT_FILE,
    CURVES_CSV_FILE,
    CURVES_PNG_FILE,
    METRICS_FILE,
    MODEL_CARD_FILE,
    ONNX_FILE,
    PENDING,
    TRAINING_CONFIG_FILE,
    TRAINING_SUMMARY_FILE,
    WEIGHTS_FILE,
    model_key,
    new_model_id,
)
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.training.assets import TrainingConfig
from tagqa_trainer.entrypoint import BadTrainingInput, write_data_yaml
from tagqa_trainer.offline import NetworkGuard
from tagqa_trainer.params import TrainingParams

REPO = Path(__file__).resolve().parents[1]
SESSION_START = time.time()


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return trained_chain(tmp_path_factory)


def test_chain_trains_exports_evaluates_and_registers(chain: Chain):
    assert chain.result.success
    trained = materialization(chain.result, "trained_model")
    assert chain.model_id.startswith(chain.version + "-") and len(chain.model_id) == len(chain.version) + 9
    assert trained["epochs_completed"] == 2 and trained["backend"] == "local"
    assert trained["network_attempts_blocked"] == 0
    assert "data:image/png;base64," in trained["training_curves"]
    for name in (WEIGHTS_FILE, TRAINING_CONFIG_FILE, CURVES_CSV_FILE, CURVES_PNG_FILE, TRAINING_SUMMARY_FILE,
                 ONNX_FILE, MODEL_CARD_FILE, METRICS_FILE, COMMIT_FILE):
        assert chain.store.exists(model_key(chain.model_id, name)), name
    assert chain.store.get_bytes(model_key(chain.model_id, CURVES_PNG_FILE)).startswith(b"\x89PNG")
    assert len(chain.store.get_bytes(model_key(chain.model_id, CURVES_CSV_FILE)).decode().splitlines()) == 3
    config = chain.store.get_json(model_key(chain.model_id, TRAINING_CONFIG_FILE))
    assert (config["epochs"], config["imgsz"], config["architecture"]) == (2, 64, "yolov8n.yaml")


def test_model_card_matches_the_exported_onnx(chain: Chain):
    card = ModelCard.from_dict(chain.store.get_json(model_key(chain.model_id, MODEL_CARD_FILE)))
    import hashlib

    assert card.onnx_sha256 == hashlib.sha256(chain.store.get_bytes(model_key(chain.model_id, ONNX_FILE))).hexdigest()
    assert (card.model_id, card.dataset_version, card.imgsz, card.class_names) == (chain.model_id, chain.version, 64, ("scratch",))
    assert card.opset >= 12 and card.model_version is None
    exported = materialization(chain.result, "onnx_model")
    assert exported["input_shape"] == "[1, 3, 64, 64]" and exported["opset"] == card.opset


def test_commit_record_is_written_last(chain: Chain):
    folder = Path(chain.store.uri_for(model_key(chain.model_id, COMMIT_FILE))).parent
    record = chain.store.get_json(model_key(chain.model_id, COMMIT_FILE))
    commit = (folder / COMMIT_FILE).stat().st_mtime_ns
    assert METRICS_FILE in record["files"] or (folder / METRICS_FILE).is_file()
    assert all(commit >= (folder / name).stat().st_mtime_ns for name in [*record["files"], METRICS_FILE])
    assert record["metrics"]["test"].keys() == {"map50", "map50_95", "precision", "recall"}
    assert record["files"][ONNX_FILE] == json.loads(
        chain.store.get_bytes(model_key(chain.model_id, MODEL_CARD_FILE)))["onnx_sha256"]
    assert set(record["code_versions"]) == {"trained_model", "onnx_model", "model_evaluation"}


def test_epochs_stream_into_the_run_log(chain: Chain):
    messages = [entry.user_message for entry in chain.instance.all_logs(chain.result.run_id)]
    assert any("epoch 1/2" in m and "box_loss" in m for m in messages)
    assert any("epoch 2/2" in m for m in messages)


def test_ultralytics_stays_offline_and_out_of_home(chain: Chain):
    settings = json.loads((chain.root / "work" / "ultralytics" / "Ultralytics" / "settings.json").read_text())
    for integration in ("mlflow", "wandb", "comet", "clearml", "tensorboard", "dvc", "raytune", "sync"):
        assert settings[integration] is False, integration
    # Other model tests reuse this settings folder with their own work folders, so the
    # runs folder is checked for where it must never be: the home folder or the repository.
    runs_dir = Path(settings["runs_dir"]).resolve()
    assert not runs_dir.is_relative_to(Path.home()) and not runs_dir.is_relative_to(REPO), runs_dir
    assert not (REPO / "runs").exists(), "Ultralytics wrote ./runs into the repository"
    home_settings = Path.home() / ".config" / "Ultralytics" / "settings.json"
    assert not home_settings.exists() or home_settings.stat().st_mtime < SESSION_START


def test_model_is_registered_pending_without_a_champion(chain: Chain):
    entries = LocalModelRegistry(chain.store).list_versions()
    assert [(e.version, e.model_id, e.status) for e in entries] == [(1, chain.model_id, PENDING)]
    entry = entries[0]
    assert entry.dataset_version == chain.version and "no champion" in entry.status_reason
    assert entry.code_version == "unknown" or len(entry.code_version) == 40
    assert entry.training_config["epochs"] == 2 and len(entry.config_sha256) == 64
    assert Path(entry.artifacts["onnx"]).is_file() and Path(entry.artifacts["model_card"]).is_file()


def test_model_ids_are_unique_per_run_and_name_the_version():
    config = TrainingParams(epochs=2).to_dict()
    first, second = new_model_id("v0001-abcdef12", config, "run-a"), new_model_id("v0001-abcdef12", config, "run-b")
    assert first != second and first.startswith("v0001-abcdef12-")
    assert new_model_id("v0001-abcdef12", config, "run-a") == first


@pytest.mark.parametrize(
    "values, message",
    [
        ({"epochs": 0}, "epochs must be >= 1"),  # a run that cannot train
        ({"imgsz": 100}, "multiple of 32"),  # YOLO's stride; the ONNX input must match the card
        ({"warm_start": "latest"}, "warm_start must be one of"),  # only the champion is a defined start
        ({"warm_start": "champion", "base_weights": "a.pt"}, "not both"),  # ambiguous start
        ({"base_weights": "weights.onnx"}, ".pt checkpoint"),  # Ultralytics trains from .pt only
        ({"integrations": ("neptune",)}, "unknown integrations"),  # typo must not silently stay off
        ({"overrides": {"data": "/elsewhere.yaml"}}, "overrides may not set"),  # would bypass the dataset version
        ({"overrides": {"epochs": 3}}, "overrides may not set"),  # two sources for one setting
        ({"fraction": 0}, "fraction must be in"),  # zero training images
    ],
)
def test_invalid_training_configs_are_refused_naming_the_field(values: dict, message: str):
    with pytest.raises(ValueError, match=message):
        TrainingParams(**values)


def test_unknown_config_keys_are_refused():
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainingParams.from_dict({"epoch": 3})


def test_dagster_config_overrides_are_json_values():
    params = TrainingConfig(overrides={"mosaic": "0.5", "close_mosaic": "0", "cos_lr": "true", "optimizer_note": "x"}).params()
    assert params.overrides == {"mosaic": 0.5, "close_mosaic": 0, "cos_lr": True, "optimizer_note": "x"}
    assert params.ultralytics_args()["mosaic"] == 0.5 and params.ultralytics_args()["plots"] is False


def test_data_yaml_is_written_from_folders_when_the_export_has_none(tmp_path: Path):
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "images" / split / "a.jpg").write_bytes(b"x")
    target = write_data_yaml(tmp_path, tmp_path / "out" / "data.yaml", ("scratch",))
    import yaml

    data = yaml.safe_load(target.read_text())
    assert data == {"train": "images/train", "val": "images/val", "names": {0: "scratch"}, "path": str(tmp_path)}
    with pytest.raises(BadTrainingInput, match="no data.yaml"):
        write_data_yaml(tmp_path, tmp_path / "out" / "again.yaml")


def test_data_yaml_refuses_a_split_without_images(tmp_path: Path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "images" / "train" / "a.jpg").write_bytes(b"x")
    (tmp_path / "images" / "val").mkdir(parents=True)
    with pytest.raises(BadTrainingInput, match="'val' split has no images"):
        write_data_yaml(tmp_path, tmp_path / "data.yaml", ("scratch",))


def test_network_guard_refuses_remote_lookups_but_not_loopback():
    guard = NetworkGuard()
    guard.enabled = True
    try:
        with pytest.raises(PermissionError, match="network access refused"):
            socket.getaddrinfo("ultralytics.com", 443)
        socket.getaddrinfo("127.0.0.1", 80)
    finally:
        guard.enabled = False
    assert guard.attempts == ["lookup ultralytics.com"]


def test_build_version_helper_fills_every_split(tmp_path: Path):
    from tagqa_assets.datasets.versions import DatasetVersionStore
    from tagqa_assets.storage import LocalObjectStore

    store = LocalObjectStore(tmp_path / "store")
    record = DatasetVersionStore(store).read(build_version(store, 10, seed=3))
    assert all(count >= 2 for count in record.counts.values()) and sum(record.counts.values()) == 10
