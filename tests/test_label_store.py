"""Label store: latest record wins, REJECTED removes, snapshot ids, no duplicates, Feature Store."""

from __future__ import annotations

import io
import json

import boto3
import pandas as pd
import pytest
from botocore.stub import ANY, Stubber

from tagqa_assets.contracts.labels import APPROVED, REJECTED, Annotation, LabelRecord
from tagqa_assets.labeling.featurestore import FEATURE_DEFINITIONS, FeatureStoreLabelStore, feature_record
from tagqa_assets.labeling.label_store import LocalLabelStore, records_frame, snapshot_of
from tagqa_assets.labeling.pre_annotations import PreAnnotationResource
from tagqa_assets.labeling.resources import LabelStoreResource

BOX = Annotation(0, 10, 20, 30, 40)
OTHER_BOX = Annotation(0, 50, 60, 10, 10)


def record(ref: str, t: float, boxes=(BOX,), status=APPROVED, sha: str | None = None, job="job-1") -> LabelRecord:
    return LabelRecord(
        source_ref=ref,
        image_sha256=sha if sha is not None else f"{abs(hash(ref)):064x}"[:64],
        image_width=450,
        image_height=300,
        annotations=tuple(boxes),
        event_time=t,
        labeling_job=job,
        status=status,
    )


def frame(*records: LabelRecord, written=None) -> pd.DataFrame:
    parts = [records_frame([r], written[i] if written else f"2026-01-01T00:00:{i:02d}") for i, r in enumerate(records)]
    return pd.concat(parts, ignore_index=True)


@pytest.mark.parametrize(
    "records, approved_refs, rejected",
    [
        # A newer APPROVED record replaces an older REJECTED one: the image is back in training.
        ([record("a", 1, status=REJECTED), record("a", 2)], ["a"], 0),
        # A newer REJECTED record removes the image from training.
        ([record("a", 1), record("a", 2, status=REJECTED)], [], 1),
        # Write order does not matter, event_time does: the late-arriving older label loses.
        ([record("a", 5, status=REJECTED), record("a", 2)], [], 1),
        # An image labeled "no scratch" (no boxes) is approved training data too.
        ([record("a", 1, boxes=())], ["a"], 0),
    ],
)
def test_latest_record_per_image_wins(records, approved_refs, rejected):
    snapshot = snapshot_of(frame(*records))
    assert list(snapshot.frame["image_key"]) == approved_refs
    assert snapshot.rejected == rejected


def test_event_time_tie_goes_to_the_record_written_last():
    tie = frame(record("a", 1), record("a", 1, status=REJECTED), written=["2026-01-01T00:00:01", "2026-01-01T00:00:02"])
    assert snapshot_of(tie).images == 0
    reversed_write = frame(record("a", 1), record("a", 1, status=REJECTED), written=["2026-01-01T00:00:02", "2026-01-01T00:00:01"])
    assert snapshot_of(reversed_write).images == 1


def test_snapshot_id_depends_only_on_training_content():
    base = snapshot_of(frame(record("a", 1, sha="a" * 64), record("b", 1, sha="b" * 64)))
    # Same images and boxes reached by another history (other times, jobs, order, box order).
    other_history = snapshot_of(
        frame(
            record("b", 7, sha="b" * 64, job="job-9"),
            record("a", 3, sha="a" * 64, status=REJECTED),
            record("a", 4, sha="a" * 64, job="job-2"),
        )
    )
    assert other_history.snapshot_id == base.snapshot_id
    relabeled = snapshot_of(frame(record("a", 1, sha="a" * 64, boxes=(BOX, OTHER_BOX)), record("b", 1, sha="b" * 64)))
    assert relabeled.snapshot_id != base.snapshot_id
    shuffled = snapshot_of(frame(record("a", 1, sha="a" * 64, boxes=(OTHER_BOX, BOX)), record("b", 1, sha="b" * 64)))
    assert shuffled.snapshot_id == relabeled.snapshot_id


def test_same_content_under_two_keys_counts_once_and_unhashed_winners_are_counted():
    snapshot = snapshot_of(frame(record("a", 1, sha="c" * 64), record("copy-of-a", 2, sha="c" * 64), record("foreign", 1, sha="")))
    assert list(snapshot.frame["image_key"]) == ["copy-of-a"]
    assert snapshot.unresolved == 1


