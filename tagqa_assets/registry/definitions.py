"""Dagster definitions of the registry stage: ``registered_model``, the promotion checks and the stage's resources."""

import dagster as dg

from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.registry.assets import registered_model
from tagqa_assets.registry.champion import ChampionPreAnnotationResource
from tagqa_assets.registry.checks import beats_champion, promotion_gate
from tagqa_assets.registry.policy import PromotionPolicyResource

model_registry = ModelRegistryResource(
    backend=dg.EnvVar("TAGQA_REGISTRY_BACKEND"),
    sagemaker_model_package_group=dg.EnvVar("TAGQA_SAGEMAKER_MODEL_PACKAGE_GROUP"),
    sagemaker_endpoint_url=dg.EnvVar("TAGQA_SAGEMAKER_ENDPOINT_URL"),
    aws_region=dg.EnvVar("TAGQA_AWS_REGION"),
)
resources = {
    "model_registry": model_registry,
    "promotion_policy": PromotionPolicyResource(
        gate_metric=dg.EnvVar("TAGQA_GATE_METRIC"),
        gate_split=dg.EnvVar("TAGQA_GATE_SPLIT"),
        gate_threshold=dg.EnvVar("TAGQA_GATE_THRESHOLD"),
        champion_margin=dg.EnvVar("TAGQA_CHAMPION_MARGIN"),
        hard_example_margin=dg.EnvVar("TAGQA_HARD_EXAMPLE_MARGIN"),
        approve_without_champion=dg.EnvVar("TAGQA_APPROVE_WITHOUT_CHAMPION"),
    ),
    # Labeling declares the pre_annotation resource; the registry stage supplies the champion.
    "pre_annotation": ChampionPreAnnotationResource(model_registry=model_registry),
}

defs = dg.Definitions(assets=[registered_model], asset_checks=[promotion_gate, beats_champion], resources=resources)
