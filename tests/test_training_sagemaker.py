"""The SageMaker training backend against moto's server (request shape, polling, artifact) and botocore's Stubber.

moto accepts the job and reports it ``Completed`` at once without running anything, so the
test plays SageMaker's part in between: it downloads the request's channels exactly as
named, runs the request's entry point with ``--sagemaker`` on that folder layout, and
uploads ``model.tar.gz`` where SageMaker would. The backend then has to find and unpack it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tarfile
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from model_fixtures import TINY, build_version
from tagqa_assets.storage import LocalObjectStore, S3ObjectStore
from tagqa_assets.training.backends import TrainingFailed, TrainingJob
from tagqa_assets.training.sagemaker import ENTRY_POINT, SageMakerTrainingBackend, training_job_name
from tagqa_trainer.params import TrainingParams

ROLE = "arn:aws:iam::123456789012:role/tagqa-training"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/tagqa-train:1"
LOG = logging.getLogger("test")


def backend(client, tmp_path: Path) -> SageMakerTrainingBackend:
    return SageMakerTrainingBackend(client, role_arn=ROLE, image_uri=IMAGE, work_root=tmp_path / "work", poll_seconds=0.01)


def job(version: str, **params: object) -> TrainingJob:
    return TrainingJob(f"{version}-5a5a5a5a", version, TrainingParams(**{**TINY, **params}), ("scratch",))


def play_sagemaker(request: dict, store: S3ObjectStore, root: Path) -> str:
    """Do what a SageMaker training job does with ``request``; returns the artifact URI."""
    for channel in request["InputDataConfig"]:
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        prefix = uri[len(store.uri) + 1 :]
        folder = root / "input" / "data" / channel["ChannelName"]
        count = store.download_prefix(prefix, folder) if prefix.endswith("/") else 0
        if not prefix.endswith("/"):
            store.download_file(prefix, folder / prefix.rsplit("/", 1)[-1])
            count = 1
        assert count, f"channel {channel['ChannelName']} ({uri}) is empty"
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(request["HyperParameters"]))
    spec = request["AlgorithmSpecification"]
    command = [sys.executable, *spec["ContainerEntrypoint"][1:], *spec["ContainerArguments"], "--sagemaker-root", str(root)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    archive = root / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((root / "model").rglob("*")):
            tar.add(path, arcname=str(path.relative_to(root / "model")))
    artifact = f"{request['OutputDataConfig']['S3OutputPath']}/{request['TrainingJobName']}/output/model.tar.gz"
    store.put_file(artifact[len(store.uri) + 1 :], archive)
    return artifact


@pytest.mark.slow
def test_training_job_round_trip_through_moto(s3_store: S3ObjectStore, moto_endpoint: str, tmp_path: Path):
    version = build_version(s3_store, 12, seed=21)
    client = boto3.client("sagemaker", endpoint_url=moto_endpoint, region_name="us-east-1")
    trainer = backend(client, tmp_path)
    request = trainer.job_request(job(version), s3_store)
    artifact = play_sagemaker(request, s3_store, tmp_path / "opt-ml")
    epochs: list[dict] = []
    outcome = trainer.train(job(version), s3_store, on_epoch=epochs.append, log=LOG)
    assert outcome.training_job == training_job_name(f"{version}-5a5a5a5a") and outcome.job_artifact_uri == artifact
    assert outcome.weights.is_file() and [e["epoch"] for e in epochs] == [1, 2]
    assert outcome.summary["network_attempts_blocked"] == 0
    described = client.describe_training_job(TrainingJobName=outcome.training_job)
    assert described["AlgorithmSpecification"]["ContainerEntrypoint"] == ENTRY_POINT
    assert described["RoleArn"] == ROLE and described["ResourceConfig"]["InstanceType"] == "ml.m5.xlarge"
    assert json.loads(described["HyperParameters"]["tagqa_config"])["epochs"] == TINY["epochs"]
    assert described["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == f"{s3_store.uri}/datasets/{version}/yolo/"
    assert described["EnableNetworkIsolation"] is True


def test_start_weights_travel_as_their_own_channel(s3_store: S3ObjectStore, tmp_path: Path):
    s3_store.put_bytes("models/old/weights/best.pt", b"checkpoint")
    request = backend(None, tmp_path).job_request(
        TrainingJob("v0001-00000000-11111111", "v0001-00000000", TrainingParams(), ("scratch",), "models/old/weights/best.pt"),
        s3_store,
    )
    channels = {c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"] for c in request["InputDataConfig"]}
    assert channels["weights"] == f"{s3_store.uri}/models/old/weights/best.pt"
    assert request["StoppingCondition"]["MaxRuntimeInSeconds"] == 6 * 3600


def test_a_local_store_is_refused_with_the_reason(tmp_path: Path):
    with pytest.raises(TrainingFailed, match="needs an S3 store"):
        backend(None, tmp_path).job_request(job("v0001-00000000"), LocalObjectStore(tmp_path / "store"))


def _description(status: str, **extra: object) -> dict:
    name = "tagqa-v0001-00000000-5a5a5a5a"
    return {
        "TrainingJobName": name,
        "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:123456789012:training-job/{name}",
        "ModelArtifacts": {"S3ModelArtifacts": ""},
        "TrainingJobStatus": status,
        "SecondaryStatus": {"InProgress": "Training", "Failed": "Failed"}[status],
        "AlgorithmSpecification": {"TrainingInputMode": "File"},
        "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "CreationTime": datetime(2026, 1, 1, tzinfo=timezone.utc),
        **extra,
    }


def test_failure_reason_is_surfaced(s3_store: S3ObjectStore, tmp_path: Path):
    client = boto3.client("sagemaker", region_name="us-east-1")
    trainer = backend(client, tmp_path)
    request = trainer.job_request(job("v0001-00000000"), s3_store)
    with Stubber(client) as stub:
        stub.add_response("create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x"}, request)
        stub.add_response("describe_training_job", _description("InProgress"), {"TrainingJobName": request["TrainingJobName"]})
        stub.add_response("describe_training_job", _description(
            "Failed", FailureReason="AlgorithmError: diverged: training diverged: loss became non-finite"))
        with pytest.raises(TrainingFailed, match="failed: AlgorithmError: diverged: training diverged"):
            trainer.train(job("v0001-00000000"), s3_store, on_epoch=lambda r: None, log=LOG)
        stub.assert_no_pending_responses()


class WarningLog:
    """Keeps the warning the backend logs when it stops the job."""

    def info(self, message: str) -> None:
        pass

    def warning(self, message: str) -> None:
        self.warned = message


def test_a_terminated_run_stops_its_training_job(s3_store: S3ObjectStore, tmp_path: Path):
    client = boto3.client("sagemaker", region_name="us-east-1")
    trainer = backend(client, tmp_path)
    request = trainer.job_request(job("v0001-00000000"), s3_store)
    log = WarningLog()

    def terminate(**_: object) -> None:  # Dagster's run termination raises inside the step while it waits
        raise KeyboardInterrupt

    client.meta.events.register("after-call.sagemaker.DescribeTrainingJob", terminate)
    with Stubber(client) as stub:
        stub.add_response("create_training_job", {"TrainingJobArn": "arn:aws:sagemaker:us-east-1:1:training-job/x"}, request)
        stub.add_response("describe_training_job", _description("InProgress"))
        stub.add_response("stop_training_job", {}, {"TrainingJobName": request["TrainingJobName"]})
        with pytest.raises(KeyboardInterrupt):
            trainer.train(job("v0001-00000000"), s3_store, on_epoch=lambda r: None, log=log)
        stub.assert_no_pending_responses()
    assert "stopped SageMaker training job" in log.warned


@pytest.mark.slow
def test_entry_point_reports_bad_input_to_sagemaker(tmp_path: Path):
    root = tmp_path / "opt-ml"
    (root / "input" / "data" / "training" / "images" / "train").mkdir(parents=True)
    (root / "input" / "config").mkdir(parents=True)
    (root / "input" / "config" / "hyperparameters.json").write_text(json.dumps(
        {"tagqa_config": json.dumps(TrainingParams(**TINY).to_dict()), "class_names": '["scratch"]'}))
    done = subprocess.run([sys.executable, "-m", "tagqa_trainer.entrypoint", "--sagemaker", "--sagemaker-root", str(root)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    failure = (root / "output" / "failure").read_text()
    assert failure.startswith("bad_input:") and "'train' split has no images" in failure
    assert "TAGQA_ERROR" in done.stdout
