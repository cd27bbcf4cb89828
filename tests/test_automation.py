"""The automation that moves the loop: training sensor and retraining schedule, unit by unit.

(The whole loop driven tick by tick is tests/test_closed_loop.py.)
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import pytest

from image_fixtures import encoded_image
from model_fixtures import build_version
from tagqa_assets.contracts.labels import DEMO_LABELING_JOB, Annotation, LabelRecord
from tagqa_assets.datasets.pending import pending_versions
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.datasets.sensors import RetrainingPolicyResource, retraining_schedule
from tagqa_assets.definitions import defs as load_definitions
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.ingestion.validation import sha256_hex
from tagqa_assets.labeling.label_store import LocalLabelStore
from tagqa_assets.labeling.resources import LabelStoreResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.storage import LocalObjectStore, StoreResource
from tagqa_assets.training.assets import TrainingConfig
from tagqa_assets.training.resources import TrainingProfileResource
from tagqa_assets.training.sensors import CHAIN, PROFILE_TAG, model_training_sensor


def _tick(instance: dg.DagsterInstance, cursor: str | None, profile: TrainingProfileResource, store_root: Path):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, repository_def=load_definitions().get_repository_def(),
                                      resources={"training_profile": profile, "store": StoreResource(root=str(store_root))})
    return model_training_sensor(context)


def _built(instance: dg.DagsterInstance, *versions: str) -> None:
    """Record that ``dataset_version`` was built for ``versions`` (what its runs report)."""
    instance.add_dynamic_partitions(dataset_versions.name, list(versions))
    for version in versions:
        instance.report_runless_asset_event(dg.AssetMaterialization("dataset_version", partition=version))


def test_training_sensor_trains_each_new_version_once_and_never_storms(tmp_path: Path):
    instance = dg.DagsterInstance.ephemeral()
    profile = TrainingProfileResource(epochs=3, imgsz=96)
    assert isinstance(_tick(instance, None, profile, tmp_path), dg.SkipReason)

    # An instance with history: the first tick trains the newest version only.
    _built(instance, "v0001-aaaaaaaa", "v0002-bbbbbbbb")
    first = _tick(instance, None, profile, tmp_path)
    [request] = first.run_requests
    assert request.partition_key == "v0002-bbbbbbbb" and request.asset_selection is None
    assert request.run_config == {"ops": {"trained_model": {"config": {"epochs": 3, "imgsz": 96}}}}
    assert request.tags["tagqa/resource"] == "cpu-heavy"

    # Nothing new: nothing to do (the chain has not materialized, and no code changed).
    again = _tick(instance, first.cursor, profile, tmp_path)
    assert not again.run_requests

    # A newly built version gets the whole chain; its run key is stable across ticks.
    _built(instance, "v0003-cccccccc")
    third = _tick(instance, again.cursor, profile, tmp_path)
    [request] = third.run_requests
    assert request.partition_key == "v0003-cccccccc"
    assert request.run_key == _tick(instance, again.cursor, profile, tmp_path).run_requests[0].run_key
    assert not _tick(instance, third.cursor, profile, tmp_path).run_requests


def test_training_sensor_skips_a_version_whose_sanity_check_failed(tmp_path: Path):
    # The blocking check stops training in the dataset's own run; the sensor's separate run
    # must not start it either.
    instance = dg.DagsterInstance.ephemeral()
    profile = TrainingProfileResource()
    _built(instance, "v0001-aaaaaaaa")
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("dataset_version"), check_name="dataset_version_sanity", passed=True, partition="v0001-aaaaaaaa"))
    first = _tick(instance, None, profile, tmp_path)
    assert [r.partition_key for r in first.run_requests] == ["v0001-aaaaaaaa"]
    _built(instance, "v0002-bbbbbbbb")
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("dataset_version"), check_name="dataset_version_sanity", passed=False, partition="v0002-bbbbbbbb"))
    assert not _tick(instance, first.cursor, profile, tmp_path).run_requests


def test_training_sensor_trains_a_demo_version_with_the_demo_profile_and_real_data_with_the_automated_one(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    demo = build_version(store, 5, seed=5, labeling_job=DEMO_LABELING_JOB)
    mixed = build_version(store, 5, seed=6)  # the demo's images plus images labeled elsewhere
    versions = DatasetVersionStore(store)
    assert versions.is_demo_version(demo) and not versions.is_demo_version(mixed)
    instance = dg.DagsterInstance.ephemeral()
    profile = TrainingProfileResource(epochs=3, demo_epochs=7, demo_imgsz=224, demo_batch=4)

    _built(instance, demo)
    first = _tick(instance, None, profile, tmp_path / "store")
    [request] = first.run_requests
    assert request.tags[PROFILE_TAG] == "demo"
    demo_config = request.run_config["ops"]["trained_model"]["config"]
    assert demo_config == {"epochs": 7, "imgsz": 224, "batch": 4, "overrides": {"nbs": "4"}}
    params = TrainingConfig(**demo_config).params()  # what trained_model will train with
    assert (params.epochs, params.imgsz, params.batch, params.overrides) == (7, 224, 4, {"nbs": 4})

    _built(instance, mixed)
    [request] = _tick(instance, first.cursor, profile, tmp_path / "store").run_requests
    assert request.partition_key == mixed and request.tags[PROFILE_TAG] == "standard"
    assert request.run_config == {"ops": {"trained_model": {"config": {"epochs": 3}}}}


def test_training_profile_defaults_leave_the_documented_configuration():
    assert TrainingProfileResource().run_config() == {}
    assert [key.to_user_string() for key in CHAIN] == ["trained_model", "onnx_model", "model_evaluation", "registered_model"]


@pytest.mark.parametrize(
    ("newest_age", "every_days", "due"),
    [
        (None, 7, True),  # no version yet: always due
        (timedelta(days=8), 7, True),  # older than a week
        (timedelta(days=6, hours=23, minutes=58), 7, True),  # within the 5-minute slack of a daily tick
        (timedelta(days=2), 7, False),  # a recent version
        (timedelta(hours=1), 0, True),  # every_days 0: whenever labels changed
    ],
)
def test_retraining_policy_due(newest_age, every_days, due):
    now = datetime(2026, 11, 25, 4, 0, tzinfo=timezone.utc)
    newest = None if newest_age is None else (now - newest_age).isoformat()
    assert RetrainingPolicyResource(every_days=every_days).due(newest, now) is due


def test_retraining_schedule_cuts_a_version_only_when_labels_changed(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    (tmp_path / "dagster").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "dagster"))
    resources = {"store": StoreResource(root=str(store.root)), "labels": LabelStoreResource(),
                 "retraining": RetrainingPolicyResource(every_days=7)}

    def evaluate():
        # The with-form matters: a schedule invoked directly enters the instance's definitions-state
        # context, and only the context manager's exit restores it for later tests.
        with dg.build_schedule_context(instance=instance, resources=resources,
                                       scheduled_execution_time=datetime.now(timezone.utc)) as context:
            return retraining_schedule(context)

    assert isinstance(evaluate(), dg.SkipReason)  # no labels at all
    key = "raw/camera-1/2026/11/25/100000-a.jpg"
    image = encoded_image(shade=40)
    store.put_bytes(key, image)
    ingest_keys(store, [key], run_id="t")
    LocalLabelStore(store).append([LabelRecord(source_ref=key, image_sha256=sha256_hex(image), image_width=64,
                                               image_height=48, annotations=(Annotation(0, 1, 1, 5, 5),),
                                               event_time=1.0, labeling_job="t")])
    request = evaluate()
    assert isinstance(request, dg.RunRequest)
    assert instance.get_dynamic_partitions(dataset_versions.name) == [request.partition_key]
    assert request.run_key == request.partition_key
    skip = evaluate()
    assert isinstance(skip, dg.SkipReason) and "already has a version" in skip.skip_message
    assert pending_versions(store) == [request.partition_key]  # frozen for dataset_version to build
