"""Training stage: YOLO training per dataset version, ONNX export with parity check, evaluation and gates.

Resources: ``training_backend`` (local | sagemaker, TAGQA_TRAINING_BACKEND) and
``promotion_policy`` (gate and champion margin; defaults in code, see docs/training.md).
"""

import dagster as dg

from tagqa_assets.training.assets import onnx_model, trained_model
from tagqa_assets.training.checks import beats_champion, onnx_parity, promotion_gate
from tagqa_assets.training.evaluation_asset import model_evaluation
from tagqa_assets.training.resources import PromotionPolicyResource, TrainingBackendResource, TrainingProfileResource
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
    "promotion_policy": PromotionPolicyResource(
        gate_metric=dg.EnvVar("TAGQA_GATE_METRIC"),
        gate_split=dg.EnvVar("TAGQA_GATE_SPLIT"),
        gate_threshold=dg.EnvVar("TAGQA_GATE_THRESHOLD"),
        champion_margin=dg.EnvVar("TAGQA_CHAMPION_MARGIN"),
        hard_example_margin=dg.EnvVar("TAGQA_HARD_EXAMPLE_MARGIN"),
        approve_without_champion=dg.EnvVar("TAGQA_APPROVE_WITHOUT_CHAMPION"),
    ),
    "training_profile": TrainingProfileResource(
        epochs=dg.EnvVar.int("TAGQA_TRAIN_EPOCHS"),
        imgsz=dg.EnvVar.int("TAGQA_TRAIN_IMGSZ"),
        batch=dg.EnvVar.int("TAGQA_TRAIN_BATCH"),
    ),
}

defs = dg.Definitions(
    assets=[trained_model, onnx_model, model_evaluation],
    asset_checks=[onnx_parity, promotion_gate, beats_champion],
    sensors=[model_training_sensor],
    resources=resources,
)
