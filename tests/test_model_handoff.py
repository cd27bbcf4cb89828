"""The model id travels from asset to asset through the ``model_handoff`` IO manager, not "the latest".

The race this guards against: a backfill run and a sensor run work on the same dataset
version; the sensor run's ``trained_model`` finishes after the backfill's but before the
backfill's ``onnx_model`` starts. Reading "the latest materialization" the backfill would
export, evaluate and register the sensor run's model. Here the sensor run is started at
exactly that moment (from inside the backfill's input loading), and the backfill must go
on with the model it trained itself.

Training itself is replaced by a backend that hands back the session's trained checkpoint
(training is not what is under test; export, evaluation and registration are real).
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from model_fixtures import CHAIN, Chain, build_version, materialization, resources, run_config, trained_chain
from tagqa_assets.contracts.models import WEIGHTS_FILE, model_key
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.registry.checks import beats_champion
from tagqa_assets.storage import LocalObjectStore, ObjectStore
from tagqa_assets.training.assets import trained_model
from tagqa_assets.training.backends import TrainingBackend, TrainingJob, TrainingOutcome, read_outcome
from tagqa_assets.training.checks import onnx_parity
from tagqa_assets.training.lineage import HANDOFF_IO_MANAGER, ModelHandoffIOManager, handoff_value
from tagqa_assets.training.resources import TrainingBackendResource
from tagqa_trainer import entrypoint


class CheckpointBackend(TrainingBackend):
    """Hands back a fixed checkpoint as the outcome of any job, in the entry point's output layout."""

    name = "checkpoint"

    def __init__(self, weights: Path, work_root: Path) -> None:
        self.weights = weights
        self.work_root = work_root

    def train(self, job: TrainingJob, store: ObjectStore, *, on_epoch: Any, log: logging.Logger) -> TrainingOutcome:
        output = self.work_root / "runs" / job.model_id / "output"
        (output / "weights").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.weights, output / entrypoint.BEST_WEIGHTS)
        record = {"epoch": 1, "epochs": 1, "seconds": 0.1, "box_loss": 1.0, "map50": 0.5, "map50_95": 0.3}
        (output / entrypoint.EPOCHS_FILE).write_text(json.dumps(record) + "\n")
        (output / entrypoint.SUMMARY_FILE).write_text(json.dumps(
            {"epochs_completed": 1, "best_epoch": 1, "train_seconds": 0.1, "final": record, "best": record}))
        return read_outcome(output)


class CheckpointBackendResource(TrainingBackendResource):
    """``training_backend`` whose runs return ``weights`` (the session's trained checkpoint)."""

    weights: str

    def build(self) -> TrainingBackend:
        return CheckpointBackend(Path(self.weights), self.work_root())


class SensorRunInterleaves(ModelHandoffIOManager):
    """The real handoff, except that the first time a run loads ``trained_model`` another run
    (the "sensor run") trains the same partition to completion first."""

    def load_input(self, context: dg.InputContext) -> str:
        if context.asset_key == dg.AssetKey("trained_model") and "sensor_run" not in RACE:
            RACE["sensor_run"] = dg.materialize(
                CHAIN, selection=dg.AssetSelection.assets("trained_model"), partition_key=context.asset_partition_key,
                instance=context.instance, resources=RACE["resources"], run_config=run_config([trained_model]),
                tags={"tagqa/trigger": "new dataset version"},
            )
        return super().load_input(context)


RACE: dict[str, Any] = {}


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    return trained_chain(tmp_path_factory)


def test_a_backfill_keeps_its_own_model_when_a_sensor_run_trains_the_same_partition(chain: Chain, tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    version = build_version(store, 30, seed=11)
    weights = tmp_path / "checkpoint.pt"
    chain.store.download_file(model_key(chain.model_id, WEIGHTS_FILE), weights)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(dataset_versions.name, [version])
    plain = {**resources(store.root, tmp_path / "work", gate_threshold=0.0, approve_without_champion="true"),
             "training_backend": CheckpointBackendResource(work_dir=str(tmp_path / "work"), weights=str(weights))}
    RACE.clear()
    RACE["resources"] = plain
    racing = {**plain, HANDOFF_IO_MANAGER: SensorRunInterleaves()}
    chosen = dg.AssetSelection.assets(*[a for a in CHAIN if not isinstance(a, dg.AssetChecksDefinition)]).without_checks() \
        | dg.AssetSelection.checks(*[c for c in CHAIN if isinstance(c, dg.AssetChecksDefinition) and c not in (onnx_parity, beats_champion)])
    backfill = dg.materialize(CHAIN, selection=chosen, partition_key=version, instance=instance, resources=racing,
                              run_config=run_config([trained_model]), tags={"dagster/backfill": "race"})
    assert backfill.success
    ours = materialization(backfill, "trained_model")["model_id"]
    theirs = materialization(RACE["sensor_run"], "trained_model")["model_id"]
    assert ours != theirs
    # The race was real: by the time the backfill went on, the latest trained_model was the sensor run's.
    assert handoff_value(instance, dg.AssetKey("trained_model"), version, None) == theirs
    for asset in ("onnx_model", "model_evaluation", "registered_model"):
        assert materialization(backfill, asset)["model_id"] == ours, f"{asset} took another run's model"
    (entry,) = LocalModelRegistry(store).list_versions()
    assert entry.model_id == ours


def test_a_missing_upstream_is_named(chain: Chain):
    with pytest.raises(dg.Failure, match="onnx_model has no materialization for dataset version v9999-00000000"):
        handoff_value(chain.instance, dg.AssetKey("onnx_model"), "v9999-00000000", None)
