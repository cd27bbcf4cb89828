"""Dataset versions that were requested but not built yet, and how new versions are named.

When the approved-label snapshot changes, ``dataset_version_sensor`` freezes it under
``datasets/_pending/<version>/snapshot.parquet`` (plus ``request.json``) *before* adding
the partition. The ``dataset_version`` asset then builds exactly that snapshot, even if
labels changed in between (the next change gets the next version), and verifies that the
frozen snapshot still hashes to the id in the version name. The pending record is removed
once the version is committed.
"""

from __future__ import annotations

import io
from datetime import datetime, timezone

import pandas as pd

from tagqa_assets.contracts.datasets import dataset_version_name, parse_dataset_version
from tagqa_assets.contracts.keys import DATASETS_PREFIX
from tagqa_assets.contracts.labels import DEFAULT_CLASS_NAMES
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.labeling.label_store import LabelSnapshot, snapshot_hash
from tagqa_assets.storage import ObjectNotFound, ObjectStore

PENDING_PREFIX = f"{DATASETS_PREFIX}_pending/"


def _prefix(version: str) -> str:
    parse_dataset_version(version)
    return f"{PENDING_PREFIX}{version}/"


def save_pending(store: ObjectStore, version: str, snapshot: LabelSnapshot, *, label_revision: str = "") -> None:
    """Freeze ``snapshot`` as the content of ``version`` (request record written last)."""
    buffer = io.BytesIO()
    snapshot.frame.to_parquet(buffer, index=False)
    store.put_bytes(_prefix(version) + "snapshot.parquet", buffer.getvalue())
    store.put_json(
        _prefix(version) + "request.json",
        {
            "version": version,
            "snapshot_id": snapshot.snapshot_id,
            "class_names": list(snapshot.class_names),
            "images": snapshot.images,
            "label_revision": label_revision,
            "requested_at": datetime.now(timezone.utc).isoformat(),
        },
    )


def load_pending(store: ObjectStore, version: str) -> LabelSnapshot | None:
    """The frozen snapshot of ``version``, or ``None`` when none was requested.

    Raises ``ValueError`` naming the version when the frozen content no longer hashes to
    the recorded id or the id does not match the version name.
    """
    try:
        request = store.get_json(_prefix(version) + "request.json")
    except ObjectNotFound:
        return None
    frame = pd.read_parquet(io.BytesIO(store.get_bytes(_prefix(version) + "snapshot.parquet")))
    class_names = tuple(request.get("class_names") or DEFAULT_CLASS_NAMES)
    actual = snapshot_hash(frame, class_names)
    if actual != request["snapshot_id"]:
        raise ValueError(f"pending snapshot of {version} hashes to {actual[:12]}, its request says {request['snapshot_id'][:12]}")
    if not actual.startswith(parse_dataset_version(version)[1]):
        raise ValueError(f"pending snapshot of {version} hashes to {actual[:8]}, which is not the id in its name")
    return LabelSnapshot(actual, frame, rejected=0, unresolved=0, class_names=class_names)


def pending_versions(store: ObjectStore) -> list[str]:
    """Requested, not yet committed versions, by sequence."""
    found = []
    for prefix in store.list_prefixes(PENDING_PREFIX):
        name = prefix[len(PENDING_PREFIX) :].rstrip("/")
        try:
            found.append((parse_dataset_version(name)[0], name))
        except ValueError:
            continue
    return [name for _, name in sorted(found)]


def drop_pending(store: ObjectStore, version: str) -> None:
    """Forget the request of a committed version (request record first, so a reader never sees half)."""
    store.delete(_prefix(version) + "request.json")
    store.delete(_prefix(version) + "snapshot.parquet")


def snapshot_id_of(store: ObjectStore, version: str) -> str:
    """The full snapshot id of a committed or pending version."""
    versions = DatasetVersionStore(store)
    if versions.is_committed(version):
        return versions.read(version).label_snapshot_id
    return store.get_json(_prefix(version) + "request.json")["snapshot_id"]


def next_version(store: ObjectStore, snapshot_id: str, known: list[str]) -> str | None:
    """The name for a version of ``snapshot_id``, or ``None`` when the newest version already has it.

    ``known`` are partition keys Dagster already has (the store may have been reset, or the
    instance): the sequence continues after the highest number seen anywhere, so names
    keep sorting in creation order and are never reused.
    """
    existing = set(DatasetVersionStore(store).list_versions()) | set(pending_versions(store))
    if existing:
        newest = max(existing, key=lambda v: parse_dataset_version(v)[0])
        if snapshot_id_of(store, newest) == snapshot_id:
            return None
    sequences = [parse_dataset_version(v)[0] for v in existing | {k for k in known if _is_version(k)}]
    return dataset_version_name(max(sequences, default=0) + 1, snapshot_id)


def _is_version(name: str) -> bool:
    try:
        parse_dataset_version(name)
        return True
    except ValueError:
        return False
