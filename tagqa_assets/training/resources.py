"""Resources of the training stage: where training runs, and the profile automated runs train with."""

import os
from pathlib import Path

import dagster as dg

from tagqa_assets.training.backends import LocalTrainingBackend, TrainingBackend

TRAINING_BACKENDS = ("local", "sagemaker")


class TrainingBackendResource(dg.ConfigurableResource):
    """Where training runs: ``local`` (default, this machine) or ``sagemaker`` (TAGQA_TRAINING_BACKEND).

    Scratch folders (staged datasets, Ultralytics settings and run folders) live under
    ``work_dir``, by default ``$DAGSTER_HOME/tagqa-work`` (``.tagqa/work`` without DAGSTER_HOME).
    """

    backend: str = "local"
    work_dir: str = ""
    sagemaker_role_arn: str = ""
    sagemaker_image_uri: str = ""
    sagemaker_instance_type: str = "ml.m5.xlarge"
    sagemaker_endpoint_url: str = ""
    aws_region: str = ""
    poll_seconds: float = 30.0

    def work_root(self) -> Path:
        """The scratch root (created)."""
        if self.work_dir:
            root = Path(self.work_dir)
        elif os.environ.get("DAGSTER_HOME"):
            root = Path(os.environ["DAGSTER_HOME"]) / "tagqa-work"
        else:
            root = Path(".tagqa/work")
        root = root.expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return root

    def build(self) -> TrainingBackend:
        """The configured backend; raises ``ValueError`` for an unknown name."""
        if self.backend in ("", "local"):
            return LocalTrainingBackend(self.work_root())
        if self.backend == "sagemaker":
            import boto3

            from tagqa_assets.training.sagemaker import SageMakerTrainingBackend

            client = boto3.client("sagemaker", endpoint_url=self.sagemaker_endpoint_url or None,
                                  region_name=self.aws_region or None)
            return SageMakerTrainingBackend(
                client, role_arn=self.sagemaker_role_arn, image_uri=self.sagemaker_image_uri,
                work_root=self.work_root(), instance_type=self.sagemaker_instance_type or "ml.m5.xlarge",
                poll_seconds=self.poll_seconds,
            )
        raise ValueError(f"unknown training backend {self.backend!r}; use one of {TRAINING_BACKENDS}")


class TrainingProfileResource(dg.ConfigurableResource):
    """Training settings for runs the automation launches (``model_training_sensor``).

    A run launched from the UI uses ``trained_model``'s run config (the documented CPU
    configuration); automated runs take these instead, so a laptop demo or a CI loop can
    train small: TAGQA_TRAIN_EPOCHS, TAGQA_TRAIN_IMGSZ, TAGQA_TRAIN_BATCH (0 = the
    ``TrainingConfig`` default).
    """

    epochs: int = 0
    imgsz: int = 0
    batch: int = 0

    def run_config(self) -> dict:
        """``trained_model``'s op config for an automated run (only the fields that are set)."""
        config = {name: value for name, value in (("epochs", self.epochs), ("imgsz", self.imgsz), ("batch", self.batch)) if value}
        return {"ops": {"trained_model": {"config": config}}} if config else {}
