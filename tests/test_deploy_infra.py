"""deploy/aws: the CloudFormation template lints clean and grants what tagqa needs, no more.

The structural tests render the template the way CloudFormation would for one set of
parameters (Ref, Fn::Sub, Fn::GetAtt, Fn::If) and then ask a small policy evaluator
whether concrete requests are allowed, so a wildcard that is too wide fails a named test.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode import decode

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "deploy" / "aws" / "tagqa.yaml"
README = REPO / "deploy" / "aws" / "README.md"
REGION, ACCOUNT = "eu-central-1", "123456789012"
PARAMETERS = {"BucketName": "acme-tagqa-store", "StorePrefix": "lines/plant-1", "ThingGroupName": "plant-1-lines"}
STORE = "arn:aws:s3:::acme-tagqa-store/lines/plant-1"
IOT = f"arn:aws:iot:{REGION}:{ACCOUNT}"
NO_VALUE = object()

# (resource type, attribute) -> ARN pattern filled with the resource's physical name.
ATTRIBUTES = {
    ("AWS::S3::Bucket", "Arn"): "arn:aws:s3:::{}",
    ("AWS::IAM::Role", "Arn"): f"arn:aws:iam::{ACCOUNT}:role/{{}}",
    ("AWS::IoT::ThingGroup", "Arn"): f"{IOT}:thinggroup/{{}}",
    ("AWS::IoT::RoleAlias", "RoleAliasArn"): f"{IOT}:rolealias/{{}}",
    ("AWS::SQS::Queue", "Arn"): f"arn:aws:sqs:{REGION}:{ACCOUNT}:{{}}",
}
# What Ref returns for each resource type (the physical name, or the ARN for managed policies).
REF = {
    "AWS::S3::Bucket": ("BucketName", "{}"),
    "AWS::IAM::Role": ("RoleName", "{}"),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName", f"arn:aws:iam::{ACCOUNT}:policy/{{}}"),
    "AWS::IoT::ThingGroup": ("ThingGroupName", "{}"),
    "AWS::IoT::RoleAlias": ("RoleAlias", "{}"),
    "AWS::IoT::Policy": ("PolicyName", "{}"),
    "AWS::SQS::Queue": ("QueueName", f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/{{}}"),
}


class Rendered:
    """The template with every intrinsic function resolved for concrete parameters."""

    def __init__(self, template: dict, parameters: dict[str, str]) -> None:
        self.template = template
        self.values: dict[str, object] = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::NoValue": NO_VALUE,
        }
        for name, spec in template["Parameters"].items():
            value = str(parameters.get(name, spec.get("Default")))
            self.values[name] = value.split(",") if spec["Type"] == "CommaDelimitedList" else value
        self.conditions = {name: self.resolve(body) for name, body in template.get("Conditions", {}).items()}
        self.resources = {
            name: {**body, "Properties": self.resolve(body.get("Properties", {}))}
            for name, body in template["Resources"].items()
            if self.enabled(body)
        }
        self.outputs = {name: self.resolve(body["Value"]) for name, body in template["Outputs"].items() if self.enabled(body)}

    def enabled(self, body: dict) -> bool:
        return "Condition" not in body or self.conditions[body["Condition"]]

    def ref(self, name: str):
        if name in self.values:
            return self.values[name]
        body = self.template["Resources"][name]
        prop, pattern = REF[body["Type"]]
        return pattern.format(self.resolve(body["Properties"][prop]))

    def get_att(self, logical: str, attribute: str) -> str:
        body = self.template["Resources"][logical]
        name = self.resolve(body["Properties"][REF[body["Type"]][0]])
        return ATTRIBUTES[(body["Type"], attribute)].format(name)

    def sub(self, text: str) -> str:
        def replace(match: re.Match) -> str:
            literal, name = match.groups()
            if literal:  # ${!Name} is CloudFormation's escape for a literal ${Name} (IoT policy variables)
                return "${" + name + "}"
            if "." in name and name.split(".")[0] in self.template["Resources"]:
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return re.sub(r"\$\{(!?)([^}]+)\}", replace, text)

    def resolve(self, node):
        if isinstance(node, dict) and len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::GetAtt":
                return self.get_att(*(arg if isinstance(arg, list) else arg.split(".", 1)))
            if key == "Fn::Equals":
                return self.resolve(arg[0]) == self.resolve(arg[1])
            if key == "Fn::If":
                return self.resolve(arg[1] if self.conditions[arg[0]] else arg[2])
        if isinstance(node, dict):
            return {key: self.resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [value for value in map(self.resolve, node) if value is not NO_VALUE]
        return node

    def policy(self, logical: str, name: str | None = None) -> dict:
        """The policy document of an IoT policy, a managed policy, or a role's inline policy."""
        props = self.resources[logical]["Properties"]
        if name is None:
            return props["PolicyDocument"]
        return next(p["PolicyDocument"] for p in props["Policies"] if p["PolicyName"] == name)

    def role_statements(self, logical: str) -> list[dict]:
        """Every statement a role's identity grants: inline policies plus attached managed policies of this stack."""
        props = self.resources[logical]["Properties"]
        statements = [s for p in props.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]
        for arn in props.get("ManagedPolicyArns", []):
            owner = next(n for n, r in self.resources.items() if r["Type"] == "AWS::IAM::ManagedPolicy" and self.ref(n) == arn)
            statements += self.policy(owner)["Statement"]
        role_name = self.ref(logical)
        for name, resource in self.resources.items():  # managed policies that attach themselves (Roles:)
            if resource["Type"] == "AWS::IAM::ManagedPolicy" and role_name in resource["Properties"].get("Roles", []):
                statements += self.policy(name)["Statement"]
        return statements


