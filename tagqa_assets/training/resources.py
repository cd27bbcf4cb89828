"""Resources of the training stage: where training runs, and the profile automated runs train with."""

import os
from pathlib import Path
from typing import Any, Literal, get_args

import dagster as dg
from pydantic import PrivateAttr

from tagqa_assets.settings import DEFAULTS
from tagqa_assets.training.backends import LocalTrainingBackend, TrainingBackend
from tagqa_assets.training.start_weights import fine_tune_config

TrainingBackendName = Literal["local", "sagemaker"]
TRAINING_BACKENDS: tuple[str, ...] = get_args(TrainingBackendName)


def training_backend_name(name: str) -> TrainingBackendName:
    """``name`` as a ``TrainingBackendName`` (empty: ``local``); ``ValueError`` listing the choices otherwise."""
    name = name or "local"
    if name not in TRAINING_BACKENDS:
        raise ValueError(f"unknown training backend {name!r}; use one of {TRAINING_BACKENDS}")
    return name  # type: ignore[return-value]


class TrainingBackendResource(dg.ConfigurableResource):
    """Where training runs: ``local`` (default, this machine) or ``sagemaker`` (TAGQA_TRAINING_BACKEND).

    Scratch folders (staged datasets, Ultralytics settings and run folders) live under
    ``work_dir``, by default ``$DAGSTER_HOME/tagqa-work`` (``.tagqa/work`` without DAGSTER_HOME).
    ``backend`` is text checked against ``TrainingBackendName`` in ``build`` (``dg.EnvVar``
    cannot fill a ``Literal`` field); the boto3 client is built once per resource object.
    """

    backend: str = "local"
    work_dir: str = ""
    sagemaker_role_arn: str = ""
    sagemaker_image_uri: str = ""
    sagemaker_instance_type: str = "ml.m5.xlarge"
    sagemaker_endpoint_url: str = ""
    aws_region: str = ""
    poll_seconds: float = 30.0
    _client: Any = PrivateAttr(default=None)

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
        if training_backend_name(self.backend) == "local":
            return LocalTrainingBackend(self.work_root())
        from tagqa_assets.training.sagemaker import SageMakerTrainingBackend

        return SageMakerTrainingBackend(
            self.sagemaker_client(), role_arn=self.sagemaker_role_arn, image_uri=self.sagemaker_image_uri,
            work_root=self.work_root(), instance_type=self.sagemaker_instance_type or "ml.m5.xlarge",
            poll_seconds=self.poll_seconds,
        )

    def sagemaker_client(self) -> Any:
        """The ``sagemaker`` boto3 client of this resource (built on first use)."""
        if self._client is None:
            import boto3

            self._client = boto3.client("sagemaker", endpoint_url=self.sagemaker_endpoint_url or None,
                                        region_name=self.aws_region or None)
        return self._client


class TrainingProfileResource(dg.ConfigurableResource):
    """Training settings for runs the automation launches (``model_training_sensor``).

    A run launched from the UI uses ``trained_model``'s run config (the documented CPU
    configuration); automated runs take these instead, so a laptop or a CI loop can train
    small: TAGQA_TRAIN_EPOCHS, TAGQA_TRAIN_IMGSZ, TAGQA_TRAIN_BATCH (0 = the
    ``TrainingConfig`` default). A demo dataset version (every label written by ``tagqa
    demo``, see ``datasets.versions.is_demo_version``) trains with the demo profile instead:
    TAGQA_DEMO_TRAIN_EPOCHS, TAGQA_DEMO_TRAIN_IMGSZ, TAGQA_DEMO_TRAIN_BATCH, one optimizer
    step per batch (docs/training.md, "Automated runs: the training profile and the demo profile").
    """

    epochs: int = 0
    imgsz: int = 0
    batch: int = 0
    # TAGQA_RETRAIN_WARM_START / _EPOCHS: "champion" fine-tunes the champion (start_weights.fine_tune_config).
    warm_start: str = ""
    warm_epochs: int = 10
    demo_epochs: int = DEFAULTS.demo_train_epochs
    demo_imgsz: int = DEFAULTS.demo_train_imgsz
    demo_batch: int = DEFAULTS.demo_train_batch

    def run_config(self, *, demo: bool = False) -> dict:
        """``trained_model``'s op config for an automated run (only the fields that are set).

        ``demo``: the demo profile. Ultralytics otherwise accumulates gradients up to a nominal
        batch of 64 images, which leaves a few hundred demo images a handful of optimizer steps
        per epoch; the demo profile sets the nominal batch to the batch (``nbs`` override).
        A warm start (``warm_start="champion"``) replaces the epochs and schedule of either profile.
        """
        if demo:
            config: dict[str, Any] = {"epochs": self.demo_epochs, "imgsz": self.demo_imgsz, "batch": self.demo_batch,
                                      "overrides": {"nbs": str(self.demo_batch)}}
        else:
            config = {name: value for name, value in (("epochs", self.epochs), ("imgsz", self.imgsz), ("batch", self.batch)) if value}
        if self.warm_start:
            if self.warm_start != "champion":
                raise ValueError(f"TAGQA_RETRAIN_WARM_START={self.warm_start!r}: use champion, or leave it empty for scratch")
            fine_tune = fine_tune_config(self.warm_epochs)
            config.update({**fine_tune, "overrides": {**config.get("overrides", {}), **fine_tune["overrides"]}})
        return {"ops": {"trained_model": {"config": config}}} if config else {}
