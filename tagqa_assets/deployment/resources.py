"""``DeploymentResource``: where releases go (TAGQA_DEPLOY_TARGET) and how components are built.

Configured from the settings in ``tagqa_assets/resources.py``, for the code location and the
``tagqa`` command line alike.
"""

import json
from pathlib import Path
from typing import Any, Literal, get_args

import dagster as dg
from pydantic import PrivateAttr

from edge_runtime.device_config import (DEFAULT_INSTALL_EXTRAS, INSTALL_EXTRAS_KEY, DeviceConfig, DeviceConfigError,
                                        install_extras_for, parse_install_extras, parse_providers)
from tagqa_assets.contracts.edge import INFERENCE_COMPONENT, MODEL_COMPONENT
from tagqa_assets.contracts.models import ModelVersion
from tagqa_assets.deployment.greengrass_target import GreengrassTarget
from tagqa_assets.deployment.local_target import LocalDeviceTarget
from tagqa_assets.deployment.precision import AUTO, ShippedVariant, shipped_variant
from tagqa_assets.deployment.targets import DeploymentTarget
from tagqa_assets.deployment.wheels import REPO, WheelBundle, prepare_wheel_bundle
from tagqa_assets.storage import ObjectStore

TargetKind = Literal["local", "greengrass"]
TARGET_KINDS: tuple[str, ...] = get_args(TargetKind)
INFERENCE_TEMPLATE = REPO / "deploy" / "greengrass" / "recipe.yaml"


