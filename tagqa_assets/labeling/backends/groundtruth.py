"""``groundtruth``: label images with SageMaker Ground Truth, then verify the labels (AWS).

As the reference pipeline: a bounding-box labeling job over an input manifest, then a
bounding-box verification job over its output; the verification output manifest becomes
label records (class 0 approves, every other verdict rejects). When the model has
suggestions, the first job is an adjustment job that starts from them instead.

Everything a job reads lives in the S3 store under ``labeling/groundtruth/<job_id>/``
(input manifest, worker templates, label categories) and Ground Truth writes its output
there too (``output/<job name>/manifests/output/output.manifest``). Polling advances the
job: the first ``job_status`` after the labeling job completed starts the verification job.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone
from typing import Any

from tagqa_assets.contracts.keys import check_key
from tagqa_assets.contracts.labels import Annotation, LabelRecord
from tagqa_assets.labeling.backends import groundtruth_manifests as manifests
from tagqa_assets.labeling.backends.base import (COMPLETED, FAILED, OPEN, ImageRef, JobStatus, LabelingBackend,
                                                 LabelingJob, check_job_request)
from tagqa_assets.labeling.backends.groundtruth_lambdas import ADJUSTMENT, BOUNDING_BOX, VERIFICATION, lambda_account, task_lambdas
from tagqa_assets.storage import ObjectStore

JOBS_PREFIX = "labeling/groundtruth/"
_RUNNING = ("Initializing", "InProgress", "Stopping")
_ENDED_BADLY = ("Failed", "Stopped")
_NAME_MAX = 56  # leaves room for "-verify" within Ground Truth's 63 characters


def labeling_job_name(job_id: str, prefix: str = "tagqa") -> str:
    """A valid Ground Truth job name ``<prefix>-<job_id>`` (``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``), unique per job id.

    Characters Ground Truth refuses become ``-`` and too long names are cut; either way a
    hash of ``job_id`` is appended so that two job ids never share a name.
    """
    if not re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,19}", prefix):
        raise ValueError(f"Ground Truth job name prefix {prefix!r} must be 1-20 letters, digits and inner hyphens")
    name = f"{prefix}-" + re.sub(r"[^a-zA-Z0-9]+", "-", job_id).strip("-")
    if len(name) > _NAME_MAX or name != f"{prefix}-{job_id}":
        digest = hashlib.sha256(job_id.encode()).hexdigest()[:8]
        name = f"{name[: _NAME_MAX - 9].rstrip('-')}-{digest}"
    return name


class GroundTruthBackend(LabelingBackend):
    """Labeling jobs as Ground Truth bounding-box (+ verification) jobs (see module docstring)."""

    name = "groundtruth"

    def __init__(
        self,
        *,
        store: ObjectStore,
        role_arn: str,
        workteam_arn: str,
        region: str,
        sagemaker_client: Any = None,
        verification: bool = True,
        lambda_account_id: str = "",
        workers_per_image: int = 1,
        task_time_limit_s: int = 300,
        task_availability_s: int = 6 * 3600,
        name_prefix: str = "tagqa",
    ) -> None:
        if not store.uri.startswith("s3://"):
            raise ValueError(f"the groundtruth backend needs an S3 store (Ground Truth reads images from S3), not {store.uri!r}")
        self.store = store
        self.role_arn = role_arn
        self.workteam_arn = workteam_arn
        self.region = region
        self.verification = verification
        self._account = lambda_account(region, lambda_account_id)
        self.workers_per_image = workers_per_image
        self.task_time_limit_s = task_time_limit_s
        self.task_availability_s = task_availability_s
        self.name_prefix = name_prefix  # IAM policies scope labeling jobs by name: deploy/aws grants "<ProjectName>*"
        if sagemaker_client is None:
            import boto3

            sagemaker_client = boto3.client("sagemaker", region_name=region)
        self.sagemaker = sagemaker_client

    def create_job(self, images: list[ImageRef], *, job_id: str, pre_annotations: dict[str, list[Annotation]] | None = None) -> LabelingJob:
        """Write the manifest, templates and categories to the store and start the labeling job.

        With suggestions in ``pre_annotations`` the job is an AdjustmentBoundingBox job whose
        workers start from the model's boxes. Re-creating a job that already exists in
        SageMaker (a retried run) is not an error.
        """
        check_job_request(job_id, images, pre_annotations)
        prefix = check_key(f"{JOBS_PREFIX}{job_id}") + "/"
        name = labeling_job_name(job_id, self.name_prefix)
        task = ADJUSTMENT if pre_annotations else BOUNDING_BOX
        uris = {image.key: self.store.uri_for(image.key) for image in images}
        self.store.put_bytes(prefix + "input.manifest", manifests.input_manifest(images, uris, pre_annotations or None, when=datetime.now(timezone.utc)))
        self.store.put_bytes(prefix + "bounding-box.liquid.html", manifests.template("bounding-box"))
        self.store.put_json(prefix + "label-categories.json", manifests.label_categories())
        if self.verification:
            self.store.put_bytes(prefix + "verification.liquid.html", manifests.template("verification"))
            self.store.put_json(prefix + "verification-categories.json", manifests.verification_categories())
        self._create(
            name=name,
            attribute=manifests.LABEL_ATTRIBUTE,
            task=task,
            manifest=prefix + "input.manifest",
            template=prefix + "bounding-box.liquid.html",
            categories=prefix + "label-categories.json",
            output=prefix + "output/",
            title="Draw a box around every scratch on a metal tag",
            description="Draw one tight bounding box around each scratch on the metal luggage tag; submit without a box when there is none.",
            keywords=["image", "object detection", "bounding box", "scratch"],
            job_id=job_id,
        )
        return LabelingJob(
            job_id=job_id,
            backend=self.name,
            images=tuple(images),
            created_at=datetime.now(timezone.utc).isoformat(),
            external_id=name,
            detail={
                "labeling_job_name": name,
                "verification_job_name": f"{name}-verify" if self.verification else "",
                "task_type": task,
                "prefix": prefix,
                "region": self.region,
            },
        )

    def job_status(self, job: LabelingJob) -> JobStatus:
        """The state of the labeling job, then of the verification job (which the first poll after labeling starts)."""
        total = len(job.images)
        labeling = self._describe(job.detail["labeling_job_name"])
        if labeling is None:
            return JobStatus(FAILED, 0, total, f"Ground Truth job {job.detail['labeling_job_name']} does not exist")
        state, counters = labeling["LabelingJobStatus"], labeling["LabelCounters"]
        labeled, failed = counters.get("TotalLabeled", 0), counters.get("FailedNonRetryableError", 0)
        if state in _RUNNING:
            return JobStatus(OPEN, labeled, total, f"labeling job {state}: {labeled}/{total} labeled")
        if state in _ENDED_BADLY:
            return JobStatus(FAILED, labeled, total, f"labeling job {state}: {labeling.get('FailureReason', 'no reason given')}")
        if not job.detail.get("verification_job_name"):
            return JobStatus(COMPLETED, labeled, total, f"labeling job completed: {labeled} labeled, {failed} failed")
        if labeled == 0:
            return JobStatus(FAILED, 0, total, f"labeling job completed without a single labeled image ({failed} failed): nothing to verify")
        verification = self._describe(job.detail["verification_job_name"])
        if verification is None:
            self._start_verification(job, labeling)
            return JobStatus(OPEN, 0, total, f"labeling job completed ({labeled} labeled, {failed} failed); verification job started")
        state, counters = verification["LabelingJobStatus"], verification["LabelCounters"]
        verified = counters.get("TotalLabeled", 0)
        if state in _RUNNING:
            return JobStatus(OPEN, verified, total, f"verification job {state}: {verified}/{labeled} verified")
        if state in _ENDED_BADLY:
            return JobStatus(FAILED, verified, total, f"verification job {state}: {verification.get('FailureReason', 'no reason given')}")
        return JobStatus(COMPLETED, verified, total, f"verified {verified} of {labeled} labeled images ({total - labeled} not labeled)")

    def fetch_results(self, job: LabelingJob) -> list[LabelRecord]:
        """Label records from the final output manifest; empty until the last job of the chain completed."""
        verified = bool(job.detail.get("verification_job_name"))
        name = job.detail["verification_job_name"] if verified else job.detail["labeling_job_name"]
        described = self._describe(name)
        if described is None or described["LabelingJobStatus"] != "Completed":
            return []
        manifest = self._key(described["LabelingJobOutput"]["OutputDatasetS3Uri"])
        by_uri = {self.store.uri_for(image.key): image for image in job.images}
        return manifests.parse_output(self.store.get_bytes(manifest), by_uri, manifest=self.store.uri_for(manifest), verified=verified)

    def _start_verification(self, job: LabelingJob, labeling: dict[str, Any]) -> None:
        prefix = job.detail["prefix"]
        output = self._key(labeling["LabelingJobOutput"]["OutputDatasetS3Uri"])
        lines, _ = manifests.labeled_lines(self.store.get_bytes(output))
        self.store.put_bytes(prefix + "verification-input.manifest", lines)
        self._create(
            name=job.detail["verification_job_name"],
            attribute=manifests.VERIFICATION_ATTRIBUTE,
            task=VERIFICATION,
            manifest=prefix + "verification-input.manifest",
            template=prefix + "verification.liquid.html",
            categories=prefix + "verification-categories.json",
            output=prefix + "output/",
            title="Check the scratch boxes on a metal tag",
            description="Look at the boxes drawn around scratches on a metal luggage tag and say whether they are right.",
            keywords=["image", "label verification", "bounding box", "scratch"],
            job_id=job.job_id,
        )

    def _create(self, *, name: str, attribute: str, task: str, manifest: str, template: str, categories: str, output: str, title: str, description: str, keywords: list[str], job_id: str) -> None:
        pre, consolidation = task_lambdas(self.region, task, self._account)
        request = {
            "LabelingJobName": name,
            "LabelAttributeName": attribute,
            "InputConfig": {
                "DataSource": {"S3DataSource": {"ManifestS3Uri": self.store.uri_for(manifest)}},
                "DataAttributes": {"ContentClassifiers": ["FreeOfPersonallyIdentifiableInformation", "FreeOfAdultContent"]},
            },
            "OutputConfig": {"S3OutputPath": self.store.uri_for(output.rstrip("/")) + "/"},
            "RoleArn": self.role_arn,
            "LabelCategoryConfigS3Uri": self.store.uri_for(categories),
            "HumanTaskConfig": {
                "WorkteamArn": self.workteam_arn,
                "UiConfig": {"UiTemplateS3Uri": self.store.uri_for(template)},
                "PreHumanTaskLambdaArn": pre,
                "TaskKeywords": keywords,
                "TaskTitle": title,
                "TaskDescription": description,
                "NumberOfHumanWorkersPerDataObject": self.workers_per_image,
                "TaskTimeLimitInSeconds": self.task_time_limit_s,
                "TaskAvailabilityLifetimeInSeconds": self.task_availability_s,
                "MaxConcurrentTaskCount": 200,
                "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": consolidation},
            },
            "Tags": [{"Key": "tagqa:labeling-job", "Value": job_id}],
        }
        try:
            self.sagemaker.create_labeling_job(**request)
        except self.sagemaker.exceptions.ResourceInUse:
            pass  # created by an earlier attempt of this same job (names are unique per job id)

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            return self.sagemaker.describe_labeling_job(LabelingJobName=name)
        except self.sagemaker.exceptions.ResourceNotFound:
            return None

    def _key(self, uri: str) -> str:
        root = self.store.uri.rstrip("/") + "/"
        if not uri.startswith(root):
            raise ValueError(f"Ground Truth wrote {uri}, outside the store {self.store.uri}")
        return uri[len(root) :]
