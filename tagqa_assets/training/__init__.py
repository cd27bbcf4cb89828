"""Training stage: YOLO training per dataset version, ONNX export with parity check, evaluation.

Resources: ``training_backend`` (local | sagemaker, TAGQA_TRAINING_BACKEND),
``training_profile`` (what automated runs train with) and ``model_handoff`` (the IO manager
that passes a model's id from asset to asset, see lineage.py). The training run itself is
``tagqa_trainer`` (no Dagster), started by the backends.
"""

import dagster as dg

from tagqa_assets.training.assets import onnx_model, trained_model
from tagqa_assets.training.checks import onnx_parity
from tagqa_assets.training.evaluation_asset import model_evaluation
from tagqa_assets.training.lineage import HANDOFF_IO_MANAGER, ModelHandoffIOManager
from tagqa_assets.training.resources import TrainingBackendResource, TrainingProfileResource
from tagqa_assets.training.sensors import model_training_sensor

resources = {
    "training_backend": TrainingBackendResource(
        backend=dg.EnvVar("TAGQA_TRAINING_BACKEND"),
        sagemaker_role_arn=dg.EnvVar("TAGQA_SAGEMAKER_ROLE_ARN"),
        sagemaker_image_uri=dg.EnvVar("TAGQA_SAGEMAKER_TRAINING_IMAGE"),
        sagemaker_instance_type=dg.EnvVar("TAGQA_SAGEMAKER_INSTANCE_TYPE"),
        sagemaker_endpoint_url=dg.EnvVar("TAGQA_SAGEMAKER_ENDPOINT_URL"),
        aws_region=dg.EnvVar("TAGQA_AWS_REGION"),
    ),
    "training_profile": TrainingProfileResource(
        epochs=dg.EnvVar.int("TAGQA_TRAIN_EPOCHS"),
        imgsz=dg.EnvVar.int("TAGQA_TRAIN_IMGSZ"),
        batch=dg.EnvVar.int("TAGQA_TRAIN_BATCH"),
    ),
    HANDOFF_IO_MANAGER: ModelHandoffIOManager(),
}

defs = dg.Definitions(
    assets=[trained_model, onnx_model, model_evaluation],
    asset_checks=[onnx_parity],
    sensors=[model_training_sensor],
    resources=resources,
)
