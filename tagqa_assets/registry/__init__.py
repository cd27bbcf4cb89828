"""Dagster definitions of the registry stage and its ``model_registry`` resource (TAGQA_REGISTRY_BACKEND)."""

import dagster as dg

from tagqa_assets.registry.assets import registered_model
from tagqa_assets.registry.resources import ChampionPreAnnotationResource, ModelRegistryResource

model_registry = ModelRegistryResource(
    backend=dg.EnvVar("TAGQA_REGISTRY_BACKEND"),
    sagemaker_model_package_group=dg.EnvVar("TAGQA_SAGEMAKER_MODEL_PACKAGE_GROUP"),
    sagemaker_endpoint_url=dg.EnvVar("TAGQA_SAGEMAKER_ENDPOINT_URL"),
    aws_region=dg.EnvVar("TAGQA_AWS_REGION"),
)
resources = {
    "model_registry": model_registry,
    # Labeling declares the pre_annotation resource; the registry stage supplies the champion.
    "pre_annotation": ChampionPreAnnotationResource(model_registry=model_registry),
}

defs = dg.Definitions(assets=[registered_model], resources=resources)
