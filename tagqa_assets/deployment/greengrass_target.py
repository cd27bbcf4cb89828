"""The AWS IoT Greengrass v2 target: component versions from the S3 store, deployments to a thing group.

``publish`` creates each component version from its recipe (inline; artifacts stay where the
store put them, ``s3://<bucket>/<prefix>/edge/components/...``) unless Greengrass already has
that exact version, and waits until Greengrass has checked the artifacts (``DEPLOYABLE``).
``apply`` creates a deployment of the model and inference components, keeping the other
components of the target's latest deployment, with ``modelDir`` merged into the inference
component's configuration; then it polls the deployment and each core device's IoT job
execution until every device has finished, or cancels the deployment at the timeout.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from edge_runtime.device_config import DEFAULT_INSTALL_EXTRAS, INSTALL_EXTRAS_KEY, parse_install_extras
from tagqa_assets.contracts.edge import DEPLOYED, FAILED, TIMED_OUT, ComponentRef, Release
from tagqa_assets.deployment.components import StoredComponent
from tagqa_assets.deployment.recipes import artifact_digests, validate_recipe
from tagqa_assets.deployment.targets import DeploymentError, DeploymentOutcome, DeploymentTarget, DeviceOutcome, TargetNotFound
from tagqa_assets.storage import ObjectStore

_TARGET_ARN = re.compile(r"^arn:(aws[a-z-]*):iot:([a-z0-9-]+):(\d{12}):(thinggroup|thing)/([A-Za-z0-9:_-]+)$")
DEVICE_DONE_OK = {"SUCCEEDED"}
DEVICE_REFUSED = {"FAILED", "REJECTED"}
DEVICE_ENDED = DEVICE_DONE_OK | DEVICE_REFUSED | {"TIMED_OUT", "REMOVED", "CANCELED"}
POLICIES = {"failureHandlingPolicy": "ROLLBACK",
            "componentUpdatePolicy": {"timeoutInSeconds": 60, "action": "NOTIFY_COMPONENTS"},
            "configurationValidationPolicy": {"timeoutInSeconds": 30}}


def _error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


class GreengrassTarget(DeploymentTarget):
    """Core devices of a thing group (or one core device) through the ``greengrassv2`` and ``iot`` APIs."""

    kind = "greengrass"

    def __init__(self, store: ObjectStore, *, target_arn: str, greengrass: Any, iot: Any,
                 managed_components: tuple[str, str], greengrass_root: str = "/greengrass/v2",
                 timeout_seconds: float = 900.0, poll_interval_seconds: float = 10.0,
                 device_configuration: dict[str, Any] | None = None,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        match = _TARGET_ARN.match(target_arn or "")
        if not match:
            raise ValueError(f"greengrass target ARN {target_arn!r} is not a thing group or thing ARN "
                             "(arn:aws:iot:<region>:<account>:thinggroup/<name>); set TAGQA_GREENGRASS_TARGET_ARN")
        if not store.uri.startswith("s3://"):
            raise ValueError(f"the greengrass target needs an s3:// store for the component artifacts, got {store.uri}")
        self.partition, self.region, self.account, self.arn_kind, self.name = match.groups()
        self.target_arn = target_arn
        self.store, self.greengrass, self.iot = store, greengrass, iot
        self.managed = managed_components
        self.root = greengrass_root.rstrip("/")
        self.timeout_seconds, self.poll_interval_seconds = timeout_seconds, poll_interval_seconds
        self.device_configuration = dict(device_configuration or {})
        self._clock, self._sleep = clock, sleep
        self._devices: list[str] | None = None

    @property
    def target_id(self) -> str:
        return f"greengrass:{self.name}"

    def component_arn(self, ref: ComponentRef) -> str:
        return (f"arn:{self.partition}:greengrass:{self.region}:{self.account}:components:"
                f"{ref.name}:versions:{ref.version}")

    # -------------------------------------------------------------------- check
    def check(self) -> list[str]:
        try:
            if self.arn_kind == "thing":
                self.iot.describe_thing(thingName=self.name)
                devices = [self.name]
            else:
                self.iot.describe_thing_group(thingGroupName=self.name)
                pages = self.iot.get_paginator("list_things_in_thing_group").paginate(thingGroupName=self.name, recursive=True)
                devices = [thing for page in pages for thing in page.get("things", [])]
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                raise TargetNotFound(f"{self.arn_kind} {self.name!r} ({self.target_arn}) does not exist") from None
            raise
        if not devices:
            raise TargetNotFound(f"thing group {self.name!r} has no core devices: nothing could confirm a deployment")
        self._devices = sorted(devices)
        return list(self._devices)

    # ------------------------------------------------------------------ publish
    def publish(self, components: list[StoredComponent]) -> None:
        for component in components:  # before anything is published
            if component.ref.name == self.managed[1]:
                self._check_bundled_extras(component)
        for component in components:
            arn = self.component_arn(component.ref)
            ours = artifact_digests(component.recipe)
            theirs = self._registered_digests(arn)
            if theirs is not None:
                if theirs != ours:
                    raise DeploymentError(f"Greengrass already has {component.ref} with other artifacts "
                                          f"({sorted(theirs)}); component versions are immutable")
                continue
            validate_recipe(component.recipe, source=arn, uri_schemes=("s3",))
            for key, sha256 in component.artifacts.values():
                actual = hashlib.sha256(self.store.get_bytes(key)).hexdigest()
                if actual != sha256:
                    raise DeploymentError(f"{self.store.uri_for(key)}: sha256 {actual} does not match the recipe "
                                          f"digest {sha256} of {component.ref}; not published")
            created = self.greengrass.create_component_version(inlineRecipe=json.dumps(component.recipe).encode())
            self._wait_deployable(created["arn"], component.ref)

    def _check_bundled_extras(self, component: StoredComponent) -> None:
        """DeploymentError unless ``component``'s wheels install the ``installExtras`` this deployment merges (its
        Install step would fail on every device, offline, with pip's "no matching distribution")."""
        wanted = parse_install_extras(self.device_configuration.get(INSTALL_EXTRAS_KEY, DEFAULT_INSTALL_EXTRAS),
                                      INSTALL_EXTRAS_KEY)
        bundled = component.build.get("extras") or [DEFAULT_INSTALL_EXTRAS]  # builds from before extras: edge only
        missing = [extra for extra in wanted if extra not in bundled]
        if missing:
            raise DeploymentError(f"{component.ref} bundles the wheels of {bundled} but this deployment's "
                                  f"{INSTALL_EXTRAS_KEY} asks for {list(wanted)}: materialize edge_component again "
                                  f"with the same TAGQA_EDGE_PROVIDERS / TAGQA_DEVICE_CONFIGURATION; nothing deployed")

    def _registered_digests(self, arn: str) -> dict[str, str] | None:
        try:
            response = self.greengrass.get_component(arn=arn, recipeOutputFormat="JSON")
        except ClientError as exc:
            if _error_code(exc) == "ResourceNotFoundException":
                return None
            raise
        return artifact_digests(json.loads(response["recipe"]))

    def _wait_deployable(self, arn: str, ref: ComponentRef) -> None:
        deadline = self._clock() + self.timeout_seconds
        while True:
            status = self.greengrass.describe_component(arn=arn)["status"]
            state = status.get("componentState")
            if state == "DEPLOYABLE":
                return
            if state == "FAILED":
                raise DeploymentError(f"Greengrass refused {ref}: {status.get('message', '')} {status.get('errors', {})}")
            if self._clock() >= deadline:
                raise DeploymentError(f"{ref} did not become deployable within {self.timeout_seconds:.0f} s (state {state})")
            self._sleep(self.poll_interval_seconds)

    # -------------------------------------------------------------------- apply
    def model_dir(self, release: Release) -> str:
        """Where the nucleus puts the model component's artifacts on a core device."""
        return f"{self.root}/packages/artifacts/{release.model.name}/{release.model.version}"

    def _carried_over(self) -> dict[str, Any]:
        """Components of the target's latest deployment that tagqa does not manage (kept as they are)."""
        latest = self.greengrass.list_deployments(targetArn=self.target_arn, historyFilter="LATEST_ONLY")
        if not latest.get("deployments"):
            return {}
        current = self.greengrass.get_deployment(deploymentId=latest["deployments"][0]["deploymentId"])
        return {name: spec for name, spec in (current.get("components") or {}).items() if name not in self.managed}

    def apply(self, release: Release | None) -> DeploymentOutcome:
        devices = self._devices if self._devices is not None else self.check()
        components = self._carried_over()
        if release is not None:
            merge = {**self.device_configuration, "modelDir": self.model_dir(release)}
            components[release.model.name] = {"componentVersion": release.model.version}
            components[release.inference.name] = {"componentVersion": release.inference.version,
                                                  "configurationUpdate": {"merge": json.dumps(merge)}}
        name = f"tagqa {release.model}" if release else "tagqa components removed"
        created = self.greengrass.create_deployment(targetArn=self.target_arn, deploymentName=name,
                                                    components=components, deploymentPolicies=POLICIES)
        return self._follow(created["deploymentId"], created["iotJobId"], devices)

    def _follow(self, deployment_id: str, job_id: str, devices: list[str]) -> DeploymentOutcome:
        deadline = self._clock() + self.timeout_seconds
        while True:
            status = self.greengrass.get_deployment(deploymentId=deployment_id)["deploymentStatus"]
            states = self._executions(job_id)
            ended = {d: states[d] for d in devices if states.get(d) in DEVICE_ENDED}
            if status in ("FAILED", "CANCELED") or len(ended) == len(devices):
                break
            if self._clock() >= deadline:
                self.greengrass.cancel_deployment(deploymentId=deployment_id)
                outcomes = {d: DeviceOutcome(DEPLOYED if states.get(d) in DEVICE_DONE_OK else TIMED_OUT,
                                             f"execution {states.get(d, 'not started')}") for d in devices}
                waiting = sorted(d for d, o in outcomes.items() if o.status == TIMED_OUT)
                return DeploymentOutcome(TIMED_OUT, outcomes, f"deployment {deployment_id} timed out after "
                                         f"{self.timeout_seconds:.0f} s waiting for {waiting}; cancelled",
                                         target_deployment_id=deployment_id)
            self._sleep(self.poll_interval_seconds)
        outcomes = {}
        for device in devices:
            state = states.get(device, "not started")
            if state in DEVICE_DONE_OK:
                outcomes[device] = DeviceOutcome(DEPLOYED, "execution SUCCEEDED")
            else:
                outcomes[device] = DeviceOutcome(FAILED, f"execution {state}: {self._reason(device, deployment_id)}")
        failed = {d: o for d, o in outcomes.items() if o.status != DEPLOYED}
        if not failed and status not in ("FAILED", "CANCELED"):
            return DeploymentOutcome(DEPLOYED, outcomes, target_deployment_id=deployment_id)
        error = "; ".join(f"{d}: {o.detail}" for d, o in failed.items()) or f"deployment {deployment_id} is {status}"
        refused = any(states.get(d) in DEVICE_REFUSED for d in failed)
        return DeploymentOutcome(FAILED, outcomes, error, device_refused=refused, target_deployment_id=deployment_id)

    def _executions(self, job_id: str) -> dict[str, str]:
        """Thing name -> IoT job execution status of the deployment's job."""
        states = {}
        for page in self.iot.get_paginator("list_job_executions_for_job").paginate(jobId=job_id):
            for summary in page.get("executionSummaries", []):
                states[summary["thingArn"].rpartition("/")[2]] = summary["jobExecutionSummary"]["status"]
        return states

    def _reason(self, device: str, deployment_id: str) -> str:
        """What the core device reported for the deployment (Greengrass' effective deployment status)."""
        response = self.greengrass.list_effective_deployments(coreDeviceThingName=device)
        for effective in response.get("effectiveDeployments", []):
            if effective.get("deploymentId") == deployment_id:
                details = effective.get("statusDetails") or {}
                parts = [effective.get("reason", ""), ", ".join(details.get("errorTypes", [])),
                         " / ".join(details.get("errorStack", []))]
                return " | ".join(p for p in parts if p) or effective.get("coreDeviceExecutionStatus", "")
        return "no status reported by the device"
