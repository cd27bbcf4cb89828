"""How the model assets of one dataset-version partition hand each other their outputs.

``trained_model`` and ``onnx_model`` output the ``model_id`` they worked on and
``model_evaluation`` the key of its evaluation document; the ``model_handoff`` IO manager
passes that value to the next asset (and to the checks on it):

- when the upstream step ran in the same run (or in the run this one re-executes), the
  value that run produced: a backfill and a sensor run on one partition each continue
  with their own model, whichever finished training last;
- when the upstream asset is not part of the run (only a downstream asset re-runs), the
  latest materialization's value for the partition.

The value travels in the materialization's metadata (``handoff``), so the event log is the
only place it is kept and the UI shows it.

A model's parent (``model_parent``) is the model it is measured against to say what the labels
since then bought (``labels_since``): the registered model it was warm-started from, else the
champion when it was evaluated; the first model has none.
"""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from tagqa_assets.contracts.keys import MODELS_PREFIX
from tagqa_assets.contracts.models import APPROVED, ModelVersion
from tagqa_assets.datasets.build import diff_manifests
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.model_catalog.model_files import is_committed, read_model_record
from tagqa_assets.model_catalog.registry import ModelRegistry
from tagqa_assets.storage import ObjectStore

WARM_START = "warm start"
CHAMPION = "champion"

MODEL_ID = "model_id"
HANDOFF = "handoff"
HANDOFF_IO_MANAGER = "model_handoff"


class ModelHandoffIOManager(dg.ConfigurableIOManager):
    """Hands a model asset's output value (an id or a store key) to the next asset of the same partition."""

    def handle_output(self, context: dg.OutputContext, obj: str) -> None:
        """Record ``obj`` in the materialization's metadata; ``dg.Failure`` for an empty or non-text value."""
        if not isinstance(obj, str) or not obj:
            raise dg.Failure(f"{context.asset_key.to_user_string()} handed off {obj!r}; expected a non-empty id")
        context.add_output_metadata({HANDOFF: obj})

    def load_input(self, context: dg.InputContext) -> str:
        """The upstream value for this partition: from the producing run when known, else the latest."""
        return handoff_value(context.instance, context.asset_key, context.asset_partition_key, _producing_run(context))


def _producing_run(context: dg.InputContext) -> str | None:
    """The run whose step produced the input, or ``None`` when the upstream asset is not part of this run."""
    upstream = context.upstream_output
    if upstream is None:
        return None
    try:
        run_id = upstream.run_id
    except dg.DagsterInvariantViolationError:
        return None
    # For an upstream asset outside the run Dagster builds a stand-in context whose run id
    # names no run (``__EPHEMERAL_RUN_ID``).
    return run_id if context.instance.has_run(run_id) else None


def handoff_value(instance: dg.DagsterInstance, asset: dg.AssetKey, partition: str, run_id: str | None) -> str:
    """The ``handoff`` value ``asset`` recorded for ``partition`` in run ``run_id`` (``None``: the latest run).

    Raises ``dg.Failure`` naming the asset, partition (and run) when there is none.
    """
    name = asset.to_user_string()
    if run_id is None:
        result = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[partition]), limit=1)
        materializations = [record.asset_materialization for record in result.records]
        where = f"for dataset version {partition}; materialize it first"
    else:
        records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
        materializations = [
            m for m in (record.event_log_entry.asset_materialization for record in records)
            if m is not None and m.asset_key == asset and m.partition == partition
        ][-1:]
        where = f"for dataset version {partition} in run {run_id}"
    if not materializations:
        raise dg.Failure(f"{name} has no materialization {where}")
    value = materializations[0].metadata.get(HANDOFF)
    text = getattr(value, "value", value)
    if not isinstance(text, str) or not text:
        raise dg.Failure(f"the {name} materialization {where} records no {HANDOFF}")
    return text


@contextmanager
def staged_dataset(store: ObjectStore, version: str, scratch: Path) -> Iterator[Path]:
    """The YOLO export of ``version`` in a private scratch folder, removed afterwards."""
    folder = scratch / "dataset"
    try:
        yield DatasetVersionStore(store).stage_yolo(version, folder).parent
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclass(frozen=True)
class ModelParent:
    """The model another one is measured against: its id, registry version (``None`` if not
    registered), dataset version, and ``via`` (``"warm start"`` or ``"champion"``)."""

    model_id: str
    version: int | None
    dataset_version: str
    via: str


