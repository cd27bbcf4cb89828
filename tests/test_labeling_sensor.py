"""labeling_job_sensor and the labeling assets: inbox imports, job polling, unlabeled images."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from conftest import free_port
from tagqa_assets.contracts.labels import Annotation
from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.ingestion.writers import write_demo_set
from tagqa_assets.labeling.assets import label_store, unlabeled_images
from tagqa_assets.labeling.backends.base import ImageRef, LabelingJob
from tagqa_assets.labeling.jobs import JobBook
from tagqa_assets.labeling.label_store import LocalLabelStore, latest_records
from tagqa_assets.labeling.pre_annotations import PreAnnotationResource
from tagqa_assets.labeling.resources import LabelingResource, LabelStoreResource
from tagqa_assets.labeling.sensors import LabelingCursor, labeling_job_sensor
from tagqa_assets.labeling.unlabeled import find_unlabeled
from tagqa_assets.storage import LocalObjectStore, S3ObjectStore, StoreResource

ASSETS = [raw_images, label_store, unlabeled_images]


def _resources(store) -> dict:
    if isinstance(store, S3ObjectStore):
        endpoint = store.client.meta.endpoint_url
        root = StoreResource(root=store.uri, s3_endpoint_url=endpoint, aws_region="us-east-1")
    else:
        root = StoreResource(root=str(store.root))
    return {"store": root, "labels": LabelStoreResource(), "labeling": LabelingResource(), "pre_annotation": PreAnnotationResource()}


def _tick(resources: dict, cursor: str | None, instance: dg.DagsterInstance):
    return labeling_job_sensor(dg.build_sensor_context(cursor=cursor, resources=resources, instance=instance))


class Daemon:
    """Drives the sensor the way Dagster's daemon does: persisted cursor, each run key once."""

    def __init__(self, resources: dict) -> None:
        self.resources = resources
        self.instance = dg.DagsterInstance.ephemeral()
        self.cursor: str | None = None
        self.launched: list[dg.RunRequest] = []

    def tick(self) -> list[dg.RunRequest]:
        result = _tick(self.resources, self.cursor, self.instance)
        self.cursor = result.cursor
        fresh = [r for r in result.run_requests if r.run_key not in {l.run_key for l in self.launched}]
        for request in fresh:
            self.run(request)
        return fresh

    def run(self, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        outcome = dg.materialize(
            ASSETS, selection=request.asset_selection, run_config=request.run_config, resources=self.resources, instance=self.instance
        )
        assert outcome.success
        self.launched.append(request)
        return outcome

    def settle(self, max_ticks: int = 6) -> int:
        """Tick until a tick requests nothing; returns the number of runs launched."""
        runs = 0
        for _ in range(max_ticks):
            fresh = self.tick()
            if not fresh:
                return runs
            runs += len(fresh)
        raise AssertionError(f"the sensor still requested runs after {max_ticks} ticks")


def _ingest_demo(store, count: int, seed: int, with_labels: bool) -> tuple[list[str], str | None]:
    keys, inbox = write_demo_set(store, count, seed=seed, with_labels=with_labels)
    ingest_keys(store, keys, run_id=f"seed-{seed}")
    return keys, inbox


def test_inbox_file_and_new_images_request_one_run_and_never_twice(local_store):
    resources = _resources(local_store)
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(resources, None, instance)
    assert first.skip_reason and not first.run_requests  # empty store
    _, inbox = _ingest_demo(local_store, 4, seed=1, with_labels=True)

    result = _tick(resources, first.cursor, instance)
    [request] = result.run_requests
    assert request.asset_selection == [label_store.key, unlabeled_images.key]
    assert request.run_config["ops"]["label_store"]["config"] == {"inbox_keys": [inbox], "job_ids": [], "retry_unmatched": False}
    assert _tick(resources, first.cursor, instance).run_requests[0].run_key == request.run_key  # deterministic
    # The next tick while that run has not happened yet asks for nothing new.
    waiting = _tick(resources, result.cursor, instance)
    assert not waiting.run_requests and "already requested" in waiting.skip_reason.skip_message
    assert LabelingCursor.parse(result.cursor).catalog.startswith("catalog/raw_images/part-")


def test_malformed_cursor_fails_loudly(local_store):
    with pytest.raises(ValueError, match="cursor"):
        _tick(_resources(local_store), '{"v": 99}', dg.DagsterInstance.ephemeral())


def test_unlabeled_images_lists_images_without_label_or_open_job(local_store):
    _ingest_demo(local_store, 3, seed=1, with_labels=True)
    unlabeled_keys, _ = _ingest_demo(local_store, 2, seed=2, with_labels=False)
    daemon = Daemon(_resources(local_store))
    assert daemon.settle() == 1
    outcome_meta = daemon.instance.get_latest_materialization_event(unlabeled_images.key).asset_materialization.metadata
    assert outcome_meta["unlabeled"].value == 2
    [job] = JobBook(local_store).open_jobs()
    assert sorted(image.key for image in job.images) == sorted(unlabeled_keys)
    # Images waiting in an open job are no longer unlabeled, so no second job opens for them.
    assert len(find_unlabeled(local_store, LocalLabelStore(local_store))) == 0
    task = [json.loads(line) for line in local_store.get_bytes(job.external_id).decode().splitlines()]
    assert sorted(row["source_ref"] for row in task) == sorted(unlabeled_keys)


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_end_to_end_inbox_labels_and_a_labeling_job(backend, request: pytest.FixtureRequest):
    store = request.getfixturevalue(f"{backend}_store")
    resources = _resources(store)
    daemon = Daemon(resources)
    keys, _ = write_demo_set(store, 6, seed=4, with_labels=True)
    new_keys, _ = write_demo_set(store, 3, seed=5, with_labels=False)
    assert dg.materialize([raw_images], resources=resources, instance=daemon.instance).success

    assert daemon.settle() == 1
    labels = LocalLabelStore(store)
    assert len(labels.latest()) == 6
    [job] = JobBook(store).open_jobs()
    assert daemon.settle() == 0  # an open job without progress is left alone

    # A person corrects the task file (one scratch each, one image rejected) and drops it in the inbox.
    rows = [json.loads(line) for line in store.get_bytes(job.external_id).decode().splitlines()]
    for number, row in enumerate(rows):
        row["annotations"] = json.dumps([{"class_id": 0, "left": 10, "top": 10, "width": 30, "height": 20}])
        row["status"] = "REJECTED" if number == 0 else "APPROVED"
    store.put_bytes("inbox/labels/corrected.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())

    assert daemon.settle() == 2  # the inbox import, then the job's completion (closes it)
    assert JobBook(store).open_jobs() == []
    assert JobBook(store).get(job.job_id).state == "COMPLETED"
    latest = latest_records(labels.records())
    assert len(latest) == 9 and (latest["status"] == "REJECTED").sum() == 1
    assert len(find_unlabeled(store, labels)) == 0
    records_before = len(labels.records())
    # Re-running every run the sensor requested changes nothing in the label store.
    for request_ in list(daemon.launched):
        daemon.run(request_)
    assert len(labels.records()) == records_before
    metadata = daemon.instance.get_latest_materialization_event(label_store.key).asset_materialization.metadata
    assert metadata["records"].value == records_before and metadata["rows_imported"].value == 0
    assert set(new_keys) <= set(latest["source_ref"]) and set(keys) <= set(latest["source_ref"])


def test_an_unreachable_backend_does_not_block_the_inbox(local_store):
    keys, inbox = _ingest_demo(local_store, 2, seed=6, with_labels=True)
    refs = (ImageRef(keys[0], "0" * 64, 450, 300, local_store.uri_for(keys[0])),)
    JobBook(local_store).record(
        LabelingJob("lj-unreachable", "labelstudio", refs, "2026-11-25T00:00:00+00:00", external_id="1", detail={"task_ids": {keys[0]: 1}})
    )
    resources = _resources(local_store)
    resources["labeling"] = LabelingResource(backend="labelstudio", label_studio_url=f"http://127.0.0.1:{free_port()}", label_studio_api_token="x")
    instance = dg.DagsterInstance.ephemeral()
    result = _tick(resources, None, instance)
    [request] = result.run_requests
    assert request.run_config["ops"]["label_store"]["config"]["inbox_keys"] == [inbox]
    assert request.run_config["ops"]["label_store"]["config"]["job_ids"] == []
    # With the inbox handled, the tick says why the job was not polled.
    local_store.move(inbox, "elsewhere/labels.jsonl")
    later = _tick(resources, result.cursor, instance)
    assert "could not poll 1 job(s): lj-unreachable" in later.skip_reason.skip_message


def test_label_store_run_reports_rejects_in_metadata(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    keys, _ = _ingest_demo(store, 2, seed=7, with_labels=False)
    good = {"source_ref": keys[0], "image_width": 450, "image_height": 300, "annotations": [], "event_time": 1.0, "labeling_job": "x", "status": "APPROVED"}
    lines = [json.dumps(good), json.dumps({**good, "source_ref": keys[1], "status": "PERHAPS"}), "{oops"]
    store.put_bytes("inbox/labels/mixed.jsonl", ("\n".join(lines) + "\n").encode())
    resources = _resources(store)
    outcome = dg.materialize(ASSETS, selection=[label_store], resources=resources, instance=dg.DagsterInstance.ephemeral())
    metadata = outcome.get_asset_materialization_events()[0].materialization.metadata
    assert (metadata["rows_imported"].value, metadata["rows_rejected"].value) == (1, 2)
    reasons = {row.data["reason"] for row in metadata["rejects_by_reason"].value.records}
    assert {"invalid_value", "unparseable"} <= reasons
    assert metadata["approved_images_in_snapshot"].value == 1


def test_pre_annotations_come_from_the_wired_resource(local_store):
    from tagqa_assets.labeling.pre_annotations import PreAnnotationResource
    from tagqa_assets.model_catalog.resources import ModelRegistryResource
    from tagqa_assets.registry.champion import ChampionPreAnnotationResource

    refs = [ImageRef("raw/a.jpg", "0" * 64, 450, 300, "raw/a.jpg")]
    assert PreAnnotationResource().suggest(local_store, refs) == {}  # labeling alone suggests nothing
    champion = ChampionPreAnnotationResource(model_registry=ModelRegistryResource())
    assert champion.suggest(local_store, refs) == {}  # no Approved version yet: no suggestions
    # (with a champion, the registry tests check the suggested boxes themselves)


def test_labeling_resource_builds_each_backend_or_names_the_missing_setting(local_store, s3_store):
    from tagqa_assets.labeling.backends.groundtruth import GroundTruthBackend
    from tagqa_assets.labeling.backends.inbox import InboxBackend
    from tagqa_assets.labeling.backends.labelstudio import LabelStudioBackend

    labels = LocalLabelStore(local_store)
    assert isinstance(LabelingResource().open(local_store, labels), InboxBackend)
    studio = LabelingResource(backend="labelstudio", label_studio_api_token="t").open(local_store, labels)
    assert isinstance(studio, LabelStudioBackend) and studio.project_title == "tagqa scratches"
    ground_truth = LabelingResource(
        backend="groundtruth",
        groundtruth_role_arn="arn:aws:iam::123456789012:role/gt",
        groundtruth_workteam_arn="arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/tagqa",
    ).open(s3_store, labels)
    assert isinstance(ground_truth, GroundTruthBackend)
    with pytest.raises(ValueError, match="LABEL_STUDIO_API_TOKEN"):
        LabelingResource(backend="labelstudio").open(local_store, labels)
    with pytest.raises(ValueError, match="TAGQA_GROUNDTRUTH_ROLE_ARN, TAGQA_GROUNDTRUTH_WORKTEAM_ARN"):
        LabelingResource(backend="groundtruth").open(s3_store, labels)
    with pytest.raises(ValueError, match="TAGQA_LABELING_BACKEND='mturk'"):
        LabelingResource(backend="mturk").open(local_store, labels)


@pytest.mark.parametrize("backend", ["inbox", "labelstudio", "groundtruth"])
def test_every_backend_refuses_a_bad_job_request_before_touching_anything(backend, local_store, s3_store):
    store = s3_store if backend == "groundtruth" else local_store
    settings = {"inbox": {}, "labelstudio": {"label_studio_api_token": "t",
                                             "label_studio_url": f"http://127.0.0.1:{free_port()}"},
                "groundtruth": {"groundtruth_role_arn": "arn:aws:iam::123456789012:role/gt",
                                "groundtruth_workteam_arn": "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/t"}}
    labeling = LabelingResource(backend=backend, **settings[backend]).open(store, LocalLabelStore(store))
    image = ImageRef(key="raw/cam/a.jpg", sha256="0" * 64, width=8, height=8, uri="file:///nowhere/a.jpg")
    suggestion = {"raw/cam/other.jpg": [Annotation(0, 1, 1, 2, 2)]}
    for images, pre, reason in [([], None, "no images"), ([image, image], None, "the same image key appears twice"),
                                ([image], suggestion, "pre-annotations for images not in the job")]:
        with pytest.raises(ValueError, match=f"labeling job 'j1': {reason}"):
            labeling.create_job(images, job_id="j1", pre_annotations=pre)
    assert list(store.list_objects("")) == []  # no task file, manifest or job record was written