class DeploymentResource(dg.ConfigurableResource):
    """Edge deployment settings: the target, its devices, component names and the wheel bundle."""

    target: str = "local"
    device_ids: str = "line-1"  # local target: comma-separated device ids
    devices_root: str = ".tagqa/devices"
    mqtt_broker: str = "127.0.0.1:1883"  # local target: where devices publish their health
    greengrass_target_arn: str = ""  # thing group (or thing) ARN
    greengrass_root: str = "/greengrass/v2"  # the nucleus root on the core devices
    aws_region: str = ""
    component_prefix: str = "com.tagqa."
    component_author: str = "tagqa"
    timeout_seconds: int = 600
    poll_interval_seconds: float = 10.0
    device_configuration: str = ""  # JSON object merged into the inference component's configuration
    inference_recipe_template: str = str(INFERENCE_TEMPLATE)
    edge_wheels_dir: str = ".tagqa/edge-wheels"
    edge_wheel_platform: str = ""  # e.g. manylinux_2_28_aarch64; empty = this machine
    edge_python_version: str = ""  # e.g. 3.11; empty = this interpreter
    # Execution providers in order: comma-separated names or a JSON list with options; empty = the recipe's.
    edge_providers: str = ""
    # Which variant of an int8 registry entry ships: auto (fp32 when the providers start with CUDA/TensorRT),
    # registry (always the entry's), fp32 (always fp32); deployment/precision.py.
    edge_precision: str = AUTO
    # ``target`` is a TargetKind, checked in open_target (dg.EnvVar cannot fill a Literal field).
    _clients: dict[str, Any] = PrivateAttr(default_factory=dict)

    def aws_client(self, service: str) -> Any:
        """The boto3 client for ``service`` (``greengrassv2`` | ``iot``) of this resource, built on first use."""
        if service not in self._clients:
            import boto3

            parts = self.greengrass_target_arn.split(":")
            region = self.aws_region or (parts[3] if len(parts) > 3 else "") or None
            self._clients[service] = boto3.client(service, region_name=region)
        return self._clients[service]

    def component_names(self) -> tuple[str, str]:
        """``(model component name, inference component name)``."""
        return self.component_prefix + MODEL_COMPONENT, self.component_prefix + INFERENCE_COMPONENT

    def configuration_overrides(self) -> dict[str, Any]:
        """``device_configuration`` with ``edge_providers`` as its ``providers``, validated as device configuration.

        When the deployment names providers, ``installExtras`` (what the Greengrass component's
        Install step installs) follows them: ``edge``, plus ``edge-openvino`` when
        OpenVINOExecutionProvider is listed; an ``installExtras`` set by hand must include those.
        ValueError naming the setting (and the key) when it is not a JSON object, holds a key or
        value the runtime would refuse, names an unknown execution provider, when both
        settings name providers, or when ``installExtras`` lacks an extra the providers need.
        """
        value: dict[str, Any] = {}
        if self.device_configuration.strip():
            try:
                value = json.loads(self.device_configuration)
            except json.JSONDecodeError as exc:
                raise ValueError(f"TAGQA_DEVICE_CONFIGURATION is not valid JSON: {exc}") from None
            if not isinstance(value, dict):
                raise ValueError("TAGQA_DEVICE_CONFIGURATION must be a JSON object of device configuration keys")
        if self.edge_providers.strip():
            if "providers" in value:
                raise ValueError("TAGQA_EDGE_PROVIDERS and TAGQA_DEVICE_CONFIGURATION's 'providers' both name the "
                                 "execution providers: set them in one place")
            value = {**value, "providers": self.provider_list()}
        try:
            config = DeviceConfig.from_mapping(value, source="TAGQA_DEVICE_CONFIGURATION")
        except DeviceConfigError as exc:
            raise ValueError(str(exc)) from None
        if "providers" in value:
            needed = install_extras_for(config.providers)
            if INSTALL_EXTRAS_KEY not in value:
                value[INSTALL_EXTRAS_KEY] = ",".join(needed)
            else:
                missing = [e for e in needed if e not in parse_install_extras(value[INSTALL_EXTRAS_KEY], INSTALL_EXTRAS_KEY)]
                if missing:
                    raise ValueError(f"TAGQA_DEVICE_CONFIGURATION: {INSTALL_EXTRAS_KEY!r} "
                                     f"{value[INSTALL_EXTRAS_KEY]!r} lacks {missing}, which the providers "
                                     f"{[s.name for s in config.providers]} need on the device (leave it out to "
                                     "have it follow the providers)")
        return value

    def install_extras(self) -> tuple[str, ...]:
        """The package extras the deployed devices install (``installExtras``; ``edge`` unless providers need more):
        the extras whose wheels the inference component bundles."""
        value = self.configuration_overrides().get(INSTALL_EXTRAS_KEY, DEFAULT_INSTALL_EXTRAS)
        return parse_install_extras(value, INSTALL_EXTRAS_KEY)

    def provider_list(self) -> list[Any]:
        """``edge_providers`` as the configuration's ``providers`` list; ValueError naming TAGQA_EDGE_PROVIDERS."""
        text = self.edge_providers.strip()
        try:
            raw = json.loads(text) if text.startswith("[") else text
            return [spec.to_json() for spec in parse_providers(raw, "TAGQA_EDGE_PROVIDERS")]
        except json.JSONDecodeError as exc:
            raise ValueError(f"TAGQA_EDGE_PROVIDERS is not a valid JSON list: {exc}") from None
        except DeviceConfigError as exc:
            raise ValueError(str(exc)) from None

    def provider_names(self) -> tuple[str, ...]:
        """Names of the execution providers the deployment sets, in order; empty when it leaves the recipe's."""
        value = self.configuration_overrides()  # validated there, providers included
        if "providers" not in value:
            return ()
        return tuple(spec.name for spec in parse_providers(value["providers"], "TAGQA_DEVICE_CONFIGURATION providers"))

    def shipped_variant(self, entry: ModelVersion) -> ShippedVariant:
        """The precision variant of ``entry`` the model component holds for this deployment's providers; ValueError
        naming the setting when TAGQA_EDGE_PRECISION or the provider settings are invalid."""
        return shipped_variant(entry, self.provider_names(), self.edge_precision)

    def wheel_bundle(self) -> WheelBundle:
        """The inference component's wheels, built by deploy/greengrass/prepare_artifact.py when needed: those of
        ``tagqa[edge]``, plus those of every other extra the devices install (a folder per set of extras)."""
        extras = self.install_extras()
        directory = self.edge_wheels_dir if extras == (DEFAULT_INSTALL_EXTRAS,) else \
            f"{self.edge_wheels_dir.rstrip('/')}-{'+'.join(extras)}"
        return prepare_wheel_bundle(directory, platform=self.edge_wheel_platform,
                                    python_version=self.edge_python_version, extras=extras)

    def open_target(self, store: ObjectStore, *, greengrass: Any = None, iot: Any = None) -> DeploymentTarget:
        """The configured target over ``store``; ValueError for an unknown kind or incomplete settings."""
        if self.target == "local":
            devices = [d.strip() for d in self.device_ids.split(",") if d.strip()]
            return LocalDeviceTarget(store, devices_root=Path(self.devices_root), device_ids=devices,
                                     broker=self.mqtt_broker, timeout_seconds=self.timeout_seconds,
                                     device_configuration=self.configuration_overrides())
        if self.target == "greengrass":
            greengrass = greengrass or self.aws_client("greengrassv2")
            iot = iot or self.aws_client("iot")
            return GreengrassTarget(store, target_arn=self.greengrass_target_arn, greengrass=greengrass, iot=iot,
                                    managed_components=self.component_names(), greengrass_root=self.greengrass_root,
                                    timeout_seconds=self.timeout_seconds,
                                    poll_interval_seconds=self.poll_interval_seconds,
                                    device_configuration=self.configuration_overrides())
        raise ValueError(f"unknown deployment target {self.target!r}; use one of {TARGET_KINDS} (TAGQA_DEPLOY_TARGET)")
