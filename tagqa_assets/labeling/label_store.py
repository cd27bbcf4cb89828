"""The label store: append-only label records; the latest record per image wins.

``LabelStore`` is the interface (append, read all records, a cheap revision token); the
local implementation keeps Parquet parts under ``labels/records/`` in the object store
(written and compacted by ``parquet_parts.py``), the AWS one (``featurestore.py``) writes a SageMaker Feature Store feature group. Everything
that decides *which* label counts lives here, once, as pure functions over the records:

- the latest record per ``source_ref`` wins (greatest ``event_time``; ties go to the record
  written last, like the reference pipeline's ``write_time DESC``);
- a winning ``REJECTED`` record removes the image from training;
- the approved snapshot is the set of images whose winning record is ``APPROVED``, with a
  content hash over (image sha256, boxes) that changes exactly when training data changes.

Every record has a ``record_id`` (hash of its fields): appending a record that is already
stored is a no-op, and readers drop repeated ids, so re-running an import never duplicates.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from tagqa_assets.contracts.keys import LABELS_PREFIX
from tagqa_assets.contracts.labels import APPROVED, DEFAULT_CLASS_NAMES, LABEL_RECORD_COLUMNS, LabelRecord
from tagqa_assets.parquet_parts import ParquetParts
from tagqa_assets.settings import defect_classes
from tagqa_assets.storage import ObjectStore

RECORDS_PREFIX = f"{LABELS_PREFIX}records/"
STORED_COLUMNS = (*LABEL_RECORD_COLUMNS, "record_id", "written_at")
SNAPSHOT_COLUMNS = ("image_key", "sha256", "width", "height", "annotations", "event_time", "labeling_job")
# Status of a Feature Store row whose ``is_deleted`` flag is set: the image has no label.
DELETED = "DELETED"


def record_id(row: dict) -> str:
    """Identity of one label record: equal fields give an equal id, whatever the writer."""
    canonical = "\x1f".join(
        [
            str(row["source_ref"]),
            repr(float(row["event_time"])),
            str(row["labeling_job"]),
            str(row["status"]),
            canonical_annotations(row["annotations"]),
        ]
    )
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]


def canonical_annotations(annotations: str | list) -> str:
    """Annotations as a canonical JSON string: boxes sorted, numbers rounded to 1/1000 px."""
    items = json.loads(annotations) if isinstance(annotations, str) else annotations
    boxes = sorted(
        [int(a["class_id"]), round(float(a["left"]), 3), round(float(a["top"]), 3), round(float(a["width"]), 3), round(float(a["height"]), 3)]
        for a in items
    )
    return json.dumps([dict(zip(("class_id", "left", "top", "width", "height"), box)) for box in boxes], separators=(",", ":"))


def records_frame(records: Sequence[LabelRecord], written_at: str) -> pd.DataFrame:
    """Label records as stored rows (``STORED_COLUMNS``)."""
    rows = []
    for record in records:
        row = record.to_row()
        row["record_id"] = record_id(row)
        row["written_at"] = written_at
        rows.append(row)
    return pd.DataFrame(rows, columns=list(STORED_COLUMNS))


@dataclass(frozen=True)
class AppendResult:
    """What an append did: records newly stored, records that were already there."""

    appended: int
    already_present: int
    part: str | None = None


@dataclass(frozen=True)
class LabelSnapshot:
    """The approved training labels at one moment.

    ``frame`` has ``SNAPSHOT_COLUMNS``, one row per distinct image content, sorted by
    sha256; ``snapshot_id`` is the sha256 of its content (image hash + canonical boxes), so
    two snapshots with the same training data have the same id whatever their history.
    """

    snapshot_id: str
    frame: pd.DataFrame
    rejected: int  # images whose winning record is REJECTED
    unresolved: int  # approved winners without an image hash (written by foreign tools)
    class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES  # the taxonomy the class ids refer to

    @property
    def images(self) -> int:
        return len(self.frame)


def latest_records(records: pd.DataFrame) -> pd.DataFrame:
    """The winning record per ``source_ref`` (see module docstring), one row each."""
    if records.empty:
        return records.copy()
    ordered = records.drop_duplicates(subset="record_id", keep="first").copy()
    ordered["_event"] = ordered["event_time"].astype(float)
    ordered = ordered.sort_values(["_event", "written_at", "record_id"], kind="stable")
    winners = ordered.drop_duplicates(subset="source_ref", keep="last").drop(columns="_event")
    return winners.sort_values("source_ref", kind="stable").reset_index(drop=True)


def snapshot_of(records: pd.DataFrame, class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES) -> LabelSnapshot:
    """The approved snapshot of ``records`` (all stored rows, any order) under the taxonomy ``class_names``."""
    latest = latest_records(records)
    if latest.empty:
        empty = pd.DataFrame(columns=list(SNAPSHOT_COLUMNS))
        return LabelSnapshot(snapshot_hash(empty, class_names), empty, 0, 0, tuple(class_names))
    rejected = int((latest["status"] != APPROVED).sum())
    approved = latest[latest["status"] == APPROVED]
    has_hash = approved["image_sha256"].notna() & (approved["image_sha256"].astype(str) != "")
    unresolved = int((~has_hash).sum())
    approved = approved[has_hash].copy()
    approved["_event"] = approved["event_time"].astype(float)
    # The same content labeled under two keys counts once: the newest label wins.
    approved = approved.sort_values(["_event", "written_at", "record_id"], kind="stable").drop_duplicates("image_sha256", keep="last")
    frame = pd.DataFrame(
        {
            "image_key": approved["source_ref"].astype(str),
            "sha256": approved["image_sha256"].astype(str),
            "width": approved["image_width"].astype("int64"),
            "height": approved["image_height"].astype("int64"),
            "annotations": [canonical_annotations(a) for a in approved["annotations"]],
            "event_time": approved["event_time"].astype(float),
            "labeling_job": approved["labeling_job"].astype(str),
        }
    )
    frame = frame.sort_values("sha256", kind="stable").reset_index(drop=True)
    return LabelSnapshot(snapshot_hash(frame, class_names), frame, rejected, unresolved, tuple(class_names))


def snapshot_hash(frame: pd.DataFrame, class_names: tuple[str, ...] = DEFAULT_CLASS_NAMES) -> str:
    """sha256 over ``sha256 <TAB> canonical boxes`` lines, sorted: what training sees, nothing else.

    The taxonomy is part of it (class ids mean nothing without their names): a taxonomy
    other than the default adds a first line ``classes <TAB> ["scratch","dent"]``, so
    changing ``TAGQA_DEFECT_CLASSES`` cuts a new dataset version. The default taxonomy adds
    no line, so versions made before the taxonomy was a setting keep their names.
    """
    digest = hashlib.sha256()
    if tuple(class_names) != DEFAULT_CLASS_NAMES:
        digest.update(f"classes\t{json.dumps(list(class_names), separators=(',', ':'))}\n".encode())
    for sha, boxes in sorted(zip(frame["sha256"], frame["annotations"])):
        digest.update(f"{sha}\t{canonical_annotations(boxes)}\n".encode())
    return digest.hexdigest()


class LabelStore(ABC):
    """Append-only label records with latest-wins reads."""

    name: str

    @abstractmethod
    def append(self, records: Sequence[LabelRecord]) -> AppendResult:
        """Store the records not stored yet (by ``record_id``); guarantees no duplicates on re-run."""

    @abstractmethod
    def records(self) -> pd.DataFrame:
        """Every stored record once (``STORED_COLUMNS``), in write order."""

    @abstractmethod
    def revision(self) -> str:
        """A token that changes whenever records were appended; cheap enough for a sensor tick."""

    def latest(self) -> pd.DataFrame:
        """The winning record per ``source_ref``."""
        return latest_records(self.records())

    def snapshot(self) -> LabelSnapshot:
        """The approved set with its content hash under the project's taxonomy (see ``LabelSnapshot``)."""
        return snapshot_of(self.records(), defect_classes())

    def labeled_keys(self) -> set[str]:
        """Raw keys and image hashes that have a label decision (approved or rejected)."""
        latest = self.latest()
        if latest.empty:
            return set()
        decided = latest[latest["status"] != DELETED]
        return set(decided["source_ref"].astype(str)) | {str(s) for s in decided["image_sha256"] if s}


class LocalLabelStore(LabelStore):
    """Label records as append-only Parquet parts under ``labels/records/`` of the object store."""

    name = "local"

    def __init__(self, store: ObjectStore, prefix: str = RECORDS_PREFIX) -> None:
        self.store = store
        self.parts = ParquetParts(store, prefix, columns=STORED_COLUMNS, unique_by="record_id")

    def append(self, records: Sequence[LabelRecord]) -> AppendResult:
        frame = records_frame(records, datetime.now(timezone.utc).isoformat())
        known = set(self.parts.read(columns=["record_id"])["record_id"])
        fresh = frame[~frame["record_id"].isin(known)].drop_duplicates("record_id")
        if fresh.empty:
            return AppendResult(0, len(frame))
        part = self.parts.write(fresh)
        return AppendResult(len(fresh), len(frame) - len(fresh), part)

    def records(self) -> pd.DataFrame:
        frame = self.parts.read()
        return frame.drop_duplicates(subset="record_id", keep="first").reset_index(drop=True)

    def revision(self) -> str:
        keys = self.parts.part_keys()
        return f"{len(keys)}:{keys[-1]}" if keys else "0:"