def test_append_never_duplicates(any_store):
    labels = LocalLabelStore(any_store)
    batch = [record("raw/a.jpg", 1), record("raw/b.jpg", 1), record("raw/a.jpg", 2, status=REJECTED)]
    first = labels.append(batch)
    assert (first.appended, first.already_present) == (3, 0)
    revision = labels.revision()
    again = labels.append(batch + [record("raw/c.jpg", 3)])
    assert (again.appended, again.already_present) == (1, 3)
    assert labels.revision() != revision
    assert labels.append(batch).appended == 0
    assert len(labels.records()) == 4
    assert labels.labeled_keys() >= {"raw/a.jpg", "raw/b.jpg", "raw/c.jpg"}
    assert list(labels.snapshot().frame["image_key"]) == sorted(["raw/b.jpg", "raw/c.jpg"], key=lambda k: record(k, 0).image_sha256)


def test_records_survive_a_round_trip_through_parquet(local_store):
    labels = LocalLabelStore(local_store)
    original = record("raw/x.jpg", 1657199072.0, boxes=(BOX, OTHER_BOX))
    labels.append([original])
    [row] = labels.records().to_dict("records")
    assert LabelRecord.from_row(row) == original


def test_unknown_label_store_backend_is_refused(local_store):
    with pytest.raises(ValueError, match="TAGQA_LABEL_STORE='sqlite'"):
        LabelStoreResource(backend="sqlite").open(local_store)


FEATURE_GROUP = "tagqa-labels-test"
ROLE = "arn:aws:iam::123456789012:role/tagqa-featurestore"


def _offline_parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pd.DataFrame(rows).to_parquet(buffer, index=False)
    return buffer.getvalue()


