"""Where a training run starts: the architecture, a given checkpoint, or the champion's weights."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from tagqa_assets.contracts.models import WEIGHTS_FILE, model_key
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.model_catalog.registry import ModelRegistry
from tagqa_assets.storage import ObjectStore
from tagqa_trainer.params import TrainingParams

# The fine-tuning schedule of a warm start (benchmarks/warm_start.py measured it, docs/benchmarks.md):
# AdamW at a tenth of the learning rate Ultralytics' "auto" picks for a from-scratch run (at 0.001
# the fine-tuned model fell below its champion), no warm-up epochs (their bias warm-up at lr 0.1
# would undo the champion's head), mosaic off for the last 3.
FINE_TUNE_OPTIMIZER = "AdamW"
FINE_TUNE_LR0 = 0.0002
FINE_TUNE_OVERRIDES = {"warmup_epochs": 0, "close_mosaic": 3}


def fine_tune_config(epochs: int) -> dict[str, Any]:
    """``trained_model``'s config fields for a warm start from the champion with ``epochs`` epochs."""
    return {"warm_start": "champion", "epochs": epochs, "optimizer": FINE_TUNE_OPTIMIZER, "lr0": FINE_TUNE_LR0,
            "overrides": {name: str(value) for name, value in FINE_TUNE_OVERRIDES.items()}}


def fine_tune_params(base: TrainingParams, epochs: int) -> TrainingParams:
    """``base`` with the fine-tuning schedule (start weights given separately, as a checkpoint path)."""
    return TrainingParams.from_dict({**base.to_dict(), "epochs": epochs, "optimizer": FINE_TUNE_OPTIMIZER,
                                     "lr0": FINE_TUNE_LR0, "overrides": {**base.overrides, **FINE_TUNE_OVERRIDES}})


@dataclass(frozen=True)
class StartPoint:
    """Where a run starts: ``weights`` (store key or local path, ``""`` = the architecture) and, for a
    warm start, the champion it came from (recorded in the training config, model card and registry)."""

    weights: str = ""
    champion_version: int | None = None
    champion_model_id: str | None = None
    note: str = ""

    def lineage(self) -> dict[str, Any]:
        """``started_from`` as the training config and the model card record it."""
        if self.champion_model_id:
            return {"kind": "champion", "champion_version": self.champion_version,
                    "champion_model_id": self.champion_model_id, "weights": self.weights}
        return {"kind": "checkpoint" if self.weights else "scratch", "weights": self.weights, "note": self.note}


def resolve_start_weights(params: TrainingParams, store: ObjectStore, registry: ModelRegistry, log: Any) -> str:
    """A store key or absolute local path of the ``.pt`` to start from, or ``""`` for the architecture.

    ``base_weights`` may be a local path, a URI inside the store (``s3://bucket/prefix/...``
    or the local store's folder) or a store key; ``warm_start="champion"`` takes the
    champion's ``weights/best.pt`` and falls back to the architecture, with a warning, when
    there is no champion yet. Raises ``dg.Failure`` naming a checkpoint that does not exist.
    """
    return start_point(params, store, registry, log).weights


def start_point(params: TrainingParams, store: ObjectStore, registry: ModelRegistry, log: Any,
                class_names: tuple[str, ...] | None = None) -> StartPoint:
    """``resolve_start_weights`` with the champion it names; a warm start also falls back to the
    architecture, with a warning saying why, when the champion was trained with another
    architecture or (``class_names`` given) on another taxonomy than this dataset version's."""
    if params.base_weights:
        return StartPoint(_locate(params.base_weights, store))
    if params.warm_start != "champion":
        return StartPoint()
    champion = registry.champion()
    if champion is None:
        log.warning("warm_start=champion but no model version is Approved yet: training from the architecture")
        return StartPoint(note="warm start asked, no champion yet")
    architecture = champion.training_config.get("architecture", params.architecture)
    if architecture != params.architecture:
        log.warning(f"warm_start=champion but champion v{champion.version} is a {architecture}, this run a "
                    f"{params.architecture}: training from the architecture")
        return StartPoint(note=f"warm start asked, champion v{champion.version} has another architecture")
    if class_names is not None:
        champion_classes = _champion_classes(store, champion.dataset_version)
        if champion_classes is not None and tuple(champion_classes) != tuple(class_names):
            log.warning(f"warm_start=champion but champion v{champion.version} detects {list(champion_classes)}, "
                        f"this dataset version has {list(class_names)}: training from the architecture")
            return StartPoint(note=f"warm start asked, champion v{champion.version} has another taxonomy")
    key = model_key(champion.model_id, WEIGHTS_FILE)
    log.info(f"warm start from champion v{champion.version} ({champion.model_id})")
    return StartPoint(_locate(key, store), champion.version, champion.model_id)


def _champion_classes(store: ObjectStore, dataset_version: str) -> tuple[str, ...] | None:
    versions = DatasetVersionStore(store)
    return versions.read(dataset_version).class_names if versions.is_committed(dataset_version) else None


def _locate(reference: str, store: ObjectStore) -> str:
    root = store.uri.rstrip("/") + "/"
    if reference.startswith(root):
        reference = reference[len(root) :]
    elif reference.startswith("s3://"):
        raise dg.Failure(f"base_weights {reference!r} is not inside the store {store.uri}")
    path = Path(reference).expanduser()
    if path.is_absolute():
        if not path.is_file():
            raise dg.Failure(f"base_weights {reference!r}: no such file")
        return str(path)
    if store.exists(reference):
        return reference
    if path.is_file():  # a relative path to a local file
        return str(path.resolve())
    raise dg.Failure(f"base_weights {reference!r}: no such object in the store {store.uri} and no such local file")
