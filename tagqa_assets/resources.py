"""Every resource of the code location, configured from ``Settings``: one wiring for ``dagster`` and ``tagqa``.

``definitions.py`` passes these to Dagster; the ``tagqa`` command line opens the very same
objects through ``resolve_resources`` (Dagster resolves the ``dg.EnvVar`` fields in both).
A setting the user did not set is wired as its default from ``tagqa_assets/settings.py``.
"""

from __future__ import annotations

from types import SimpleNamespace

import dagster as dg

from tagqa_assets.datasets.sensors import RetrainingPolicyResource
from tagqa_assets.deployment.resources import DeploymentResource
from tagqa_assets.ingestion.resources import RawEventQueueResource
from tagqa_assets.labeling.resources import LabelingResource, LabelStoreResource
from tagqa_assets.monitoring.resources import MonitoringResource
from tagqa_assets.model_catalog.resources import ModelRegistryResource
from tagqa_assets.registry.champion import ChampionPreAnnotationResource
from tagqa_assets.registry.policy import PromotionPolicyResource
from tagqa_assets.settings import Settings, load_settings
from tagqa_assets.storage import StoreResource
from tagqa_assets.training.resources import TrainingBackendResource, TrainingProfileResource


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The code location's resources by key, each field wired to its setting."""
    s = settings.dagster_value
    model_registry = ModelRegistryResource(
        backend=s("registry_backend"), sagemaker_model_package_group=s("sagemaker_model_package_group"),
        sagemaker_endpoint_url=s("sagemaker_endpoint_url"), aws_region=s("aws_region"),
    )
    return {
        "store": StoreResource(root=s("store"), s3_endpoint_url=s("s3_endpoint_url"), aws_region=s("aws_region")),
        "raw_events": RawEventQueueResource(
            queue_url=s("raw_event_queue_url"), aws_region=s("aws_region"), fallback_every_ticks=s("raw_fallback_every_ticks"),
        ),
        "labels": LabelStoreResource(
            backend=s("label_store"), feature_group_name=s("feature_group"),
            feature_store_role_arn=s("feature_store_role_arn"), feature_store_offline_uri=s("feature_store_offline_uri"),
            aws_region=s("aws_region"), s3_endpoint_url=s("s3_endpoint_url"),
        ),
        "labeling": LabelingResource(
            backend=s("labeling_backend"), label_studio_url=s("label_studio_url"),
            label_studio_api_token=s("label_studio_api_token"), groundtruth_role_arn=s("groundtruth_role_arn"),
            groundtruth_workteam_arn=s("groundtruth_workteam_arn"), aws_region=s("aws_region"),
        ),
        "retraining": RetrainingPolicyResource(every_days=s("retrain_every_days")),
        "training_backend": TrainingBackendResource(
            backend=s("training_backend"), sagemaker_role_arn=s("sagemaker_role_arn"),
            sagemaker_image_uri=s("sagemaker_training_image"), sagemaker_instance_type=s("sagemaker_instance_type"),
            sagemaker_endpoint_url=s("sagemaker_endpoint_url"), aws_region=s("aws_region"),
        ),
        "promotion_policy": PromotionPolicyResource(
            gate_metric=s("gate_metric"), gate_split=s("gate_split"), gate_threshold=s("gate_threshold"),
            champion_margin=s("champion_margin"), hard_example_margin=s("hard_example_margin"),
            approve_without_champion=s("approve_without_champion"),
            max_int8_map_loss=s("max_int8_map_loss"),
        ),
        "training_profile": TrainingProfileResource(
            epochs=s("train_epochs"), imgsz=s("train_imgsz"), batch=s("train_batch"),
            warm_start=s("retrain_warm_start"), warm_epochs=s("retrain_warm_epochs"),
            demo_epochs=s("demo_train_epochs"), demo_imgsz=s("demo_train_imgsz"), demo_batch=s("demo_train_batch"),
        ),
        "model_registry": model_registry,
        # Labeling declares the pre_annotation resource; the registry stage supplies the champion.
        "pre_annotation": ChampionPreAnnotationResource(model_registry=model_registry),
        "monitoring": MonitoringResource(
            psi_threshold=s("drift_psi"), defect_rate_delta=s("drift_defect_rate_delta"),
            capture_share_delta=s("drift_capture_share_delta"), min_frames=s("drift_min_frames"),
            labeling_sample=s("drift_labeling_sample"),
        ),
        "deployment": DeploymentResource(
            target=s("deploy_target"), device_ids=s("device_id"), devices_root=s("devices_root"),
            mqtt_broker=s("mqtt_broker"), greengrass_target_arn=s("greengrass_target_arn"),
            greengrass_root=s("greengrass_root"), aws_region=s("aws_region"), component_prefix=s("component_prefix"),
            timeout_seconds=s("deploy_timeout_seconds"), device_configuration=s("device_configuration"),
            edge_wheels_dir=s("edge_wheels_dir"), edge_wheel_platform=s("edge_wheel_platform"),
            edge_python_version=s("edge_python_version"), edge_providers=s("edge_providers"),
            edge_precision=s("edge_precision"),
        ),
    }


def resolve_resources(settings: Settings | None = None) -> SimpleNamespace:
    """The code location's resources with their ``dg.EnvVar`` fields resolved, by key (``tagqa``'s way in).

    ``resolve_resources().store.open()`` is the store a run of the code location would use.
    """
    settings = load_settings() if settings is None else settings
    return SimpleNamespace(**{key: _resolved(resource) for key, resource in build_resources(settings).items()})


def _resolved(resource: dg.ConfigurableResource) -> dg.ConfigurableResource:
    # What Dagster does when it initializes a resource, without the ephemeral instance
    # dg.build_resources would create (seconds per command).
    values = {}
    for name in type(resource).model_fields:
        value = getattr(resource, name)
        if isinstance(value, dg.ConfigurableResource):
            value = _resolved(value)
        elif hasattr(value, "env_var_name"):  # dg.EnvVar, dg.EnvVar.int
            value = value.get_value()
        values[name] = value
    return type(resource)(**values)
