"""The label store on AWS: a SageMaker Feature Store feature group (offline store only).

Same schema as the reference pipeline (``source_ref`` is the record identifier,
``event_time`` the event time) plus ``image_sha256``. The group is created when missing.
Each record is written with ``PutRecord`` to the offline store; tagqa also keeps a journal
of what it wrote (Parquet parts under ``labels/featurestore/`` in the object store) because
the offline store replicates to S3 only after some minutes. Reads union the journal with
the offline store's Parquet files (``ResolvedOutputS3Uri``), so records written by other
tools (the reference pipeline's Lambda) count too; the offline store's ``is_deleted`` rows
delete the image's label. Duplicates (a record in both places) collapse by ``record_id``.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import pandas as pd

from tagqa_assets.contracts.keys import LABELS_PREFIX
from tagqa_assets.contracts.labels import LabelRecord
from tagqa_assets.labeling.label_store import (
    DELETED,
    STORED_COLUMNS,
    AppendResult,
    LabelStore,
    record_id,
    records_frame,
)
from tagqa_assets.parquet_parts import ParquetParts
from tagqa_assets.storage import ObjectStore

JOURNAL_PREFIX = f"{LABELS_PREFIX}featurestore/"
FEATURE_DEFINITIONS = (
    ("source_ref", "String"),
    ("image_sha256", "String"),
    ("image_width", "Integral"),
    ("image_height", "Integral"),
    ("image_depth", "Integral"),
    ("annotations", "String"),
    ("event_time", "Fractional"),
    ("labeling_job", "String"),
    ("status", "String"),
)


def feature_record(record: LabelRecord) -> list[dict[str, str]]:
    """A ``PutRecord`` record: every feature as a string value (an absent hash is left out)."""
    row = record.to_row()
    return [
        {"FeatureName": name, "ValueAsString": repr(float(row[name])) if name == "event_time" else str(row[name])}
        for name, _ in FEATURE_DEFINITIONS
        if row.get(name) is not None
    ]


def _split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise ValueError(f"offline store location must be an s3:// URI, got {uri!r}")
    bucket, _, prefix = uri[len("s3://") :].partition("/")
    return bucket, prefix


class FeatureStoreLabelStore(LabelStore):
    """Label records in a SageMaker Feature Store feature group (see module docstring)."""

    name = "featurestore"

    def __init__(
        self,
        store: ObjectStore,
        *,
        feature_group_name: str,
        role_arn: str,
        offline_store_s3_uri: str,
        sagemaker_client: Any,
        runtime_client: Any,
        s3_client: Any,
        create_timeout_s: float = 900.0,
        poll_interval_s: float = 5.0,
    ) -> None:
        if not feature_group_name:
            raise ValueError("the featurestore label store needs a feature group name (TAGQA_FEATURE_GROUP)")
        self.store = store
        self.group = feature_group_name
        self.role_arn = role_arn
        self.offline_uri = offline_store_s3_uri
        self.sagemaker = sagemaker_client
        self.runtime = runtime_client
        self.s3 = s3_client
        self.create_timeout_s = create_timeout_s
        self.poll_interval_s = poll_interval_s
        self.journal = ParquetParts(store, JOURNAL_PREFIX, columns=STORED_COLUMNS, unique_by="record_id")
        self._description: dict[str, Any] | None = None

    def ensure_feature_group(self) -> dict[str, Any]:
        """Describe the group, creating it first when it does not exist; waits until it is ``Created``."""
        if self._description is not None:
            return self._description
        try:
            description = self.sagemaker.describe_feature_group(FeatureGroupName=self.group)
        except self.sagemaker.exceptions.ResourceNotFound:
            if not (self.role_arn and self.offline_uri):
                raise ValueError(
                    f"feature group {self.group!r} does not exist; creating it needs TAGQA_FEATURE_STORE_ROLE_ARN "
                    "and TAGQA_FEATURE_STORE_OFFLINE_URI"
                ) from None
            self.sagemaker.create_feature_group(
                FeatureGroupName=self.group,
                RecordIdentifierFeatureName="source_ref",
                EventTimeFeatureName="event_time",
                FeatureDefinitions=[{"FeatureName": n, "FeatureType": t} for n, t in FEATURE_DEFINITIONS],
                OfflineStoreConfig={"S3StorageConfig": {"S3Uri": self.offline_uri}},
                RoleArn=self.role_arn,
                Description="tagqa label store: one label record per labeling decision (latest per source_ref wins)",
            )
            description = self.sagemaker.describe_feature_group(FeatureGroupName=self.group)
        deadline = time.monotonic() + self.create_timeout_s
        while description.get("FeatureGroupStatus") == "Creating":
            if time.monotonic() > deadline:
                raise TimeoutError(f"feature group {self.group!r} still Creating after {self.create_timeout_s:.0f} s")
            time.sleep(self.poll_interval_s)
            description = self.sagemaker.describe_feature_group(FeatureGroupName=self.group)
        status = description.get("FeatureGroupStatus")
        if status not in ("Created", None):
            raise RuntimeError(f"feature group {self.group!r} is {status}: {description.get('FailureReason', 'no reason given')}")
        self._description = description
        return description

    def append(self, records: Sequence[LabelRecord]) -> AppendResult:
        frame = records_frame(records, datetime.now(timezone.utc).isoformat())
        known = set(self.records()["record_id"]) if len(frame) else set()
        fresh = frame[~frame["record_id"].isin(known)].drop_duplicates("record_id")
        if fresh.empty:
            return AppendResult(0, len(frame))
        self.ensure_feature_group()
        by_id = {record_id(r.to_row()): r for r in records}
        for rid in fresh["record_id"]:
            self.runtime.put_record(FeatureGroupName=self.group, Record=feature_record(by_id[rid]), TargetStores=["OfflineStore"])
        part = self.journal.write(fresh)
        return AppendResult(len(fresh), len(frame) - len(fresh), part)

    def _offline_location(self) -> tuple[str, str] | None:
        config = self.ensure_feature_group().get("OfflineStoreConfig", {}).get("S3StorageConfig", {})
        uri = config.get("ResolvedOutputS3Uri") or config.get("S3Uri")
        return _split_s3_uri(uri) if uri else None

    def _offline_keys(self) -> tuple[str, list[str]]:
        location = self._offline_location()
        if location is None:
            return "", []
        bucket, prefix = location
        keys = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys.extend(item["Key"] for item in page.get("Contents", []) if item["Key"].endswith(".parquet"))
        return bucket, sorted(keys)

    def _offline_records(self) -> pd.DataFrame:
        bucket, keys = self._offline_keys()
        frames = []
        for key in keys:
            raw = pd.read_parquet(io.BytesIO(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()))
            frames.append(self._from_offline(raw))
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(STORED_COLUMNS))

    @staticmethod
    def _from_offline(raw: pd.DataFrame) -> pd.DataFrame:
        frame = pd.DataFrame({name: raw[name] if name in raw.columns else None for name, _ in FEATURE_DEFINITIONS})
        frame["image_sha256"] = frame["image_sha256"].where(frame["image_sha256"].notna(), None)
        frame["image_depth"] = frame["image_depth"].fillna(3)
        if "is_deleted" in raw.columns:
            frame.loc[raw["is_deleted"].astype(bool).to_numpy(), "status"] = DELETED
        frame["record_id"] = [record_id(row) for row in frame.to_dict("records")]
        frame["written_at"] = raw["write_time"].astype(str) if "write_time" in raw.columns else ""
        return frame[list(STORED_COLUMNS)]

    def records(self) -> pd.DataFrame:
        journal = self.journal.read()
        frames = [f for f in (journal, self._offline_records()) if not f.empty]
        if not frames:
            return journal
        frame = pd.concat(frames, ignore_index=True)
        return frame.drop_duplicates(subset="record_id", keep="first").reset_index(drop=True)

    def revision(self) -> str:
        journal = self.journal.part_keys()
        _, offline = self._offline_keys()
        return f"{len(journal)}:{journal[-1] if journal else ''}|{len(offline)}:{offline[-1] if offline else ''}"
