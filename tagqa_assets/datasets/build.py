"""Building one immutable dataset version from an approved-label snapshot.

Guarantees: the version is built from exactly the given snapshot, whose id must match the
version name; an image's split depends only on its content (and on the parent, which it
inherits from); every object of the version is written before its commit record
``dataset.json``; a committed version is never written again. Images are copied inside the
store (a hard link on the local store, a server-side copy on S3), never through memory.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections import Counter
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd

from tagqa_assets.contracts.datasets import (
    COMMIT_FILE,
    MANIFEST_COLUMNS,
    MANIFEST_FILE,
    SPLITS,
    STATS_FILE,
    YOLO_DIR,
    DatasetRecord,
    parse_dataset_version,
)
from tagqa_assets.contracts.keys import dataset_prefix
from tagqa_assets.datasets.split import DEFAULT_RATIOS, assign_splits, check_ratios
from tagqa_assets.datasets.versions import DatasetVersionStore, data_yaml_text
from tagqa_assets.datasets.yolo_export import (
    annotations_from_json,
    manifest_boxes,
    upright_image_bytes,
    yolo_image_path,
    yolo_label_path,
    yolo_label_text,
)
from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.labeling.label_store import LabelSnapshot
from tagqa_assets.storage import LocalObjectStore, ObjectStore

# Local writes are fsync-bound (about 5 ms each here, one at a time): many in flight let the
# file system batch them. S3 calls are bounded by the client's connection pool (10).
LOCAL_WRITE_THREADS = 32
S3_WRITE_THREADS = 10
EXAMPLES = 10


class VersionExists(ValueError):
    """The version is already committed; versions are immutable."""


@dataclass(frozen=True)
class BuildResult:
    """A committed version: its record, stats and manifest."""

    record: DatasetRecord
    stats: dict
    manifest: pd.DataFrame


def check_taxonomy(parent_classes: tuple[str, ...], class_names: tuple[str, ...], *, version: str, parent: str) -> None:
    """Raise ``ValueError`` unless the parent version's classes are the first classes of ``class_names``.

    Label records store class ids; a taxonomy may therefore only grow at its end (``scratch``
    -> ``scratch,dent``). Reordering or removing a class would silently give old labels other
    names in the new version.
    """
    if tuple(class_names[: len(parent_classes)]) != tuple(parent_classes):
        raise ValueError(
            f"{version}: the taxonomy {list(class_names)} does not extend {parent}'s {list(parent_classes)}; "
            "TAGQA_DEFECT_CLASSES may only add classes at its end (stored labels keep their class ids)"
        )


def parent_of(versions: DatasetVersionStore, version: str) -> str | None:
    """The newest committed version created before ``version``."""
    sequence = parse_dataset_version(version)[0]
    earlier = [v for v in versions.list_versions() if parse_dataset_version(v)[0] < sequence]
    return earlier[-1] if earlier else None


def diff_manifests(current: pd.DataFrame, parent: pd.DataFrame | None) -> dict:
    """Images added, removed and relabeled (same content, other boxes) against the parent."""
    if parent is None:
        return {"parent": None, "added": len(current), "removed": 0, "relabeled": 0, "unchanged": 0, "examples": {}}
    now = dict(zip(current["sha256"], current["boxes"]))
    before = dict(zip(parent["sha256"], parent["boxes"]))
    key_now, key_before = dict(zip(current["sha256"], current["image_key"])), dict(zip(parent["sha256"], parent["image_key"]))
    added = sorted(set(now) - set(before))
    removed = sorted(set(before) - set(now))
    relabeled = sorted(sha for sha in set(now) & set(before) if now[sha] != before[sha])
    return {
        "added": len(added),
        "removed": len(removed),
        "relabeled": len(relabeled),
        "unchanged": len(set(now) & set(before)) - len(relabeled),
        "examples": {
            "added": [key_now[s] for s in added[:EXAMPLES]],
            "removed": [key_before[s] for s in removed[:EXAMPLES]],
            "relabeled": [key_now[s] for s in relabeled[:EXAMPLES]],
        },
    }


def _manifest(snapshot: LabelSnapshot, store: ObjectStore, splits: Mapping[str, str]) -> tuple[pd.DataFrame, list[tuple[str, str, str, int, str]]]:
    images = RawImageCatalog(store).images()
    by_sha = dict(zip(images["sha256"], zip(images["key"], images["format"], images["orientation"])))
    missing = [key for key, sha in zip(snapshot.frame["image_key"], snapshot.frame["sha256"]) if sha not in by_sha]
    if missing:
        raise ValueError(f"{len(missing)} labeled image(s) are not in the raw-image inventory of {store.uri}, e.g. {missing[:5]}")
    rows, writes = [], []
    for item in snapshot.frame.itertuples(index=False):
        raw_key, image_format, orientation = by_sha[item.sha256]
        split = splits[item.sha256]
        annotations = annotations_from_json(item.annotations)
        unknown = sorted({a.class_id for a in annotations if not 0 <= a.class_id < len(snapshot.class_names)})
        if unknown:
            raise ValueError(f"labels of {item.image_key} use class ids {unknown}, outside the taxonomy {list(snapshot.class_names)}")
        image_path = yolo_image_path(split, item.sha256, image_format)
        label = yolo_label_text(annotations, int(item.width), int(item.height))
        writes.append((raw_key, image_path, label, int(orientation), image_format))
        rows.append((raw_key, item.sha256, split, int(item.width), int(item.height), manifest_boxes(annotations), float(item.event_time), item.labeling_job, image_path))
    manifest = pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS))
    stems = manifest["yolo_image"].str.rsplit("/", n=1).str[-1]
    if stems.duplicated().any():
        raise ValueError(f"two images share the export name {stems[stems.duplicated()].iloc[0]!r}")
    return manifest, writes


def _stats(manifest: pd.DataFrame, version: str, parent: str | None, diff: dict, snapshot: LabelSnapshot, ratios: dict) -> dict:
    boxes = manifest["boxes"].map(lambda text: len(json.loads(text)))
    return {
        "version": version,
        "parent": parent,
        "label_snapshot_id": snapshot.snapshot_id,
        "images": len(manifest),
        "counts": {s: int((manifest["split"] == s).sum()) for s in SPLITS},
        "box_counts": {s: int(boxes[manifest["split"] == s].sum()) for s in SPLITS},
        "boxes_per_image": {str(k): int(v) for k, v in sorted(Counter(boxes).items())},
        "split_ratios": ratios,
        "val_falls_back_to_train": not bool((manifest["split"] == "val").any()),
        "diff": {"parent": parent, **diff},
    }


def build_dataset_version(
    store: ObjectStore,
    snapshot: LabelSnapshot,
    version: str,
    *,
    ratios: Mapping[str, float] = DEFAULT_RATIOS,
    created_at: str | None = None,
) -> BuildResult:
    """Build and commit ``version`` from ``snapshot`` (see module docstring)."""
    _, hash8 = parse_dataset_version(version)
    if not snapshot.snapshot_id.startswith(hash8):
        raise ValueError(f"{version} names snapshot {hash8}, but the snapshot to build is {snapshot.snapshot_id[:8]}")
    if snapshot.images == 0:
        raise ValueError(f"{version}: the approved-label snapshot is empty; a dataset needs labeled images")
    ratios = check_ratios(ratios)
    versions = DatasetVersionStore(store)
    if versions.is_committed(version):
        raise VersionExists(f"dataset version {version} is already committed in {store.uri}; versions are immutable")
    parent = parent_of(versions, version)
    class_names = tuple(snapshot.class_names)
    if parent:
        check_taxonomy(versions.read(parent).class_names, class_names, version=version, parent=parent)
    parent_manifest = versions.manifest(parent) if parent else None
    inherited = dict(zip(parent_manifest["sha256"], parent_manifest["split"])) if parent_manifest is not None else {}
    splits = assign_splits(snapshot.frame["sha256"], ratios, inherited)
    manifest, writes = _manifest(snapshot, store, splits)
    prefix = dataset_prefix(version)
    yolo = f"{prefix}{YOLO_DIR}/"

    def write(item: tuple[str, str, str, int, str]) -> None:
        raw_key, image_path, label, orientation, image_format = item
        if orientation == 1:
            store.copy(raw_key, yolo + image_path)
        else:  # labels are in display pixels: write the pixels upright (yolo_export.py)
            store.put_bytes(yolo + image_path, upright_image_bytes(store.get_bytes(raw_key), image_format))
        store.put_bytes(yolo + yolo_label_path(image_path), label.encode())

    threads = LOCAL_WRITE_THREADS if isinstance(store, LocalObjectStore) else S3_WRITE_THREADS
    with ThreadPoolExecutor(threads) as pool:
        for _ in pool.map(write, writes):
            pass
    buffer = io.BytesIO()
    manifest.to_parquet(buffer, index=False)
    manifest_bytes = buffer.getvalue()
    store.put_bytes(prefix + MANIFEST_FILE, manifest_bytes)
    diff = diff_manifests(manifest, parent_manifest)
    stats = _stats(manifest, version, parent, diff, snapshot, ratios)
    store.put_json(prefix + STATS_FILE, stats)
    present = {s: bool(stats["counts"][s]) for s in SPLITS}
    store.put_bytes(yolo + "data.yaml", data_yaml_text(".", present, class_names).encode())
    record = DatasetRecord(
        version=version,
        parent=parent,
        created_at=created_at or datetime.now(timezone.utc).isoformat(),
        label_snapshot_id=snapshot.snapshot_id,
        class_names=class_names,
        split_ratios=ratios,
        counts=stats["counts"],
        box_counts=stats["box_counts"],
        manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest(),
        extra={"images": len(manifest), "diff": {k: v for k, v in diff.items() if k != "examples"}, "yolo_data_yaml": f"{YOLO_DIR}/data.yaml"},
    )
    if versions.is_committed(version):
        raise VersionExists(f"dataset version {version} was committed by another run while this one built it")
    store.put_json(prefix + COMMIT_FILE, record.to_dict())
    return BuildResult(record, stats, manifest)
