"""The model registry resource (TAGQA_REGISTRY_BACKEND), configured in ``tagqa_assets/resources.py``."""

from typing import Any, Literal, get_args

import dagster as dg
from pydantic import PrivateAttr

from tagqa_assets.model_catalog.registry import LocalModelRegistry, ModelRegistry
from tagqa_assets.storage import ObjectStore

RegistryBackend = Literal["local", "sagemaker"]
REGISTRY_BACKENDS: tuple[str, ...] = get_args(RegistryBackend)
DEFAULT_GROUP = "tagqa-scratch-detector"


def registry_backend(name: str) -> RegistryBackend:
    """``name`` as a ``RegistryBackend`` (empty: ``local``); ``ValueError`` listing the choices otherwise."""
    name = name or "local"
    if name not in REGISTRY_BACKENDS:
        raise ValueError(f"unknown registry backend {name!r}; use one of {REGISTRY_BACKENDS}")
    return name  # type: ignore[return-value]


class ModelRegistryResource(dg.ConfigurableResource):
    """Where model versions are registered: ``local`` (in the store) or ``sagemaker`` (Model Registry).

    ``backend`` is checked against ``RegistryBackend`` when the registry is opened: the field
    itself is text because ``dg.EnvVar`` cannot fill a ``Literal`` field (pydantic checks the
    value before the variable is read). The boto3 client is built once per resource object.
    """

    backend: str = "local"
    sagemaker_model_package_group: str = DEFAULT_GROUP
    sagemaker_endpoint_url: str = ""
    aws_region: str = ""
    _client: Any = PrivateAttr(default=None)

    def open(self, store: ObjectStore) -> ModelRegistry:
        """The configured registry over ``store``; ``ValueError`` for an unknown backend."""
        if registry_backend(self.backend) == "local":
            return LocalModelRegistry(store)
        from tagqa_assets.model_catalog.sagemaker import SageMakerModelRegistry

        return SageMakerModelRegistry(self.sagemaker_client(), self.sagemaker_model_package_group or DEFAULT_GROUP)

    def sagemaker_client(self) -> Any:
        """The ``sagemaker`` boto3 client of this resource (built on first use)."""
        if self._client is None:
            import boto3

            self._client = boto3.client("sagemaker", endpoint_url=self.sagemaker_endpoint_url or None,
                                        region_name=self.aws_region or None)
        return self._client
