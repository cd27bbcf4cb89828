"""The model registry resource (TAGQA_REGISTRY_BACKEND)."""

import dagster as dg

from tagqa_assets.contracts.labels import Annotation
from tagqa_assets.labeling.backends.base import ImageRef
from tagqa_assets.labeling.pre_annotations import PreAnnotationResource
from tagqa_assets.registry.backends import LocalModelRegistry, ModelRegistry
from tagqa_assets.storage import ObjectStore

REGISTRY_BACKENDS = ("local", "sagemaker")
DEFAULT_GROUP = "tagqa-scratch-detector"


def open_registry(store: ObjectStore, *, backend: str = "local", group: str = DEFAULT_GROUP,
                  endpoint_url: str = "", region: str = "") -> ModelRegistry:
    """``local`` (records in ``store``) or ``sagemaker`` (model package ``group``); ``ValueError`` otherwise."""
    if backend in ("", "local"):
        return LocalModelRegistry(store)
    if backend == "sagemaker":
        import boto3

        from tagqa_assets.registry.sagemaker import SageMakerModelRegistry

        client = boto3.client("sagemaker", endpoint_url=endpoint_url or None, region_name=region or None)
        return SageMakerModelRegistry(client, group or DEFAULT_GROUP)
    raise ValueError(f"unknown registry backend {backend!r}; use one of {REGISTRY_BACKENDS}")


class ModelRegistryResource(dg.ConfigurableResource):
    """Where model versions are registered: ``local`` (in the store) or ``sagemaker`` (Model Registry)."""

    backend: str = "local"
    sagemaker_model_package_group: str = DEFAULT_GROUP
    sagemaker_endpoint_url: str = ""
    aws_region: str = ""

    def open(self, store: ObjectStore) -> ModelRegistry:
        """The configured registry over ``store``."""
        return open_registry(store, backend=self.backend, group=self.sagemaker_model_package_group,
                             endpoint_url=self.sagemaker_endpoint_url, region=self.aws_region)


class ChampionPreAnnotationResource(PreAnnotationResource):
    """Model-assisted labeling: the current champion's boxes as suggestions for new labeling jobs."""

    model_registry: ModelRegistryResource

    def suggest(self, store: ObjectStore, images: list[ImageRef]) -> dict[str, list[Annotation]]:
        """The champion's boxes per raw key; ``{}`` while no version is Approved."""
        from tagqa_assets.registry.champion import predict_boxes

        return predict_boxes(store, images, registry=self.model_registry.open(store))
