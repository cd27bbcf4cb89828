"""The SageMaker Model Registry backend: one model package group, one model package per version.

A version's fields travel as ``CustomerMetadataProperties`` (string keys and values, at most
50 entries, values at most 256 characters): ``tagqa.model_id``, ``tagqa.metric.test.map50``,
``tagqa.config.epochs``, ``tagqa.artifact.onnx`` and so on; each precision variant is one compact
JSON value (``tagqa.variant.int8``: its metrics per split and size), the shipped one
``tagqa.precision``; what the labels since the parent
bought is two compact JSON values, ``tagqa.since_parent`` (parent and labels) and
``tagqa.since_parent_gain`` (the gains), each within the length limit. SageMaker numbers the packages
(``ModelPackageVersion``) and keeps ``ModelApprovalStatus``; approval goes through
``update_model_package``, which is also what SageMaker Studio does.
"""

from __future__ import annotations

import json
from typing import Any

from tagqa_assets.contracts.models import FP32, ModelVersion
from tagqa_assets.model_catalog.registry import ModelRegistry, UnknownModelVersion, check_status, utc_now

PREFIX = "tagqa."
MAX_VALUE = 256
GAIN_KEYS = ("test_gain", "hard_gain")  # ModelVersion.since_parent's gains, kept in their own property


def to_properties(entry: ModelVersion) -> dict[str, str]:
    """Flatten a version into ``CustomerMetadataProperties``; raises ``ValueError`` on an over-long value."""
    props = {
        "model_id": entry.model_id,
        "dataset_version": entry.dataset_version,
        "created_at": entry.created_at,
        "updated_at": entry.updated_at,
        "config_sha256": entry.config_sha256,
        "code_version": entry.code_version,
        "status_reason": entry.status_reason[:MAX_VALUE],
        "precision": entry.precision,
        "precision_reason": entry.precision_reason[:MAX_VALUE],
    }
    for split, values in entry.metrics.items():
        for name, value in values.items():
            props[f"metric.{split}.{name}"] = repr(float(value))
    for name, value in entry.training_config.items():
        props[f"config.{name}"] = json.dumps(value, sort_keys=True)
    for name, uri in entry.artifacts.items():
        props[f"artifact.{name}"] = uri
    for name, variant in entry.variants.items():
        props[f"variant.{name}"] = json.dumps(variant, sort_keys=True, separators=(",", ":"))
    if entry.since_parent:
        gains = {key: value for key, value in entry.since_parent.items() if key in GAIN_KEYS}
        rest = {key: value for key, value in entry.since_parent.items() if key not in GAIN_KEYS}
        props["since_parent"] = json.dumps(rest, separators=(",", ":"))
        props["since_parent_gain"] = json.dumps(gains, separators=(",", ":"))
    too_long = [key for key, value in props.items() if len(value) > MAX_VALUE]
    if too_long:
        raise ValueError(f"model {entry.model_id}: metadata {too_long} exceed SageMaker's {MAX_VALUE}-character limit")
    return {PREFIX + key: value for key, value in props.items() if value != ""}


def from_description(description: dict[str, Any]) -> ModelVersion:
    """Rebuild a version from ``describe_model_package``."""
    props = {key[len(PREFIX) :]: value for key, value in (description.get("CustomerMetadataProperties") or {}).items()
             if key.startswith(PREFIX)}
    metrics: dict[str, dict[str, float]] = {}
    config: dict[str, Any] = {}
    artifacts: dict[str, str] = {}
    variants: dict[str, dict[str, Any]] = {}
    for key, value in props.items():
        kind, _, rest = key.partition(".")
        if kind == "metric":
            split, _, name = rest.partition(".")
            metrics.setdefault(split, {})[name] = float(value)
        elif kind == "config":
            config[rest] = json.loads(value)
        elif kind == "artifact":
            artifacts[rest] = value
        elif kind == "variant":
            variants[rest] = json.loads(value)
    return ModelVersion(
        version=int(description["ModelPackageVersion"]),
        model_id=props.get("model_id", ""),
        dataset_version=props.get("dataset_version", ""),
        status=description["ModelApprovalStatus"],
        created_at=props.get("created_at", str(description.get("CreationTime", ""))),
        metrics=metrics,
        training_config=config,
        config_sha256=props.get("config_sha256", ""),
        code_version=props.get("code_version", "unknown"),
        artifacts=artifacts,
        status_reason=props.get("status_reason", description.get("ApprovalDescription") or ""),
        updated_at=props.get("updated_at", ""),
        external_id=description["ModelPackageArn"],
        precision=props.get("precision", FP32),
        precision_reason=props.get("precision_reason", ""),
        variants=variants,
        since_parent={**json.loads(props.get("since_parent", "{}")), **json.loads(props.get("since_parent_gain", "{}"))},
    )


class SageMakerModelRegistry(ModelRegistry):
    """Model versions as packages of ``group`` through a boto3 ``sagemaker`` client."""

    name = "sagemaker"

    def __init__(self, client: Any, group: str) -> None:
        self.client = client
        self.group = group
        self._group_checked = False

    def _ensure_group(self) -> None:
        if self._group_checked:
            return
        names = [g["ModelPackageGroupName"] for g in self._paginate("list_model_package_groups", "ModelPackageGroupSummaryList",
                                                                    NameContains=self.group)]
        if self.group not in names:
            self.client.create_model_package_group(
                ModelPackageGroupName=self.group,
                ModelPackageGroupDescription="tagqa scratch detectors (YOLO, ONNX for the edge)",
            )
        self._group_checked = True

    def _paginate(self, operation: str, field: str, **request: Any) -> list[dict[str, Any]]:
        """Every item of ``field`` across the pages of ``operation`` (boto3's paginator)."""
        return [item for page in self.client.get_paginator(operation).paginate(**request) for item in page.get(field, [])]

    def register(self, candidate: ModelVersion) -> ModelVersion:
        self._ensure_group()
        now = utc_now()
        entry = ModelVersion.from_dict({**candidate.to_dict(), "created_at": candidate.created_at or now, "updated_at": now})
        arn = self.client.create_model_package(
            ModelPackageGroupName=self.group,
            ModelPackageDescription=f"{entry.model_id} trained on dataset {entry.dataset_version}"[:1000],
            ModelApprovalStatus=check_status(entry.status),
            CustomerMetadataProperties=to_properties(entry),
        )["ModelPackageArn"]
        return from_description(self.client.describe_model_package(ModelPackageName=arn))

    def list_versions(self) -> list[ModelVersion]:
        self._ensure_group()
        summaries = self._paginate("list_model_packages", "ModelPackageSummaryList", ModelPackageGroupName=self.group)
        entries = [from_description(self.client.describe_model_package(ModelPackageName=s["ModelPackageArn"])) for s in summaries]
        return sorted(entries, key=lambda entry: entry.version)

    def get(self, version: int) -> ModelVersion:
        for entry in self.list_versions():
            if entry.version == version:
                return entry
        raise UnknownModelVersion(f"no model version {version} in SageMaker model package group {self.group!r}")

    def set_status(self, version: int, status: str, reason: str = "") -> ModelVersion:
        current = self.get(version)
        updated = ModelVersion.from_dict({**current.to_dict(), "status": check_status(status), "status_reason": reason,
                                          "updated_at": utc_now()})
        self.client.update_model_package(
            ModelPackageArn=current.external_id,
            ModelApprovalStatus=status,
            ApprovalDescription=reason[:1000],
            # Sent in full: the update then reads the same on AWS (merge) and on emulators (replace).
            CustomerMetadataProperties=to_properties(updated),
        )
        return self.get(version)