def warm_start_source(training_config: dict[str, Any]) -> str | None:
    """The model id whose weights a training run started from, when they came from a model in the store.

    Reads ``started_from.champion_model_id`` when the run recorded it, else a ``start_weights``
    store key ``models/<model_id>/...``; ``None`` for a run from the architecture or a local file.
    """
    started = training_config.get("started_from")
    if isinstance(started, dict) and started.get("champion_model_id"):
        return str(started["champion_model_id"])
    weights = str(training_config.get("start_weights") or "")
    if weights.startswith(MODELS_PREFIX) and "/" in weights[len(MODELS_PREFIX):]:
        return weights[len(MODELS_PREFIX):].split("/", 1)[0]
    return None


def model_parent(store: ObjectStore, registry: ModelRegistry, model_id: str, training_config: dict[str, Any],
                 versions: list[ModelVersion] | None = None) -> ModelParent | None:
    """``model_id``'s parent: the committed model it was warm-started from, else the newest Approved
    version other than itself (registered before it, when it is registered); ``None`` when there is none."""
    versions = registry.list_versions() if versions is None else versions
    by_model = {entry.model_id: entry for entry in versions}
    source = warm_start_source(training_config)
    if source and source != model_id and is_committed(store, source):
        entry = by_model.get(source)
        dataset_version = entry.dataset_version if entry else read_model_record(store, source).dataset_version
        return ModelParent(source, entry.version if entry else None, dataset_version, WARM_START)
    own = by_model.get(model_id)
    approved = [entry for entry in versions if entry.status == APPROVED and entry.model_id != model_id
                and (own is None or entry.version < own.version)]
    if not approved:
        return None
    champion = approved[-1]
    return ModelParent(champion.model_id, champion.version, champion.dataset_version, CHAMPION)


def labels_since(store: ObjectStore, version: str, parent_version: str | None) -> dict[str, Any]:
    """Labeled images of dataset ``version`` that ``parent_version`` lacked (``labels_added``) or
    labeled otherwise (``labels_relabeled``); ``labels_spent`` is their sum and ``labels_since``
    the version they are counted from. Without a parent version, or when it is not a committed
    version of this store (a model brought from elsewhere), every labeled image of ``version``
    counts and ``labels_since`` is ``None``."""
    versions = DatasetVersionStore(store)
    since = parent_version if parent_version and versions.is_committed(parent_version) else None
    diff = diff_manifests(versions.manifest(version), versions.manifest(since) if since else None)
    return {"labels_spent": int(diff["added"]) + int(diff["relabeled"]), "labels_added": int(diff["added"]),
            "labels_relabeled": int(diff["relabeled"]), "labels_since": since}


GAIN_METRICS = ("map50", "map50_95")


def since_parent(parent: ModelParent | None, labels: dict[str, int], test: dict[str, float],
                 parent_test: dict[str, float] | None, hard: dict[str, float] | None,
                 parent_hard: dict[str, float] | None) -> dict[str, Any]:
    """What the labels since ``parent`` bought: the parent (its model id starts with its dataset
    version), the labels, and the gain in mAP50 / mAP50-95 on the model's test split and on the
    hard examples (``None`` without a hard-example set).

    Both models are measured on the same images. Without a parent the gain is over no model
    (the model's own figures); a parent that was not measured on the hard examples gives no
    hard-example gain.
    """
    def gain(ours: dict[str, float], theirs: dict[str, float] | None) -> dict[str, float]:
        return {name: round(float(ours[name]) - float((theirs or {}).get(name, 0.0)), 4) for name in GAIN_METRICS}

    return {
        "parent": parent.model_id if parent else None,
        "parent_version": parent.version if parent else None,
        "via": parent.via if parent else "none",
        **labels,
        "test_gain": gain(test, parent_test),
        "hard_gain": None if hard is None or (parent is not None and parent_hard is None) else gain(hard, parent_hard),
    }


def since_parent_values(since: dict[str, Any]) -> dict[str, object]:
    """``since_parent`` as flat metadata values: ``parent_model`` (text), ``labels_spent`` and the
    gains (numbers, which Dagster plots across materializations)."""
    parent = since.get("parent")
    version = f"v{since['parent_version']} " if since.get("parent_version") else ""
    return {
        "parent_model": f"{version}{parent} ({since['via']})" if parent
        else "none: the first model (labels: its whole dataset version; gain: over no model)",
        "labels_spent": since["labels_spent"],
        **{f"test_{name}_gain": value for name, value in since["test_gain"].items()},
        **{f"hard_examples_{name}_gain": value for name, value in (since.get("hard_gain") or {}).items()},
    }
