"""The groundtruth labeling backend: SageMaker calls through botocore's Stubber, files on moto's S3.

The Stubber checks every request against the real SageMaker service model and plays back
responses (also validated against the model); the manifests, templates and Ground Truth's
output manifests live in a real S3 API (moto server). The output manifests below are
written the way Ground Truth writes them (bounding-box job, then verification job).
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import ANY, Stubber

from tagqa_assets.contracts.labels import APPROVED, REJECTED, Annotation
from tagqa_assets.ingestion.synthetic import generate_tags
from tagqa_assets.labeling.backends.base import COMPLETED, FAILED, OPEN, ImageRef
from tagqa_assets.labeling.backends.groundtruth import GroundTruthBackend, labeling_job_name
from tagqa_assets.labeling.backends.groundtruth_lambdas import task_lambdas
from tagqa_assets.labeling.backends.groundtruth_manifests import parse_output

ROLE = "arn:aws:iam::123456789012:role/tagqa-groundtruth"
WORKTEAM = "arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/tagqa-inspectors"
LAMBDAS = "arn:aws:lambda:us-east-1:432418664414:function"


@pytest.fixture
def sagemaker():
    client = boto3.client("sagemaker", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _images(store, count: int = 3) -> list[ImageRef]:
    images = []
    for tag in generate_tags(count, seed=3):
        key = f"raw/camera-1/2024/05/02/{tag.name}"
        store.put_bytes(key, tag.jpeg)
        images.append(ImageRef(key, hashlib.sha256(tag.jpeg).hexdigest(), tag.width, tag.height, store.uri_for(key)))
    return images


def _expected_create(store, job_id: str, name: str, *, attribute: str, task: str, manifest: str, template: str, categories: str) -> dict:
    prefix = f"labeling/groundtruth/{job_id}/"
    return {
        "LabelingJobName": name,
        "LabelAttributeName": attribute,
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": store.uri_for(prefix + manifest)}},
            "DataAttributes": {"ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]},
        },
        "OutputConfig": {"S3OutputPath": store.uri_for(prefix + "output") + "/"},
        "RoleArn": ROLE,
        "LabelCategoryConfigS3Uri": store.uri_for(prefix + categories),
        "HumanTaskConfig": {
            "WorkteamArn": WORKTEAM,
            "UiConfig": {"UiTemplateS3Uri": store.uri_for(prefix + template)},
            "PreHumanTaskLambdaArn": f"{LAMBDAS}:PRE-{task}",
            "TaskKeywords": ANY,
            "TaskTitle": ANY,
            "TaskDescription": ANY,
            "NumberOfHumanWorkersPerDataObject": 1,
            "TaskTimeLimitInSeconds": 300,
            "TaskAvailabilityLifetimeInSeconds": 21600,
            "MaxConcurrentTaskCount": 200,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": f"{LAMBDAS}:ACS-{task}"},
        },
        "Tags": [{"Key": "tagqa:labeling-job", "Value": job_id}],
    }


def _described(store, name: str, status: str, counters: dict, output_key: str | None = None, failure: str | None = None) -> dict:
    """A DescribeLabelingJob answer as SageMaker gives it (all required members present)."""
    answer = {
        "LabelingJobStatus": status,
        "LabelCounters": {"TotalLabeled": 0, "HumanLabeled": 0, "MachineLabeled": 0, "FailedNonRetryableError": 0, "Unlabeled": 0, **counters},
        "CreationTime": datetime(2024, 5, 2, 9, 0, tzinfo=timezone.utc),
        "LastModifiedTime": datetime(2024, 5, 2, 11, 0, tzinfo=timezone.utc),
        "JobReferenceCode": "a1b2c3d4e5",
        "LabelingJobName": name,
        "LabelingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:labeling-job/{name}",
        "LabelAttributeName": "verified" if name.endswith("-verify") else "category",
        "InputConfig": {"DataSource": {"S3DataSource": {"ManifestS3Uri": store.uri_for("labeling/x.manifest")}}},
        "OutputConfig": {"S3OutputPath": store.uri_for("labeling/output") + "/"},
        "RoleArn": ROLE,
        "HumanTaskConfig": {
            "WorkteamArn": WORKTEAM,
            "UiConfig": {"UiTemplateS3Uri": store.uri_for("labeling/t.liquid.html")},
            "PreHumanTaskLambdaArn": f"{LAMBDAS}:PRE-BoundingBox",
            "TaskTitle": "t",
            "TaskDescription": "d",
            "NumberOfHumanWorkersPerDataObject": 1,
            "TaskTimeLimitInSeconds": 300,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": f"{LAMBDAS}:ACS-BoundingBox"},
        },
    }
    if output_key:
        answer["LabelingJobOutput"] = {"OutputDatasetS3Uri": store.uri_for(output_key)}
    if failure:
        answer["FailureReason"] = failure
    return answer


def _labeling_output(store, images: list[ImageRef], name: str) -> list[dict]:
    """Ground Truth's output manifest: two images labeled (one with two boxes, one with none), one expired."""
    meta = {"class-map": {"0": "scratch"}, "type": "groundtruth/object-detection", "human-annotated": "yes", "job-name": f"labeling-job/{name}"}
    return [
        {
            "source-ref": store.uri_for(images[0].key),
            "category": {
                "image_size": [{"width": 450, "height": 300, "depth": 3}],
                "annotations": [{"class_id": 0, "top": 120, "left": 88, "height": 24, "width": 131}, {"class_id": 0, "top": 31, "left": 300, "height": 97, "width": 12}],
            },
            "category-metadata": {**meta, "objects": [{"confidence": 0.94}, {"confidence": 0.9}], "creation-date": "2024-05-02T09:14:31.518264"},
        },
        {
            "source-ref": store.uri_for(images[1].key),
            "category": {"image_size": [{"width": 450, "height": 300, "depth": 3}], "annotations": []},
            "category-metadata": {**meta, "objects": [], "creation-date": "2024-05-02T09:15:02.004100"},
        },
        {
            "source-ref": store.uri_for(images[2].key),
            "category-metadata": {"retry-count": 1, "failure-reason": "ClientError: Annotation tasks expired. No annotations received.", "human-annotated": "yes"},
        },
    ]