def render(**parameters: str) -> Rendered:
    template, problems = decode(str(TEMPLATE))
    assert not problems, f"{TEMPLATE} does not parse: {problems}"
    return Rendered(template, {**PARAMETERS, **parameters})


def _pattern(text: str, variables: dict[str, str]) -> re.Pattern:
    """IAM/IoT resource or action pattern: policy variables substituted, then * and ? as wildcards."""
    for name, value in variables.items():
        text = text.replace("${" + name + "}", value)
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text), re.IGNORECASE)


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def allowed(statements: list[dict], action: str, resource: str, *, variables=None, context=None) -> bool:
    """Whether some Allow statement grants ``action`` on ``resource`` (no Deny statements here).

    Conditions are honoured for the operators the template uses (StringEquals, StringLike,
    Bool); a condition key missing from ``context`` makes the statement not apply.
    """
    variables, context = variables or {}, context or {}
    for statement in statements:
        assert statement["Effect"] == "Allow", f"unexpected Deny in an identity policy: {statement}"
        if not any(_pattern(a, {}).fullmatch(action) for a in _as_list(statement["Action"])):
            continue
        if not any(_pattern(r, variables).fullmatch(resource) for r in _as_list(statement["Resource"])):
            continue
        if all(
            key in context and any(_pattern(v, {}).fullmatch(context[key]) if op == "StringLike" else v == context[key] for v in _as_list(expected))
            for op, tests in statement.get("Condition", {}).items()
            for key, expected in tests.items()
        ):
            return True
    return False


@pytest.mark.slow  # cfn-lint loads every AWS resource spec
def test_cfn_lint_reports_no_errors_or_warnings():
    cfn_lint = Path(sys.executable).parent / "cfn-lint"
    result = subprocess.run([str(cfn_lint), "--format", "json", str(TEMPLATE)], capture_output=True, text=True, timeout=120)
    findings = json.loads(result.stdout or "[]")
    # Warnings count too: cfn-lint reports a misspelled IAM action (W3037) only as a warning.
    serious = [f"{f['Rule']['Id']} {f['Message']} (line {f['Location']['Start']['LineNumber']})" for f in findings if f["Level"] in ("Error", "Warning")]
    assert not serious, "cfn-lint findings in deploy/aws/tagqa.yaml:\n" + "\n".join(serious)
    assert result.returncode == 0, result.stderr


@pytest.mark.slow  # cfn-lint again
def test_cfn_lint_gate_catches_a_misspelled_iam_action(tmp_path: Path):
    # The gate above relies on cfn-lint checking the IAM actions in the template: make sure it does.
    broken = tmp_path / "tagqa.yaml"
    broken.write_text(TEMPLATE.read_text().replace("sagemaker:CreateTrainingJob\n", "sagemaker:CreateTrainingJobs\n", 1))
    result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), "--format", "json", str(broken)], capture_output=True, text=True, timeout=120)
    assert any("createtrainingjobs" in f["Message"] for f in json.loads(result.stdout or "[]")), result.stdout[:2000]


