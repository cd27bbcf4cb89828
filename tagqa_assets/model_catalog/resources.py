"""The model registry resource (TAGQA_REGISTRY_BACKEND), configured in ``tagqa_assets/resources.py``."""

from typing import Any, Literal, get_args

import dagster as dg
from pydantic import PrivateAttr

from tagqa_assets.model_catalog.registry import LocalModelRegistry, ModelRegistry
from tagqa_assets.storage import ObjectStore

RegistryBackend = Literal["local", "sagemaker"]
REGISTRY_BACKENDS = get_args(RegistryBackend)
DEFAULT_GROUP = "tagqa-scratch-detector"


def open_registry(store: ObjectStore, *, backend: RegistryBackend | str = "local", group: str = DEFAULT_GROUP,
                  endpoint_url: str = "", region: str = "", client: Any = None) -> ModelRegistry:
    """``local`` (records in ``store``) or ``sagemaker`` (model package ``group``); ``ValueError`` otherwise."""
    if backend in ("", "local"):
        return LocalModelRegistry(store)
    if backend == "sagemaker":
        import boto3

        from tagqa_assets.model_catalog.sagemaker import SageMakerModelRegistry

        client = client or boto3.client("sagemaker", endpoint_url=endpoint_url or None, region_name=region or None)
        return SageMakerModelRegistry(client, group or DEFAULT_GROUP)
    raise ValueError(f"unknown registry backend {backend!r}; use one of {REGISTRY_BACKENDS}")


class ModelRegistryResource(dg.ConfigurableResource):
    """Where model versions are registered: ``local`` (in the store) or ``sagemaker`` (Model Registry)."""

    backend: str = "local"  # a RegistryBackend, checked by open_registry (dg.EnvVar cannot fill a Literal)
    sagemaker_model_package_group: str = DEFAULT_GROUP
    sagemaker_endpoint_url: str = ""
    aws_region: str = ""
    _client: Any = PrivateAttr(default=None)  # the boto3 client, built once per resource

    def open(self, store: ObjectStore) -> ModelRegistry:
        """The configured registry over ``store``."""
        registry = open_registry(store, backend=self.backend, group=self.sagemaker_model_package_group,
                                 endpoint_url=self.sagemaker_endpoint_url, region=self.aws_region, client=self._client)
        self._client = getattr(registry, "client", None)
        return registry