def test_featurestore_creates_the_group_when_missing_and_puts_each_record_once(local_store, moto_endpoint, s3_bucket):
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    runtime = boto3.client("sagemaker-featurestore-runtime", region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    offline = f"s3://{s3_bucket}/feature-store"
    described = {
        "FeatureGroupArn": f"arn:aws:sagemaker:us-east-1:123456789012:feature-group/{FEATURE_GROUP}",
        "FeatureGroupName": FEATURE_GROUP,
        "RecordIdentifierFeatureName": "source_ref",
        "EventTimeFeatureName": "event_time",
        "FeatureDefinitions": [{"FeatureName": n, "FeatureType": t} for n, t in FEATURE_DEFINITIONS],
        "CreationTime": "2026-11-25T00:00:00Z",
        "OfflineStoreConfig": {"S3StorageConfig": {"S3Uri": offline, "ResolvedOutputS3Uri": f"{offline}/123456789012/sagemaker/us-east-1/offline-store/x/data"}},
        "FeatureGroupStatus": "Created",
        "NextToken": "",
    }
    batch = [record("raw/import/2026/11/25/a.jpg", 10.0), record("raw/import/2026/11/25/b.jpg", 11.5, status=REJECTED, boxes=())]
    with Stubber(sagemaker) as sm, Stubber(runtime) as rt:
        sm.add_client_error("describe_feature_group", service_error_code="ResourceNotFound", http_status_code=404, expected_params={"FeatureGroupName": FEATURE_GROUP})
        sm.add_response(
            "create_feature_group",
            {"FeatureGroupArn": described["FeatureGroupArn"]},
            expected_params={
                "FeatureGroupName": FEATURE_GROUP,
                "RecordIdentifierFeatureName": "source_ref",
                "EventTimeFeatureName": "event_time",
                "FeatureDefinitions": described["FeatureDefinitions"],
                "OfflineStoreConfig": {"S3StorageConfig": {"S3Uri": offline}},
                "RoleArn": ROLE,
                "Description": ANY,
            },
        )
        sm.add_response("describe_feature_group", {**described, "FeatureGroupStatus": "Creating"}, expected_params={"FeatureGroupName": FEATURE_GROUP})
        sm.add_response("describe_feature_group", described, expected_params={"FeatureGroupName": FEATURE_GROUP})
        for item in batch:
            rt.add_response(
                "put_record",
                {},
                expected_params={"FeatureGroupName": FEATURE_GROUP, "Record": feature_record(item), "TargetStores": ["OfflineStore"]},
            )
        labels = FeatureStoreLabelStore(
            local_store,
            feature_group_name=FEATURE_GROUP,
            role_arn=ROLE,
            offline_store_s3_uri=offline,
            sagemaker_client=sagemaker,
            runtime_client=runtime,
            s3_client=s3,
            poll_interval_s=0.01,
        )
        assert labels.append(batch).appended == 2
        # Re-running the same import puts nothing: the Stubber has no response left and would fail.
        assert labels.append(batch).appended == 0
        sm.assert_no_pending_responses()
        rt.assert_no_pending_responses()
    values = {f["FeatureName"]: f["ValueAsString"] for f in feature_record(batch[0])}
    assert json.loads(values["annotations"]) == [{"class_id": 0, "left": 10.0, "top": 20.0, "width": 30.0, "height": 40.0}]
    assert float(values["event_time"]) == 10.0
    assert list(labels.snapshot().frame["image_key"]) == ["raw/import/2026/11/25/a.jpg"]


def test_featurestore_reads_the_offline_store_written_by_other_tools(local_store, moto_endpoint, s3_bucket):
    sagemaker = boto3.client("sagemaker", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    sagemaker.create_feature_group(
        FeatureGroupName=FEATURE_GROUP,
        RecordIdentifierFeatureName="source_ref",
        EventTimeFeatureName="event_time",
        FeatureDefinitions=[{"FeatureName": n, "FeatureType": t} for n, t in FEATURE_DEFINITIONS],
        OfflineStoreConfig={"S3StorageConfig": {"S3Uri": f"s3://{s3_bucket}/fs"}},
        RoleArn=ROLE,
    )
    resolved = sagemaker.describe_feature_group(FeatureGroupName=FEATURE_GROUP)["OfflineStoreConfig"]["S3StorageConfig"]["ResolvedOutputS3Uri"]
    prefix = resolved.split(f"s3://{s3_bucket}/", 1)[1]
    annotations = json.dumps([{"class_id": 0, "left": 1, "top": 2, "width": 3, "height": 4}])
    base = {"image_width": 450, "image_height": 300, "image_depth": 3, "annotations": annotations, "labeling_job": "gt-job", "status": "APPROVED"}
    # What the offline store holds after the reference pipeline's Lambda and a DeleteRecord ran.
    rows = [
        {**base, "source_ref": "raw/a.jpg", "image_sha256": "a" * 64, "event_time": 1.0, "write_time": "2026-01-01 00:00:01", "is_deleted": False},
        {**base, "source_ref": "raw/b.jpg", "image_sha256": "b" * 64, "event_time": 1.0, "write_time": "2026-01-01 00:00:01", "is_deleted": False},
        {**base, "source_ref": "raw/b.jpg", "image_sha256": "b" * 64, "event_time": 2.0, "write_time": "2026-01-01 00:00:02", "is_deleted": True},
        {**base, "source_ref": "s3://other/x.jpg", "image_sha256": None, "event_time": 1.0, "write_time": "2026-01-01 00:00:01", "is_deleted": False},
    ]
    s3.put_object(Bucket=s3_bucket, Key=f"{prefix}/year=2026/month=01/day=01/hour=00/part-0.parquet", Body=_offline_parquet(rows))
    labels = FeatureStoreLabelStore(
        local_store,
        feature_group_name=FEATURE_GROUP,
        role_arn="",
        offline_store_s3_uri="",
        sagemaker_client=sagemaker,
        runtime_client=boto3.client("sagemaker-featurestore-runtime", region_name="us-east-1"),
        s3_client=s3,
    )
    snapshot = labels.snapshot()
    assert list(snapshot.frame["image_key"]) == ["raw/a.jpg"]
    assert snapshot.unresolved == 1  # a foreign record without content hash is counted, not guessed
    assert "raw/b.jpg" not in labels.labeled_keys()  # deleted: the image needs a label again
    assert labels.revision().endswith("part-0.parquet")


def test_label_store_sanity_check(local_store):
    import dagster as dg

    from image_fixtures import encoded_image
    from tagqa_assets.ingestion.ingest import ingest_keys
    from tagqa_assets.labeling.assets import label_store, unlabeled_images
    from tagqa_assets.labeling.checks import label_store_sanity
    from tagqa_assets.labeling.resources import LabelingResource
    from tagqa_assets.storage import StoreResource

    local_store.put_bytes("raw/camera-1/2026/11/25/a.jpg", encoded_image(size=(450, 300)))
    [image] = ingest_keys(local_store, ["raw/camera-1/2026/11/25/a.jpg"], run_id="t").accepted
    resources = {"store": StoreResource(root=str(local_store.root)), "labels": LabelStoreResource(), "labeling": LabelingResource(), "pre_annotation": PreAnnotationResource()}

    def check() -> dg.AssetCheckEvaluation:
        outcome = dg.materialize([label_store, unlabeled_images, label_store_sanity], selection=[label_store], resources=resources)
        [evaluation] = outcome.get_asset_check_evaluations()
        return evaluation

    LocalLabelStore(local_store).append([record(image.key, 1.0, sha=image.sha256)])
    assert check().passed
    # A label written around the import path for an image that was never ingested.
    LocalLabelStore(local_store).append([record("raw/camera-1/2026/11/25/ghost.jpg", 1.0, sha="e" * 64)])
    failed = check()
    assert not failed.passed and failed.metadata["problems"].value == 1
    assert any("ghost.jpg" in row.data["source_ref"] for row in failed.metadata["examples"].value.records)