def _verification_output(labeled: list[dict], name: str) -> list[dict]:
    """The verification job copies each input line and adds its verdict."""
    verdicts = [(0, "The boxes are right: every scratch has one tight box", "2024-05-02T11:02:07.044103"), (2, "The image is unusable (blurred, cut off, not a tag)", "2024-05-02T11:03:40.120000")]
    return [
        {**line, "verified": cls, "verified-metadata": {"class-name": label, "confidence": 0.91, "type": "groundtruth/label-verification", "job-name": f"labeling-job/{name}-verify", "human-annotated": "yes", "creation-date": when}}
        for line, (cls, label, when) in zip(labeled, verdicts)
    ]


def _put_lines(store, key: str, lines: list[dict]) -> None:
    store.put_bytes(key, "".join(json.dumps(line) + "\n" for line in lines).encode())


def test_labeling_then_verification_then_label_records(s3_store, sagemaker):
    client, stubber = sagemaker
    backend = GroundTruthBackend(store=s3_store, role_arn=ROLE, workteam_arn=WORKTEAM, region="us-east-1", sagemaker_client=client)
    images = _images(s3_store)
    job_id = "lj-20240502T090000-1a2b3c4d"
    name = labeling_job_name(job_id)
    prefix = f"labeling/groundtruth/{job_id}/"
    assert name == f"tagqa-{job_id}"

    stubber.add_response(
        "create_labeling_job",
        {"LabelingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:labeling-job/{name}"},
        _expected_create(s3_store, job_id, name, attribute="category", task="BoundingBox", manifest="input.manifest", template="bounding-box.liquid.html", categories="label-categories.json"),
    )
    job = backend.create_job(images, job_id=job_id)
    assert (job.external_id, job.detail["verification_job_name"]) == (name, f"{name}-verify")
    manifest = [json.loads(line) for line in s3_store.get_bytes(prefix + "input.manifest").splitlines()]
    assert manifest == [{"source-ref": s3_store.uri_for(image.key)} for image in images]
    assert s3_store.get_json(prefix + "label-categories.json") == {"document-version": "2018-11-28", "labels": [{"label": "scratch"}]}
    assert s3_store.get_json(prefix + "verification-categories.json")["labels"][0]["label"].startswith("The boxes are right")
    assert b"<crowd-bounding-box" in s3_store.get_bytes(prefix + "bounding-box.liquid.html")

    # Workers are labeling.
    stubber.add_response("describe_labeling_job", _described(s3_store, name, "InProgress", {"TotalLabeled": 1, "Unlabeled": 2}), {"LabelingJobName": name})
    status = backend.job_status(job)
    assert (status.state, status.done, status.total) == (OPEN, 1, 3)

    # Labeling completes (one image expired): the next poll starts verification over the labeled lines only.
    output_key = f"{prefix}output/{name}/manifests/output/output.manifest"
    labeled = _labeling_output(s3_store, images, name)
    _put_lines(s3_store, output_key, labeled)
    stubber.add_response("describe_labeling_job", _described(s3_store, name, "Completed", {"TotalLabeled": 2, "HumanLabeled": 2, "FailedNonRetryableError": 1}, output_key), {"LabelingJobName": name})
    stubber.add_client_error("describe_labeling_job", "ResourceNotFound", "Could not find requested job", 400, expected_params={"LabelingJobName": f"{name}-verify"})
    stubber.add_response(
        "create_labeling_job",
        {"LabelingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:labeling-job/{name}-verify"},
        _expected_create(s3_store, job_id, f"{name}-verify", attribute="verified", task="VerificationBoundingBox", manifest="verification-input.manifest", template="verification.liquid.html", categories="verification-categories.json"),
    )
    status = backend.job_status(job)
    assert status.state == OPEN and "verification job started" in status.message
    verify_input = [json.loads(line) for line in s3_store.get_bytes(prefix + "verification-input.manifest").splitlines()]
    assert verify_input == labeled[:2]
    stubber.add_response("describe_labeling_job", _described(s3_store, f"{name}-verify", "InProgress", {}), {"LabelingJobName": f"{name}-verify"})
    assert backend.fetch_results(job) == []  # nothing until the verification job completed

    # Verification completes: one approved, one judged unusable.
    verify_key = f"{prefix}output/{name}-verify/manifests/output/output.manifest"
    _put_lines(s3_store, verify_key, _verification_output(labeled[:2], name))
    for _ in range(2):
        stubber.add_response("describe_labeling_job", _described(s3_store, name, "Completed", {"TotalLabeled": 2}, output_key), {"LabelingJobName": name})
        stubber.add_response("describe_labeling_job", _described(s3_store, f"{name}-verify", "Completed", {"TotalLabeled": 2}, verify_key), {"LabelingJobName": f"{name}-verify"})
        status = backend.job_status(job)
        assert (status.state, status.done, status.total) == (COMPLETED, 2, 3)

    stubber.add_response("describe_labeling_job", _described(s3_store, f"{name}-verify", "Completed", {"TotalLabeled": 2}, verify_key), {"LabelingJobName": f"{name}-verify"})
    records = backend.fetch_results(job)
    assert [r.source_ref for r in records] == [images[0].key, images[1].key]
    approved, rejected = records
    assert approved.status == APPROVED and rejected.status == REJECTED
    assert approved.annotations == (Annotation(0, 88.0, 120.0, 131.0, 24.0), Annotation(0, 300.0, 31.0, 12.0, 97.0))
    assert (approved.image_width, approved.image_height, approved.image_depth, approved.image_sha256) == (450, 300, 3, images[0].sha256)
    assert approved.labeling_job == f"labeling-job/{name}"
    # The decision time: the verification's creation-date, later than the labeling's.
    assert approved.event_time == datetime(2024, 5, 2, 11, 2, 7, 44103, tzinfo=timezone.utc).timestamp()
    assert rejected.annotations == () and rejected.extra["verdict"].startswith("The image is unusable")


