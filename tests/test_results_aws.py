"""deploy/aws: the line-results block writes the collector's layout and its roles reach nothing else."""

from pathlib import Path

from cfnlint.decode import decode

TEMPLATE = Path(__file__).resolve().parents[1] / "deploy" / "aws" / "tagqa.yaml"


def _resources() -> dict:
    template, errors = decode(str(TEMPLATE))
    assert not errors, errors
    return template["Resources"]


def _statements(role: dict) -> list[dict]:
    return [s for policy in role["Properties"]["Policies"] for s in policy["PolicyDocument"]["Statement"]]


def test_firehose_writes_the_frames_layout_and_rejects_beside_it():
    s3 = _resources()["ResultsDeliveryStream"]["Properties"]["ExtendedS3DestinationConfiguration"]
    assert s3["Prefix"]["Fn::Sub"].startswith("${StorePrefix}/results/frames/!{partitionKeyFromQuery:year}/"
                                             "!{partitionKeyFromQuery:month}/!{partitionKeyFromQuery:day}/"
                                             "!{partitionKeyFromQuery:device}/")
    assert s3["ErrorOutputPrefix"]["Fn::Sub"].startswith("${StorePrefix}/results/rejects/")
    assert s3["FileExtension"] == ".parquet"
    assert s3["DataFormatConversionConfiguration"]["OutputFormatConfiguration"]["Serializer"].keys() == {"ParquetSerDe"}


def test_result_roles_write_only_under_the_results_prefix():
    resources = _resources()
    for name in ("ResultsFirehoseRole", "ResultsTopicRuleRole"):
        for statement in _statements(resources[name]):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            if any(a.startswith("s3:") and a != "s3:GetBucketLocation" and "List" not in a for a in actions):
                resource = statement["Resource"]["Fn::Sub"]
                assert resource.startswith("${StoreBucket.Arn}/${StorePrefix}/results/"), (name, resource)


def test_topic_rules_split_valid_results_from_rejects():
    resources = _resources()
    valid = resources["ResultsTopicRule"]["Properties"]["TopicRulePayload"]["Sql"]
    rejects = resources["ResultsRejectRule"]["Properties"]["TopicRulePayload"]["Sql"]
    assert "FROM 'tagqa/+/detections'" in valid and "FROM 'tagqa/+/detections'" in rejects
    assert "schema = 'tagqa.detection/1'" in valid and "schema <> 'tagqa.detection/1'" in rejects
