"""The model registry resource (TAGQA_REGISTRY_BACKEND) and the same choice for command-line tools."""

import os
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


def open_registry(store: ObjectStore, *, backend: str = "local", group: str = DEFAULT_GROUP,
                  endpoint_url: str = "", region: str = "", client: Any = None) -> ModelRegistry:
    """``local`` (records in ``store``) or ``sagemaker`` (model package ``group``); ``ValueError`` otherwise.

    ``client``: the boto3 ``sagemaker`` client to use (one is built when not given).
    """
    if registry_backend(backend) == "local":
        return LocalModelRegistry(store)
    import boto3

    from tagqa_assets.model_catalog.sagemaker import SageMakerModelRegistry

    client = client or boto3.client("sagemaker", endpoint_url=endpoint_url or None, region_name=region or None)
    return SageMakerModelRegistry(client, group or DEFAULT_GROUP)


def registry_from_environment(store: ObjectStore) -> ModelRegistry:
    """The registry the code location uses, from the same variables, read when called."""
    return open_registry(
        store,
        backend=os.environ.get("TAGQA_REGISTRY_BACKEND", "local"),
        group=os.environ.get("TAGQA_SAGEMAKER_MODEL_PACKAGE_GROUP", DEFAULT_GROUP),
        endpoint_url=os.environ.get("TAGQA_SAGEMAKER_ENDPOINT_URL", ""),
        region=os.environ.get("TAGQA_AWS_REGION", ""),
    )


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
        """The configured registry over ``store``."""
        return open_registry(store, backend=self.backend, group=self.sagemaker_model_package_group,
                             endpoint_url=self.sagemaker_endpoint_url, region=self.aws_region,
                             client=self.sagemaker_client() if registry_backend(self.backend) == "sagemaker" else None)

    def sagemaker_client(self) -> Any:
        """The ``sagemaker`` boto3 client of this resource (built on first use)."""
        if self._client is None:
            import boto3

            self._client = boto3.client("sagemaker", endpoint_url=self.sagemaker_endpoint_url or None,
                                        region_name=self.aws_region or None)
        return self._client