def test_fetch_results_waits_for_the_verification_job(s3_store, sagemaker):
    client, stubber = sagemaker
    backend = GroundTruthBackend(store=s3_store, role_arn=ROLE, workteam_arn=WORKTEAM, region="us-east-1", sagemaker_client=client)
    images = _images(s3_store, 1)
    stubber.add_response("create_labeling_job", {"LabelingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/x"}, None)
    job = backend.create_job(images, job_id="lj-wait")
    stubber.add_client_error("describe_labeling_job", "ResourceNotFound", "Could not find requested job", 400, expected_params={"LabelingJobName": "tagqa-lj-wait-verify"})
    assert backend.fetch_results(job) == []


def test_suggestions_make_an_adjustment_job_with_prelabels(s3_store, sagemaker):
    client, stubber = sagemaker
    backend = GroundTruthBackend(store=s3_store, role_arn=ROLE, workteam_arn=WORKTEAM, region="us-east-1", sagemaker_client=client, verification=False)
    images = _images(s3_store, 3)[:2]
    suggestion = Annotation(0, 10.5, 20.0, 30.0, 4.25)
    stubber.add_response(
        "create_labeling_job",
        {"LabelingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/tagqa-lj-adjust"},
        _expected_create(s3_store, "lj-adjust", "tagqa-lj-adjust", attribute="category", task="AdjustmentBoundingBox", manifest="input.manifest", template="bounding-box.liquid.html", categories="label-categories.json"),
    )
    job = backend.create_job(images, job_id="lj-adjust", pre_annotations={images[0].key: [suggestion]})
    lines = [json.loads(line) for line in s3_store.get_bytes("labeling/groundtruth/lj-adjust/input.manifest").splitlines()]
    assert lines[0]["prelabel"]["annotations"] == [{"class_id": 0, "left": 10.5, "top": 20.0, "width": 30.0, "height": 4.25}]
    assert lines[0]["prelabel"]["image_size"] == [{"width": 450, "height": 300, "depth": 3}]
    assert lines[0]["prelabel-metadata"]["class-map"] == {"0": "scratch"}
    assert lines[1]["prelabel"]["annotations"] == []  # the model saw nothing: workers start empty
    template = s3_store.get_bytes("labeling/groundtruth/lj-adjust/bounding-box.liquid.html").decode()
    assert "task.input.manifestLine.prelabel.annotations" in template and "prelabel-metadata.class-map" in template
    assert not s3_store.exists("labeling/groundtruth/lj-adjust/verification.liquid.html")

    # Without verification, the labeling output itself is the result (every label approved).
    output_key = "labeling/groundtruth/lj-adjust/output/tagqa-lj-adjust/manifests/output/output.manifest"
    line = _labeling_output(s3_store, [*images, images[0]], "tagqa-lj-adjust")[0]
    _put_lines(s3_store, output_key, [line])
    stubber.add_response("describe_labeling_job", _described(s3_store, "tagqa-lj-adjust", "Completed", {"TotalLabeled": 1, "FailedNonRetryableError": 1}, output_key), {"LabelingJobName": "tagqa-lj-adjust"})
    assert backend.job_status(job).state == COMPLETED
    stubber.add_response("describe_labeling_job", _described(s3_store, "tagqa-lj-adjust", "Completed", {"TotalLabeled": 1}, output_key), {"LabelingJobName": "tagqa-lj-adjust"})
    records = backend.fetch_results(job)
    assert [(r.source_ref, r.status, len(r.annotations)) for r in records] == [(images[0].key, APPROVED, 2)]
    assert records[0].event_time == datetime(2024, 5, 2, 9, 14, 31, 518264, tzinfo=timezone.utc).timestamp()


