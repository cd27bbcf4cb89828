"""The Greengrass target: component versions and deployments through botocore's Stubber (every
request checked against the real greengrassv2 and iot service models), artifacts in moto's S3.

Each test queues exactly the calls the target must make, in order; an unexpected or missing
call fails the test. Polling runs on a fake clock, so timeouts take no real time.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import ANY, Stubber

from deployment_fixtures import build_release, register_model, wheel_bundle  # noqa: F401
from edge_fixtures import tiny_models  # noqa: F401
from tagqa_assets.contracts.edge import AUTO_ROLLBACK, DEPLOY, DEPLOYED, FAILED, TIMED_OUT, Release, component_key
from tagqa_assets.contracts.models import APPROVED, REJECTED
from tagqa_assets.deployment.components import load_component
from tagqa_assets.deployment.deployer import DeploymentFailed, deploy_release
from tagqa_assets.deployment.greengrass_target import POLICIES, GreengrassTarget
from tagqa_assets.deployment.history import DeploymentHistory
from tagqa_assets.deployment.targets import TargetNotFound
from tagqa_assets.model_catalog.registry import LocalModelRegistry

ACCOUNT, REGION, GROUP = "123456789012", "us-east-1", "tagqa-devices"
GROUP_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/{GROUP}"
DEVICES = ["core-1", "core-2"]
NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
OTHER = {"aws.greengrass.Cli": {"componentVersion": "2.12.0"}}


class FakeClock:
    """``time.monotonic`` and ``time.sleep`` for the target: sleeping advances the clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class Greengrass:
    """Stubbed greengrassv2 + iot clients and the calls a deployment makes, queued in order."""

    def __init__(self, store) -> None:
        self.store = store
        self.gg = boto3.client("greengrassv2", region_name=REGION)
        self.iot = boto3.client("iot", region_name=REGION)
        self.gg_stub, self.iot_stub = Stubber(self.gg), Stubber(self.iot)
        self.gg_stub.activate()
        self.iot_stub.activate()
        self.clock = FakeClock()
        self.deployments = 0

    def target(self, timeout: float = 600) -> GreengrassTarget:
        return GreengrassTarget(self.store, target_arn=GROUP_ARN, greengrass=self.gg, iot=self.iot,
                                managed_components=("com.tagqa.ScratchModel", "com.tagqa.EdgeInference"),
                                timeout_seconds=timeout, poll_interval_seconds=10, clock=self.clock,
                                sleep=self.clock.sleep)

    @staticmethod
    def arn(ref) -> str:
        return f"arn:aws:greengrass:{REGION}:{ACCOUNT}:components:{ref.name}:versions:{ref.version}"

    def check(self) -> None:
        self.iot_stub.add_response("describe_thing_group", {"thingGroupName": GROUP, "thingGroupArn": GROUP_ARN},
                                   {"thingGroupName": GROUP})
        self.iot_stub.add_response("list_things_in_thing_group", {"things": DEVICES},
                                   {"thingGroupName": GROUP, "recursive": True})

    def create_component(self, ref) -> None:
        arn = self.arn(ref)
        recipe = load_component(self.store, ref).recipe
        self.gg_stub.add_client_error("get_component", "ResourceNotFoundException", http_status_code=404,
                                      expected_params={"arn": arn, "recipeOutputFormat": "JSON"})
        self.gg_stub.add_response("create_component_version", {
            "arn": arn, "componentName": ref.name, "componentVersion": ref.version, "creationTimestamp": NOW,
            "status": {"componentState": "REQUESTED"}},
            {"inlineRecipe": json.dumps(recipe).encode()})
        for state in ("INITIATED", "DEPLOYABLE"):  # Greengrass fetches and checks the S3 artifacts meanwhile
            self.gg_stub.add_response("describe_component", {"arn": arn, "status": {"componentState": state}},
                                      {"arn": arn})

    def existing_component(self, ref) -> None:
        recipe = load_component(self.store, ref).recipe
        self.gg_stub.add_response("get_component", {"recipeOutputFormat": "JSON", "recipe": json.dumps(recipe).encode()},
                                  {"arn": self.arn(ref), "recipeOutputFormat": "JSON"})

    def deployment(self, release: Release | None, previous: dict, *, polls: list[dict[str, str]]) -> str:
        """A create_deployment of ``release`` over a latest deployment holding ``previous``; then one
        get_deployment + job executions call per entry of ``polls`` (thing -> execution status)."""
        self.deployments += 1
        latest, new = f"d-{self.deployments - 1}", f"d-{self.deployments}"
        self.gg_stub.add_response("list_deployments", {"deployments": [{"deploymentId": latest}]},
                                  {"targetArn": GROUP_ARN, "historyFilter": "LATEST_ONLY"})
        self.gg_stub.add_response("get_deployment", {"deploymentId": latest, "components": previous},
                                  {"deploymentId": latest})
        components = dict(OTHER)
        if release is not None:
            components[release.model.name] = {"componentVersion": release.model.version}
            model_dir = f"/greengrass/v2/packages/artifacts/{release.model.name}/{release.model.version}"
            components[release.inference.name] = {"componentVersion": release.inference.version,
                                                  "configurationUpdate": {"merge": json.dumps({"modelDir": model_dir})}}
        self.gg_stub.add_response("create_deployment", {"deploymentId": new, "iotJobId": f"job-{new}"},
                                  {"targetArn": GROUP_ARN, "deploymentName": ANY, "components": components,
                                   "deploymentPolicies": POLICIES})
        for states in polls:
            self.gg_stub.add_response("get_deployment", {"deploymentId": new, "deploymentStatus": "ACTIVE"},
                                      {"deploymentId": new})
            self.iot_stub.add_response("list_job_executions_for_job", {"executionSummaries": [
                {"thingArn": f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/{thing}", "jobExecutionSummary": {"status": status}}
                for thing, status in states.items()]}, {"jobId": f"job-{new}"})
        return new

    def components_of(self, release: Release) -> dict:
        return {**OTHER, release.model.name: {"componentVersion": release.model.version},
                release.inference.name: {"componentVersion": release.inference.version}}

    def done(self) -> None:
        self.gg_stub.assert_no_pending_responses()
        self.iot_stub.assert_no_pending_responses()


@pytest.fixture
def releases(s3_store, tiny_models, wheel_bundle):
    registry = LocalModelRegistry(s3_store)
    a = build_release(s3_store, register_model(s3_store, registry, tiny_models["a"], "ds1-aaaaaaaa"), wheel_bundle)
    b = build_release(s3_store, register_model(s3_store, registry, tiny_models["b"], "ds2-bbbbbbbb"), wheel_bundle)
    return registry, a, b


def _deploy_first(gg: Greengrass, registry, a: Release) -> None:
    gg.check()
    gg.create_component(a.model)
    gg.create_component(a.inference)
    gg.deployment(a, {**OTHER, "com.tagqa.ScratchModel": {"componentVersion": "0.0.1"}},
                  polls=[{"core-1": "IN_PROGRESS"}, {"core-1": "SUCCEEDED", "core-2": "SUCCEEDED"}])
    report = deploy_release(gg.target(), gg.store, registry, a, run_id="run-a")
    assert report.record.status == DEPLOYED and report.record.target_deployment_id == "d-1"
    assert report.record.devices == {d: {"status": DEPLOYED, "detail": "execution SUCCEEDED"} for d in DEVICES}


def test_deploy_then_a_failing_device_rolls_the_group_back_and_rejects_the_model(s3_store, releases) -> None:
    registry, a, b = releases
    gg = Greengrass(s3_store)
    _deploy_first(gg, registry, a)

    gg.check()
    gg.create_component(b.model)
    gg.existing_component(b.inference)  # same runtime build: Greengrass already has it, nothing re-created
    failed = gg.deployment(b, gg.components_of(a), polls=[{"core-1": "FAILED", "core-2": "SUCCEEDED"}])
    gg.gg_stub.add_response("list_effective_deployments", {"effectiveDeployments": [{
        "deploymentId": failed, "deploymentName": "tagqa", "targetArn": GROUP_ARN,
        "coreDeviceExecutionStatus": "FAILED", "reason": "component com.tagqa.EdgeInference is BROKEN",
        "creationTimestamp": NOW, "modifiedTimestamp": NOW,
        "statusDetails": {"errorStack": ["DEPLOYMENT_FAILURE", "COMPONENT_BROKEN"], "errorTypes": ["COMPONENT_ERROR"]}}]},
        {"coreDeviceThingName": "core-1"})
    gg.existing_component(a.model)
    gg.existing_component(a.inference)
    gg.deployment(a, gg.components_of(b), polls=[{"core-1": "SUCCEEDED", "core-2": "SUCCEEDED"}])
    with pytest.raises(DeploymentFailed, match=r"core-1: execution FAILED: component com.tagqa.EdgeInference is "
                                               r"BROKEN.*rolled back to com.tagqa.ScratchModel@1.0.0 \(deployed\)"):
        deploy_release(gg.target(), s3_store, registry, b, run_id="run-b")
    gg.done()
    records = DeploymentHistory(s3_store).records(f"greengrass:{GROUP}")
    assert [(r.kind, r.release.model_version, r.status, r.target_deployment_id) for r in records] == [
        (DEPLOY, 1, DEPLOYED, "d-1"), (DEPLOY, 2, FAILED, "d-2"), (AUTO_ROLLBACK, 1, DEPLOYED, "d-3")]
    assert records[1].devices["core-2"]["status"] == DEPLOYED and records[1].devices["core-1"]["status"] == FAILED
    assert registry.get(b.model_version).status == REJECTED
    assert "COMPONENT_BROKEN" in registry.get(b.model_version).status_reason


def test_a_deployment_that_times_out_is_cancelled_and_the_previous_release_restored(s3_store, releases) -> None:
    registry, a, b = releases
    gg = Greengrass(s3_store)
    _deploy_first(gg, registry, a)
    gg.check()
    gg.create_component(b.model)
    gg.existing_component(b.inference)
    # Timeout 30 s, polls every 10 s: at 0, 10, 20 and 30 s core-2 still has not finished.
    stuck = gg.deployment(b, gg.components_of(a), polls=[{"core-1": "SUCCEEDED", "core-2": "QUEUED"}] * 4)
    gg.gg_stub.add_response("cancel_deployment", {"message": "cancelled"}, {"deploymentId": stuck})
    gg.existing_component(a.model)
    gg.existing_component(a.inference)
    gg.deployment(a, gg.components_of(b), polls=[{"core-1": "SUCCEEDED", "core-2": "SUCCEEDED"}])
    with pytest.raises(DeploymentFailed, match=r"timed_out: deployment d-2 timed out after 30 s waiting for "
                                               r"\['core-2'\]; cancelled"):
        deploy_release(gg.target(timeout=30), s3_store, registry, b, run_id="run-b")
    gg.done()
    records = DeploymentHistory(s3_store).records(f"greengrass:{GROUP}")
    assert [(r.kind, r.status) for r in records] == [(DEPLOY, DEPLOYED), (DEPLOY, TIMED_OUT), (AUTO_ROLLBACK, DEPLOYED)]
    assert DeploymentHistory(s3_store).current(f"greengrass:{GROUP}").release == a
    assert registry.get(b.model_version).status == APPROVED, "a timeout says nothing about the model"


def test_a_thing_group_that_does_not_exist_is_refused_before_anything_is_published(s3_store, releases) -> None:
    registry, a, _ = releases
    gg = Greengrass(s3_store)
    gg.iot_stub.add_client_error("describe_thing_group", "ResourceNotFoundException", http_status_code=404,
                                 expected_params={"thingGroupName": GROUP})
    with pytest.raises(TargetNotFound, match=f"thinggroup '{GROUP}' .* does not exist"):
        deploy_release(gg.target(), s3_store, registry, a, run_id="r")
    gg.done()  # and no greengrassv2 call at all: the stubber would have refused it
    assert DeploymentHistory(s3_store).records(f"greengrass:{GROUP}") == []


def test_a_tampered_artifact_is_not_published(s3_store, releases) -> None:
    registry, a, _ = releases
    s3_store.put_bytes(component_key(a.model.name, a.model.version, "model.onnx"), b"not the model")
    gg = Greengrass(s3_store)
    gg.check()
    gg.gg_stub.add_client_error("get_component", "ResourceNotFoundException", http_status_code=404,
                                expected_params={"arn": gg.arn(a.model), "recipeOutputFormat": "JSON"})
    with pytest.raises(DeploymentFailed, match=r"model.onnx: sha256 .* does not match the recipe digest .* not published"):
        deploy_release(gg.target(), s3_store, registry, a, run_id="r")
    gg.done()  # no create_component_version, no create_deployment
    [record] = DeploymentHistory(s3_store).records(f"greengrass:{GROUP}")
    assert record.status == FAILED and DeploymentHistory(s3_store).current(f"greengrass:{GROUP}") is None


def test_greengrass_needs_an_s3_store_and_a_target_arn(local_store) -> None:
    gg = boto3.client("greengrassv2", region_name=REGION)
    with pytest.raises(ValueError, match="needs an s3:// store"):
        GreengrassTarget(local_store, target_arn=GROUP_ARN, greengrass=gg, iot=None, managed_components=("a", "b"))
    with pytest.raises(ValueError, match="TAGQA_GREENGRASS_TARGET_ARN"):
        GreengrassTarget(local_store, target_arn="", greengrass=gg, iot=None, managed_components=("a", "b"))


def test_a_component_without_the_wheels_the_deployment_installs_is_not_deployed(s3_store, releases) -> None:
    """OpenVINO devices get installExtras edge,edge-openvino: a component bundling tagqa[edge] only would fail its
    offline Install on every device, so nothing is published or deployed (only the device check is made)."""
    from tagqa_assets.deployment.resources import DeploymentResource

    registry, a, _ = releases
    gg = Greengrass(s3_store)
    gg.check()
    merge = DeploymentResource(edge_providers="OpenVINOExecutionProvider,CPUExecutionProvider").configuration_overrides()
    target = GreengrassTarget(s3_store, target_arn=GROUP_ARN, greengrass=gg.gg, iot=gg.iot,
                              managed_components=("com.tagqa.ScratchModel", "com.tagqa.EdgeInference"),
                              device_configuration=merge, clock=gg.clock, sleep=gg.clock.sleep)
    assert load_component(s3_store, a.inference).build["extras"] == ["edge"]
    with pytest.raises(DeploymentFailed, match=r"failed before any device changed: com.tagqa.EdgeInference@\S+ "
                                               r"bundles the wheels of \['edge'\] but this deployment's installExtras "
                                               r"asks for \['edge', 'edge-openvino'\]"):
        deploy_release(target, s3_store, registry, a, run_id="run-a")
    gg.done()
    assert [r.status for r in DeploymentHistory(s3_store).records(f"greengrass:{GROUP}")] == [FAILED]
