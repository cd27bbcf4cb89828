"""The SageMaker training backend: the same entry point as a SageMaker training job, through boto3.

The job reads the dataset version's YOLO export straight from the S3 store (channel
``training``), optional start weights (channel ``weights``), and the configuration from the
``tagqa_config`` hyper-parameter; it runs ``python -m tagqa_trainer.entrypoint
--sagemaker`` in ``image_uri`` (the trainer image, deploy/sagemaker/Dockerfile; see docs/training.md) with
network isolation, because training needs nothing from the internet. Dagster starts the
job, polls ``describe_training_job``, surfaces ``FailureReason``, and downloads the
``model.tar.gz`` that ``ModelArtifacts.S3ModelArtifacts`` names.
"""

from __future__ import annotations

import json
import logging
import shutil
import tarfile
from pathlib import Path
from typing import Any

from botocore.exceptions import WaiterError

from tagqa_assets.contracts.datasets import YOLO_DIR
from tagqa_assets.contracts.keys import dataset_prefix, model_prefix
from tagqa_assets.storage import ObjectStore, S3ObjectStore
from tagqa_assets.training.backends import EpochCallback, TrainingBackend, TrainingFailed, TrainingJob, TrainingOutcome, read_outcome

ENTRY_POINT = ["python3", "-m", "tagqa_trainer.entrypoint"]
ENTRY_ARGUMENTS = ["--sagemaker"]  # the image's ENTRYPOINT and CMD (deploy/sagemaker/Dockerfile)
WAIT_MARGIN_SECONDS = 3600  # the waiter gives up this long after the job's own runtime limit
# SageMaker parses these from the job's log into CloudWatch metrics (console charts).
METRIC_DEFINITIONS = [
    {"Name": "train:box_loss", "Regex": r'TAGQA_EPOCH .*"box_loss": ([0-9.eE+-]+)'},
    {"Name": "val:map50", "Regex": r'TAGQA_EPOCH .*"map50": ([0-9.eE+-]+)'},
    {"Name": "val:map50_95", "Regex": r'TAGQA_EPOCH .*"map50_95": ([0-9.eE+-]+)'},
]


def training_job_name(model_id: str, prefix: str = "tagqa") -> str:
    """A valid, unique job name (``[a-zA-Z0-9-]``, at most 63 characters) derived from the model id."""
    name = f"{prefix}-{model_id}".replace("_", "-").replace(".", "-")
    return name[-63:].lstrip("-")