def test_failed_labeling_job_and_retried_creation(s3_store, sagemaker):
    client, stubber = sagemaker
    backend = GroundTruthBackend(store=s3_store, role_arn=ROLE, workteam_arn=WORKTEAM, region="us-east-1", sagemaker_client=client)
    images = _images(s3_store, 1)
    # A retried run: SageMaker already has a job of that name, which is this job.
    stubber.add_client_error("create_labeling_job", "ResourceInUse", "Labeling job tagqa-lj-retry already exists", 400)
    job = backend.create_job(images, job_id="lj-retry")
    stubber.add_response(
        "describe_labeling_job",
        _described(s3_store, "tagqa-lj-retry", "Failed", {}, failure="ClientError: The input manifest is not readable by the role"),
        {"LabelingJobName": "tagqa-lj-retry"},
    )
    status = backend.job_status(job)
    assert status.state == FAILED and "not readable by the role" in status.message


def test_completed_labeling_without_labels_fails_instead_of_verifying_nothing(s3_store, sagemaker):
    client, stubber = sagemaker
    backend = GroundTruthBackend(store=s3_store, role_arn=ROLE, workteam_arn=WORKTEAM, region="us-east-1", sagemaker_client=client)
    stubber.add_response("create_labeling_job", {"LabelingJobArn": "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/x"}, None)
    job = backend.create_job(_images(s3_store, 1), job_id="lj-empty")
    stubber.add_response("describe_labeling_job", _described(s3_store, "tagqa-lj-empty", "Completed", {"FailedNonRetryableError": 1}, "labeling/o.manifest"), {"LabelingJobName": "tagqa-lj-empty"})
    status = backend.job_status(job)
    assert status.state == FAILED and "nothing to verify" in status.message