def test_store_bucket_is_private_versioned_encrypted_and_expires_quarantine():
    rendered = render()
    bucket = rendered.resources["StoreBucket"]
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    assert bucket["DeletionPolicy"] == "Retain", "deleting the stack must never delete the labels, datasets and models"
    rules = {rule["Id"]: rule for rule in props["LifecycleConfiguration"]["Rules"]}
    assert rules["expire-quarantine"]["Prefix"] == "lines/plant-1/quarantine/"
    assert rules["expire-quarantine"]["ExpirationInDays"] == "90"
    # Only quarantine/ and Dagster's compute logs expire: the rest of the store is kept (old versions aside).
    expiring = sorted(rule.get("Prefix", "") for rule in rules.values() if "ExpirationInDays" in rule)
    assert expiring == ["dagster/compute-logs/", "lines/plant-1/quarantine/"]
    deny = rendered.resources["StoreBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in deny)


def test_device_topics_policy_allows_only_the_devices_own_tagqa_topics():
    statements = render().policy("DeviceTopicsPolicy")["Statement"]
    me = {"iot:Connection.Thing.ThingName": "line-1"}

    def can(action: str, resource: str) -> bool:
        return allowed(statements, action, f"{IOT}:{resource}", variables=me, context={"iot:Connection.Thing.IsAttached": "true"})

    assert can("iot:Connect", "client/line-1")
    assert can("iot:Publish", "topic/tagqa/line-1/detections")
    assert can("iot:Publish", "topic/tagqa/line-1/health")
    assert can("iot:Subscribe", "topicfilter/tagqa/line-1/feedback")
    assert can("iot:Receive", "topic/tagqa/line-1/feedback")
    # Another device's identity and topics, wildcard filters, other topics and directions: all denied.
    denied = [
        ("iot:Connect", "client/line-2"),
        ("iot:Connect", "client/line-10"),
        ("iot:Publish", "topic/tagqa/line-2/detections"),
        ("iot:Publish", "topic/tagqa/line-1/feedback"),
        ("iot:Publish", "topic/tagqa/line-1/other"),
        ("iot:Publish", "topic/$aws/things/line-1/shadow/update"),
        ("iot:Subscribe", "topicfilter/tagqa/#"),
        ("iot:Subscribe", "topicfilter/tagqa/+/feedback"),
        ("iot:Subscribe", "topicfilter/tagqa/line-1/detections"),
        ("iot:Receive", "topic/tagqa/line-2/feedback"),
        ("iot:AssumeRoleWithCertificate", f"rolealias/tagqa-token-exchange-role-alias"),
    ]
    leaks = [pair for pair in denied if can(*pair)]
    assert not leaks, f"DeviceTopicsPolicy allows requests outside the device's tagqa topics: {leaks}"
    # Every topic resource is literally under tagqa/<this thing>/: nothing else is named.
    resources = [r for s in statements for r in _as_list(s["Resource"])]
    topics = [r.split(":", 5)[5] for r in resources if ":topic" in r]
    assert topics and all(re.fullmatch(r"topic(filter)?/tagqa/\$\{iot:Connection\.Thing\.ThingName\}/(detections|health|feedback)", t) for t in topics), topics


def test_greengrass_core_policy_is_limited_to_the_things_reserved_topics_and_role_alias():
    rendered = render()
    statements = rendered.policy("GreengrassCorePolicy")["Statement"]
    me = {"iot:Connection.Thing.ThingName": "line-1"}

    def can(action: str, resource: str) -> bool:
        return allowed(statements, action, f"{IOT}:{resource}", variables=me, context={"iot:Connection.Thing.IsAttached": "true"})

    # The nucleus connects as <thing> and <thing>#N, reads its jobs and deployment shadow, reports health.
    assert can("iot:Connect", "client/line-1") and can("iot:Connect", "client/line-1#2")
    assert can("iot:Subscribe", "topicfilter/$aws/things/line-1/jobs/notify-next")
    assert can("iot:Publish", "topic/$aws/things/line-1/greengrassv2/health/json")
    assert can("iot:AssumeRoleWithCertificate", "rolealias/tagqa-token-exchange-role-alias")
    denied = [
        ("iot:Connect", "client/line-10"),
        ("iot:Subscribe", "topicfilter/$aws/things/line-2/jobs/notify-next"),
        ("iot:Publish", "topic/$aws/things/line-2/shadow/update"),
        ("iot:Publish", "topic/tagqa/line-1/detections"),
        ("iot:AssumeRoleWithCertificate", "rolealias/some-admin-alias"),
    ]
    leaks = [pair for pair in denied if can(*pair)]
    assert not leaks, f"GreengrassCorePolicy allows more than the nucleus needs: {leaks}"
    wildcard_actions = {a for s in statements if s["Resource"] == "*" for a in _as_list(s["Action"])}
    assert wildcard_actions <= {
        "greengrass:GetComponentVersionArtifact",
        "greengrass:ResolveComponentCandidates",
        "greengrass:GetDeploymentConfiguration",
        "greengrass:ListThingGroupsForCoreDevice",
    }, f"only the HTTPS data-plane calls may use Resource '*': {wildcard_actions}"


def test_token_exchange_role_trusts_the_iot_credentials_provider_and_its_role_alias():
    rendered = render()
    role = rendered.resources["TokenExchangeRole"]["Properties"]
    trust = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [{"Effect": "Allow", "Principal": {"Service": "credentials.iot.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    alias = rendered.resources["TokenExchangeRoleAlias"]["Properties"]
    assert alias["RoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/tagqa-greengrass-token-exchange"
    assert rendered.outputs["TokenExchangeRoleAlias"] == alias["RoleAlias"] == "tagqa-token-exchange-role-alias"


def test_devices_read_component_artifacts_and_upload_feedback_only():
    statements = render().role_statements("TokenExchangeRole")
    assert allowed(statements, "s3:GetObject", f"{STORE}/edge/components/com.tagqa.Model/1.0.3/model.onnx")
    assert allowed(statements, "s3:PutObject", f"{STORE}/raw/edge-feedback/line-1/2025/01/02/20250102T101010000000Z-a.jpg")
    assert allowed(statements, "s3:PutObject", f"{STORE}/feedback/line-1/2025/01/02/x.json")
    denied = [
        ("s3:GetObject", f"{STORE}/labels/part-1.parquet"),
        ("s3:GetObject", f"{STORE}/models/m1/model.pt"),
        ("s3:PutObject", f"{STORE}/edge/components/com.tagqa.Model/1.0.3/model.onnx"),
        ("s3:PutObject", f"{STORE}/raw/camera-1/2025/01/02/x.jpg"),
        ("s3:DeleteObject", f"{STORE}/raw/edge-feedback/line-1/2025/01/02/x.jpg"),
        ("s3:ListBucket", "arn:aws:s3:::acme-tagqa-store"),
    ]
    leaks = [pair for pair in denied if allowed(statements, *pair)]
    assert not leaks, f"a device could touch more of the store than it needs: {leaks}"


def test_sagemaker_role_is_scoped_to_the_store_prefix():
    rendered = render()
    role = rendered.resources["SageMakerExecutionRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    statements = rendered.role_statements("SageMakerExecutionRole")
    bucket = "arn:aws:s3:::acme-tagqa-store"
    assert allowed(statements, "s3:GetObject", f"{STORE}/datasets/v0001-abcd/yolo/data.yaml")
    assert allowed(statements, "s3:PutObject", f"{STORE}/models/m1/model.tar.gz")
    assert allowed(statements, "s3:ListBucket", bucket, context={"s3:prefix": "lines/plant-1/datasets/v0001-abcd/"})
    assert not allowed(statements, "s3:ListBucket", bucket, context={"s3:prefix": "other-team/"})
    assert not allowed(statements, "s3:GetObject", "arn:aws:s3:::acme-tagqa-store/other-team/secret.csv")
    assert not allowed(statements, "s3:GetObject", "arn:aws:s3:::another-bucket/lines/plant-1/x")
    assert not allowed(statements, "s3:DeleteObject", f"{STORE}/models/m1/model.tar.gz")


def test_feature_store_permissions_follow_the_parameter():
    def feature_store_grants(rendered: Rendered) -> bool:
        return allowed(rendered.role_statements("SageMakerExecutionRole"), "glue:CreateTable", f"arn:aws:glue:{REGION}:{ACCOUNT}:table/sagemaker_featurestore/labels")

    enabled, disabled = render(), render(EnableFeatureStore="false")
    assert feature_store_grants(enabled) and "FeatureStoreOfflineStoreUri" in enabled.outputs
    assert not feature_store_grants(disabled) and "FeatureStoreOfflineStoreUri" not in disabled.outputs
    assert not allowed(disabled.role_statements("OrchestratorRole"), "sagemaker:PutRecord", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:feature-group/tagqa-labels")


def test_orchestrator_can_pass_only_the_sagemaker_role_and_deploy_only_to_the_thing_group():
    rendered = render()
    statements = rendered.role_statements("OrchestratorRole")
    sagemaker_role = rendered.outputs["SageMakerRoleArn"]
    assert allowed(statements, "iam:PassRole", sagemaker_role, context={"iam:PassedToService": "sagemaker.amazonaws.com"})
    assert not allowed(statements, "iam:PassRole", sagemaker_role, context={"iam:PassedToService": "ec2.amazonaws.com"})
    assert not allowed(statements, "iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/admin", context={"iam:PassedToService": "sagemaker.amazonaws.com"})
    group = rendered.outputs["GreengrassTargetArn"]
    assert group == f"{IOT}:thinggroup/plant-1-lines"
    assert allowed(statements, "iot:CreateJob", group)
    assert not allowed(statements, "iot:CreateJob", f"{IOT}:thinggroup/other-fleet")
    gg = f"arn:aws:greengrass:{REGION}:{ACCOUNT}"
    assert allowed(statements, "greengrass:CreateComponentVersion", f"{gg}:components:com.tagqa.Model")
    assert not allowed(statements, "greengrass:CreateComponentVersion", f"{gg}:components:aws.greengrass.Nucleus")
    assert allowed(statements, "sagemaker:CreateTrainingJob", f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/tagqa-v0001-abcd")
    assert allowed(statements, "s3:DeleteObject", f"{STORE}/raw/camera-1/2025/01/02/bad.jpg")  # quarantine moves
    assert not allowed(statements, "s3:DeleteObject", "arn:aws:s3:::acme-tagqa-store/other-team/x")


def test_outputs_map_onto_the_settings_documented_in_the_readme():
    rendered = render()
    assert rendered.outputs["StoreUri"] == "s3://acme-tagqa-store/lines/plant-1"
    assert rendered.outputs["GreengrassTargetArn"].startswith(f"{IOT}:thinggroup/")
    template, _ = decode(str(TEMPLATE))
    section = README.read_text().split("## Outputs and where they go", 1)[1].split("\n## ", 1)[0]
    # Table rows: | `Output` | where it goes | what it is |
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+?) \|", section, re.MULTILINE))
    assert set(rows) == set(template["Outputs"]), f"README outputs table and template Outputs differ: {set(rows) ^ set(template['Outputs'])}"
    for name, body in template["Outputs"].items():
        target = body["Description"].split(": ", 1)[0]
        words = re.findall(r"[\w.-]+", target)
        assert words == re.findall(r"[\w.-]+", rows[name]), f"output {name}: template says {target!r}, README says {rows[name]!r}"


def test_store_bucket_notifies_the_raw_event_queue_of_new_raw_objects_only():
    rendered = render()
    bucket = rendered.resources["StoreBucket"]
    assert bucket["DependsOn"] == "RawEventQueuePolicy"  # S3 validates the destination when configured
    [config] = bucket["Properties"]["NotificationConfiguration"]["QueueConfigurations"]
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:tagqa-raw-events"
    assert config["Queue"] == queue_arn and config["Event"] == "s3:ObjectCreated:*"
    assert config["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "lines/plant-1/raw/"}]
    queue = rendered.resources["RawEventQueue"]["Properties"]
    assert queue["SqsManagedSseEnabled"] and queue["RedrivePolicy"]["deadLetterTargetArn"] == f"arn:aws:sqs:{REGION}:{ACCOUNT}:tagqa-raw-events-dlq"
    assert int(queue["VisibilityTimeout"]) >= 120  # several sensor ticks: messages are deleted on the next tick
    [send, deny] = rendered.resources["RawEventQueuePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert send["Principal"] == {"Service": "s3.amazonaws.com"} and send["Action"] == "sqs:SendMessage" and send["Resource"] == queue_arn
    assert send["Condition"] == {"ArnEquals": {"aws:SourceArn": "arn:aws:s3:::acme-tagqa-store"}, "StringEquals": {"aws:SourceAccount": ACCOUNT}}
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_orchestrator_may_drain_only_the_raw_event_queue():
    rendered = render()
    statements = rendered.role_statements("OrchestratorRole")
    queue_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:tagqa-raw-events"
    assert allowed(statements, "sqs:ReceiveMessage", queue_arn)
    assert allowed(statements, "sqs:DeleteMessage", queue_arn)
    assert not allowed(statements, "sqs:SendMessage", queue_arn)
    assert not allowed(statements, "sqs:PurgeQueue", queue_arn)
    assert not allowed(statements, "sqs:ReceiveMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:tagqa-raw-events-dlq")
    assert not allowed(statements, "sqs:ReceiveMessage", f"arn:aws:sqs:{REGION}:{ACCOUNT}:other-queue")
    assert rendered.outputs["RawEventQueueUrl"] == f"https://sqs.{REGION}.amazonaws.com/{ACCOUNT}/tagqa-raw-events"
