"""Dataset version layout and records (contract version 1).

A dataset version is immutable and lives under ``datasets/<version>/``:

- ``manifest.parquet``: one row per image, ``MANIFEST_COLUMNS``;
- ``yolo/data.yaml``, ``yolo/images/<split>/<stem>.<ext>``, ``yolo/labels/<split>/<stem>.txt``:
  the Ultralytics export (``<stem>`` is the first 16 hex digits of the image's sha256, so
  odd upload names such as ``x.jpg_0`` never reach the trainer);
- ``stats.json``: counts per split, boxes-per-image histogram, diff against the parent;
- ``dataset.json``: the commit record (``DatasetRecord``), written last. A version without
  ``dataset.json`` is incomplete and no reader may use it.

Version names sort in creation order and never contain commas or spaces (Dagster's
backfill and CLI partition ranges split on commas): ``v0003-1a2b3c4d`` is the third
version, whose approved-label snapshot hashes to ``1a2b3c4d...``.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

DATASET_CONTRACT_VERSION = 1
SPLITS = ("train", "val", "test")
MANIFEST_FILE = "manifest.parquet"
STATS_FILE = "stats.json"
COMMIT_FILE = "dataset.json"
YOLO_DIR = "yolo"

MANIFEST_COLUMNS = (
    "image_key",  # raw image key in the store
    "sha256",  # content hash of the image bytes
    "split",  # train | val | test
    "width",
    "height",
    "boxes",  # JSON list of [class_id, x1, y1, x2, y2] in original-image pixels
    "label_event_time",
    "labeling_job",
    "yolo_image",  # path of the exported image relative to yolo/
)

_VERSION = re.compile(r"^v(\d{4,})-([0-9a-f]{8})$")


def dataset_version_name(sequence: int, snapshot_hash: str) -> str:
    """``v<sequence:04d>-<first 8 hex of snapshot_hash>``; sequence starts at 1."""
    if sequence < 1:
        raise ValueError(f"dataset version sequence must be >= 1, got {sequence}")
    return f"v{sequence:04d}-{snapshot_hash[:8]}"


def parse_dataset_version(name: str) -> tuple[int, str]:
    """Return ``(sequence, snapshot_hash8)``; raises ``ValueError`` naming a malformed version."""
    match = _VERSION.match(name)
    if not match:
        raise ValueError(f"{name!r} is not a dataset version name like 'v0003-1a2b3c4d'")
    return int(match.group(1)), match.group(2)


@dataclass(frozen=True)
class DatasetRecord:
    """The commit record ``datasets/<version>/dataset.json``."""

    version: str
    parent: str | None
    created_at: str
    label_snapshot_id: str  # sha256 of the approved-label snapshot the version was built from
    class_names: tuple[str, ...]
    split_ratios: dict[str, float]
    counts: dict[str, int]  # images per split
    box_counts: dict[str, int]  # boxes per split
    manifest_sha256: str
    contract_version: int = DATASET_CONTRACT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DatasetRecord:
        """Inverse of ``to_dict``; raises ``ValueError`` naming the missing field."""
        try:
            return cls(
                version=data["version"],
                parent=data.get("parent"),
                created_at=data["created_at"],
                label_snapshot_id=data["label_snapshot_id"],
                class_names=tuple(data["class_names"]),
                split_ratios=dict(data["split_ratios"]),
                counts=dict(data["counts"]),
                box_counts=dict(data.get("box_counts", {})),
                manifest_sha256=data["manifest_sha256"],
                contract_version=int(data.get("contract_version", DATASET_CONTRACT_VERSION)),
                extra=dict(data.get("extra", {})),
            )
        except KeyError as exc:
            raise ValueError(f"dataset record for {data.get('version', '?')!r} lacks field {exc}") from exc