def test_unknown_region_needs_the_lambda_account(s3_store):
    with pytest.raises(ValueError, match="sa-east-1.*lambda_account_id"):
        GroundTruthBackend(store=s3_store, role_arn=ROLE, workteam_arn=WORKTEAM, region="sa-east-1", sagemaker_client=object())
    backend = GroundTruthBackend(store=s3_store, role_arn=ROLE, workteam_arn=WORKTEAM, region="sa-east-1", sagemaker_client=object(), lambda_account_id="111122223333")
    assert backend._account == "111122223333"


def test_local_store_is_refused(local_store):
    with pytest.raises(ValueError, match="S3 store"):
        GroundTruthBackend(store=local_store, role_arn=ROLE, workteam_arn=WORKTEAM, region="us-east-1", sagemaker_client=object())


@pytest.mark.parametrize(
    ("region", "task", "pre"),
    [
        # The reference pipeline's region.
        ("us-east-1", "BoundingBox", "arn:aws:lambda:us-east-1:432418664414:function:PRE-BoundingBox"),
        # Another account per region: a copy-paste of us-east-1's would fail at job creation.
        ("eu-west-1", "VerificationBoundingBox", "arn:aws:lambda:eu-west-1:568282634449:function:PRE-VerificationBoundingBox"),
        ("ap-southeast-2", "AdjustmentBoundingBox", "arn:aws:lambda:ap-southeast-2:454466003867:function:PRE-AdjustmentBoundingBox"),
    ],
)
def test_lambda_arns_per_region(region, task, pre):
    from tagqa_assets.labeling.backends.groundtruth_lambdas import lambda_account

    assert task_lambdas(region, task, lambda_account(region)) == (pre, pre.replace(":PRE-", ":ACS-"))


@pytest.mark.parametrize(
    ("job_id", "prefix", "expected"),
    [
        # The labeling stage's ids are valid names as they are.
        ("lj-20240502T090000-1a2b3c4d", "tagqa", "tagqa-lj-20240502T090000-1a2b3c4d"),
        # Characters Ground Truth refuses become '-', plus a hash so 'a_b' and 'a-b' stay distinct.
        ("a_b", "tagqa", "tagqa-a-b-" + hashlib.sha256(b"a_b").hexdigest()[:8]),
        # Long ids are cut so that '<name>-verify' still fits in 63 characters.
        ("x" * 80, "tagqa", "tagqa-" + "x" * 41 + "-" + hashlib.sha256(b"x" * 80).hexdigest()[:8]),
        # Another deployment's project name (the IAM policy allows "<ProjectName>*" job names).
        ("lj-1", "acme-qa", "acme-qa-lj-1"),
    ],
)
def test_job_names_are_valid_and_unique(job_id, prefix, expected):
    import re

    name = labeling_job_name(job_id, prefix)
    assert name == expected
    assert re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name + "-verify")


def test_job_name_prefix_is_checked():
    with pytest.raises(ValueError, match="prefix"):
        labeling_job_name("lj-1", "tag_qa")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # A class the label store does not know.
        (lambda line: line["category-metadata"].update({"class-map": {"0": "dent"}}), "dent"),
        # An image that is not part of the job: never attach labels to the wrong image.
        (lambda line: line.update({"source-ref": "s3://elsewhere/raw/x.jpg"}), "not an image of this job"),
        # A broken creation-date cannot order the record against others.
        (lambda line: line["category-metadata"].update({"creation-date": "yesterday"}), "creation-date"),
        # Ground Truth's structure missing: name the line instead of a bare KeyError.
        (lambda line: line["category"].pop("image_size"), "line 1"),
    ],
)
def test_bad_output_lines_are_refused_with_the_manifest_line_named(s3_store, change, message):
    images = _images(s3_store, 3)
    line = _labeling_output(s3_store, images, "tagqa-lj-bad")[0]
    change(line)
    with pytest.raises(ValueError, match=message) as error:
        parse_output(json.dumps(line).encode(), {s3_store.uri_for(i.key): i for i in images}, manifest="s3://b/out.manifest", verified=False)
    assert "s3://b/out.manifest line 1" in str(error.value)
