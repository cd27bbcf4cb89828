"""Shared pieces of the model-stage tests: dataset versions built by the real pipeline, resources, runs.

``build_version`` goes the way production data goes (raw images -> ingestion -> label store
-> approved snapshot -> ``build_dataset_version``), with synthetic tags whose boxes are
exact. ``TINY`` is a training configuration small enough for CI (2 cores, no GPU).
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg

from tagqa_assets.contracts.datasets import dataset_version_name
from tagqa_assets.contracts.keys import raw_key
from tagqa_assets.contracts.labels import LabelRecord
from tagqa_assets.datasets.build import build_dataset_version
from tagqa_assets.datasets.split import split_for
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.ingestion.synthetic import generate_tags
from tagqa_assets.labeling.label_store import LocalLabelStore
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.registry.assets import registered_model
from tagqa_assets.registry.checks import beats_champion, promotion_gate
from tagqa_assets.registry.policy import PromotionPolicyResource
from tagqa_assets.storage import LocalObjectStore, ObjectStore, StoreResource
from tagqa_assets.training.assets import onnx_model, trained_model
from tagqa_assets.training.checks import onnx_parity
from tagqa_assets.training.evaluation_asset import model_evaluation
from tagqa_assets.training.lineage import HANDOFF_IO_MANAGER, ModelHandoffIOManager
from tagqa_assets.training.resources import TrainingBackendResource

TINY = {"epochs": 2, "imgsz": 64, "batch": 8, "workers": 0, "patience": 100}
TEST_RATIOS = {"train": 0.6, "val": 0.2, "test": 0.2}
CHAIN = [trained_model, onnx_model, onnx_parity, model_evaluation, promotion_gate, beats_champion, registered_model]


def pick_tags(count: int, *, seed: int, ratios: dict[str, float], defects: tuple[str, ...] = ("scratch",)) -> list:
    """``count`` synthetic tags, at least a fifth of them (>= 2) in each split with a positive ratio.

    Splits follow the content hash, so a small random set can leave a split empty by chance;
    picking from a larger pool keeps the tests independent of that luck.
    """
    per_split = {split: max(2, count // 5) for split, ratio in ratios.items() if ratio > 0 and split != "train"}
    per_split["train"] = count - sum(per_split.values())
    chosen, taken = [], dict.fromkeys(per_split, 0)
    for tag in generate_tags(count * 6, seed=seed, prefix=f"t{seed}", defects=defects):
        split = split_for(hashlib.sha256(tag.jpeg).hexdigest(), ratios)
        if taken.get(split, 0) < per_split.get(split, 0):
            taken[split] += 1
            chosen.append(tag)
    assert taken == per_split, f"seed {seed}: could not fill the splits {per_split} (got {taken})"
    return chosen


def build_version(store: ObjectStore, count: int, *, seed: int, ratios: dict[str, float] | None = None,
                  defects: tuple[str, ...] = ("scratch",), labeling_job: str = "test") -> str:
    """Add ``count`` labeled synthetic images (with the ``defects`` kinds; the taxonomy in
    ``TAGQA_DEFECT_CLASSES`` must list them; labels from ``labeling_job``) to the store and commit
    the next dataset version."""
    ratios = ratios or TEST_RATIOS
    keys, records = [], []
    for tag in pick_tags(count, seed=seed, ratios=ratios, defects=defects):
        now = datetime.now(timezone.utc)
        key = raw_key("camera-test", f"{now:%H%M%S%f}-{tag.name}", now)
        store.put_bytes(key, tag.jpeg)
        keys.append(key)
        records.append(LabelRecord(
            source_ref=key, image_sha256=hashlib.sha256(tag.jpeg).hexdigest(), image_width=tag.width,
            image_height=tag.height, annotations=tag.annotations, event_time=now.timestamp(), labeling_job=labeling_job,
        ))
    ingest_keys(store, keys, run_id=f"test-{seed}")
    labels = LocalLabelStore(store)
    labels.append(records)
    snapshot = labels.snapshot()
    sequence = len(DatasetVersionStore(store).list_versions()) + 1
    version = dataset_version_name(sequence, snapshot.snapshot_id)
    build_dataset_version(store, snapshot, version, ratios=ratios)
    return version


def resources(store_root: Path, work: Path, **policy: object) -> dict[str, object]:
    """Resources for the model assets: a local store and registry, scratch under ``work``."""
    return {
        "store": StoreResource(root=str(store_root)),
        "training_backend": TrainingBackendResource(work_dir=str(work)),
        "model_registry": ModelRegistryResource(),
        "promotion_policy": PromotionPolicyResource(**{name: str(value) for name, value in policy.items()}),
        HANDOFF_IO_MANAGER: ModelHandoffIOManager(),
    }


def run_config(selection: list, training: dict | None = None, parity_conf: float = 0.01) -> dict:
    """Run config for the selected part of the chain: training config, parity check threshold."""
    ops: dict = {}
    if trained_model in selection:
        ops["trained_model"] = {"config": {**TINY, **(training or {})}}
    if onnx_parity in selection:
        ops["onnx_model_onnx_parity"] = {"config": {"conf": parity_conf}}
    return {"ops": ops}


def materialize_chain(instance: dg.DagsterInstance, version: str, resources_: dict, *, training: dict | None = None,
                      selection: list | None = None, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
    """One run of the model chain (or ``selection`` of it) for ``version``, like one partition of a backfill."""
    if not instance.has_dynamic_partition(dataset_versions.name, version):
        instance.add_dynamic_partitions(dataset_versions.name, [version])
    selection = selection or CHAIN
    assets = [item for item in selection if isinstance(item, dg.AssetsDefinition) and not isinstance(item, dg.AssetChecksDefinition)]
    checks = [item for item in selection if isinstance(item, dg.AssetChecksDefinition)]
    # Exactly the listed checks: selecting an asset would otherwise bring all of its checks along.
    chosen = dg.AssetSelection.assets(*assets).without_checks() | dg.AssetSelection.checks(*checks)
    return dg.materialize(
        CHAIN, selection=chosen, partition_key=version, instance=instance, resources=resources_,
        run_config=run_config(selection, training), raise_on_error=raise_on_error,
    )


@dataclass(frozen=True)
class Chain:
    """One finished run of the whole model chain on a small synthetic dataset version."""

    instance: dg.DagsterInstance
    store: ObjectStore
    root: Path
    version: str
    model_id: str
    result: dg.ExecuteInProcessResult
    ultralytics_imported_by_run: bool = False  # the chain's run imported Ultralytics into this process

    def resources(self, **policy: object) -> dict[str, object]:
        """Resources over the same store and scratch folder."""
        return resources(self.root / "store", self.root / "work", **policy)


_CHAINS: dict[str, Chain] = {}


def trained_chain(tmp_path_factory) -> Chain:
    """Train, export, check, evaluate and register once per test session (shared by the test files)."""
    if "chain" not in _CHAINS:
        root = tmp_path_factory.mktemp("model-chain")
        store = LocalObjectStore(root / "store")
        version = build_version(store, 30, seed=11)
        instance = dg.DagsterInstance.ephemeral()
        loaded_before = "ultralytics" in sys.modules
        result = materialize_chain(instance, version, resources(root / "store", root / "work", gate_threshold=0.0))
        model_id = materialization(result, "trained_model")["model_id"]
        imported = not loaded_before and "ultralytics" in sys.modules
        _CHAINS["chain"] = Chain(instance, store, root, version, model_id, result, imported)
    return _CHAINS["chain"]


def materialization(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, object]:
    """Metadata values of ``asset``'s materialization in ``result``."""
    events = result.asset_materializations_for_node(asset)
    assert events, f"{asset} was not materialized"
    return {key: getattr(value, "value", value) for key, value in events[-1].metadata.items()}


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, object]:
    """Asset check evaluations of a run by check name."""
    return {
        event.event_specific_data.check_name: event.event_specific_data
        for event in result.all_events if event.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def step_failure(result: dg.ExecuteInProcessResult, step: str) -> str:
    """The error message (with its cause chain) of a failed step."""
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE" and event.step_key == step:
            return event.event_specific_data.error.to_string()
    raise AssertionError(f"step {step} did not fail")