class SageMakerTrainingBackend(TrainingBackend):
    """Training jobs through a boto3 ``sagemaker`` client (real AWS or any endpoint speaking its API)."""

    name = "sagemaker"

    def __init__(
        self, client: Any, *, role_arn: str, image_uri: str, work_root: Path, instance_type: str = "ml.m5.xlarge",
        volume_gb: int = 30, max_runtime_seconds: int = 6 * 3600, poll_seconds: float = 30.0,
    ) -> None:
        self.client = client
        self.role_arn = role_arn
        self.image_uri = image_uri
        self.work_root = Path(work_root).resolve()
        self.instance_type = instance_type
        self.volume_gb = volume_gb
        self.max_runtime_seconds = max_runtime_seconds
        self.poll_seconds = poll_seconds

    def job_request(self, job: TrainingJob, store: ObjectStore) -> dict[str, Any]:
        """The ``CreateTrainingJob`` request for ``job`` (deterministic: same job, same request)."""
        if not isinstance(store, S3ObjectStore):
            raise TrainingFailed(f"the sagemaker training backend needs an S3 store (TAGQA_STORE=s3://...), not {store.uri}")
        missing = [name for name, value in (("role_arn", self.role_arn), ("image_uri", self.image_uri)) if not value]
        if missing:
            raise TrainingFailed(f"the sagemaker training backend needs {missing} (TAGQA_SAGEMAKER_ROLE_ARN, TAGQA_SAGEMAKER_TRAINING_IMAGE)")
        channels = [_channel("training", store.uri_for(dataset_prefix(job.dataset_version) + YOLO_DIR) + "/")]
        if job.start_weights:
            if Path(job.start_weights).is_absolute():
                raise TrainingFailed(f"{job.start_weights}: the sagemaker backend needs start weights in the S3 store")
            channels.append(_channel("weights", store.uri_for(job.start_weights)))
        runtime = int(job.params.timeout_minutes * 60) or self.max_runtime_seconds
        return {
            "TrainingJobName": training_job_name(job.model_id),
            "AlgorithmSpecification": {
                "TrainingImage": self.image_uri,
                "TrainingInputMode": "File",
                "ContainerEntrypoint": ENTRY_POINT,
                "ContainerArguments": ENTRY_ARGUMENTS,
                "MetricDefinitions": METRIC_DEFINITIONS,
            },
            "RoleArn": self.role_arn,
            "HyperParameters": {
                "tagqa_config": json.dumps(job.params.to_dict(), sort_keys=True),
                "class_names": json.dumps(list(job.class_names)),
                "model_id": job.model_id,
                "dataset_version": job.dataset_version,
            },
            "InputDataConfig": channels,
            "OutputDataConfig": {"S3OutputPath": store.uri_for(model_prefix(job.model_id) + "sagemaker")},
            "ResourceConfig": {"InstanceType": self.instance_type, "InstanceCount": 1, "VolumeSizeInGB": self.volume_gb},
            "StoppingCondition": {"MaxRuntimeInSeconds": runtime},
            "EnableNetworkIsolation": True,
            "Tags": [
                {"Key": "tagqa:model_id", "Value": job.model_id},
                {"Key": "tagqa:dataset_version", "Value": job.dataset_version},
            ],
        }

    def train(self, job: TrainingJob, store: ObjectStore, *, on_epoch: EpochCallback, log: logging.Logger) -> TrainingOutcome:
        request = self.job_request(job, store)
        name = request["TrainingJobName"]
        self.client.create_training_job(**request)
        log.info(f"started SageMaker training job {name} ({self.instance_type}, image {self.image_uri})")
        try:
            description = self.wait(name, log)
        except BaseException:
            self._stop_quietly(name, log)  # a terminated Dagster run must not leave a paid job running
            raise
        artifact = description.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
        work = self.work_root / "runs" / job.model_id
        shutil.rmtree(work, ignore_errors=True)
        output = _extract(store, artifact, work)
        outcome = read_outcome(output, training_job=name, job_artifact_uri=artifact)
        for record in outcome.epochs:
            on_epoch(record)
        return outcome

    def wait(self, name: str, log: logging.Logger) -> dict[str, Any]:
        """Wait until the job ends (boto3's ``training_job_completed_or_stopped`` waiter, polling every
        ``poll_seconds``); returns the final description or raises ``TrainingFailed`` with its reason."""
        log.info(f"SageMaker training job {name}: waiting for it to end (polling every {self.poll_seconds:g} s)")
        attempts = int((self.max_runtime_seconds + WAIT_MARGIN_SECONDS) / max(self.poll_seconds, 0.001)) + 1
        try:
            self.client.get_waiter("training_job_completed_or_stopped").wait(
                TrainingJobName=name, WaiterConfig={"Delay": self.poll_seconds, "MaxAttempts": attempts})
        except WaiterError as exc:
            description = exc.last_response or {}
            status = description.get("TrainingJobStatus", "unknown")
            reason = description.get("FailureReason") or description.get("Error", {}).get("Message") or str(exc)
            raise TrainingFailed(f"SageMaker training job {name} {status.lower()}: {reason}") from None
        description = self.client.describe_training_job(TrainingJobName=name)
        status = description["TrainingJobStatus"]
        log.info(f"SageMaker training job {name}: {status} / {description.get('SecondaryStatus', '')}")
        if status != "Completed":
            reason = description.get("FailureReason") or "SageMaker gave no FailureReason"
            raise TrainingFailed(f"SageMaker training job {name} {status.lower()}: {reason}")
        return description

    def cleanup(self, outcome: TrainingOutcome) -> None:
        shutil.rmtree(outcome.output_dir.parent, ignore_errors=True)

    def _stop_quietly(self, name: str, log: logging.Logger) -> None:
        try:
            self.client.stop_training_job(TrainingJobName=name)
            log.warning(f"stopped SageMaker training job {name}")
        except Exception as exc:  # the job may already be over; the original error matters more
            log.warning(f"could not stop SageMaker training job {name}: {exc}")


def _channel(name: str, uri: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}},
        "InputMode": "File",
    }


def _extract(store: S3ObjectStore, artifact_uri: str, work: Path) -> Path:
    """Download ``model.tar.gz`` from the store and unpack it into ``work/output``."""
    root = store.uri.rstrip("/") + "/"
    if not artifact_uri.startswith(root):
        raise TrainingFailed(f"training job artifact {artifact_uri!r} is not inside the store {store.uri}")
    archive = store.download_file(artifact_uri[len(root) :], work / "model.tar.gz")
    output = work / "output"
    output.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(output, filter="data")  # refuses absolute paths, '..' and links out of the folder
    except (tarfile.TarError, OSError) as exc:
        raise TrainingFailed(f"{artifact_uri}: cannot unpack the training job's model.tar.gz ({exc})") from exc
    return output
