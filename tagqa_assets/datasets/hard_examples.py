"""Hard examples: edge-feedback images that came back labeled.

The edge captures what the deployed model was unsure about (or an operator flagged); once
those images are labeled they form a growing evaluation set on which every challenger is
compared with the champion. A set is stored under ``hard_examples/<set_id>/`` in the YOLO
layout (split ``hard``) with a manifest, and ``hard_examples/current.json`` (written last)
names the current set. ``set_id`` hashes the images and their boxes, so an unchanged set
is never rewritten.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from tagqa_assets.contracts.keys import EDGE_FEEDBACK_SOURCE, HARD_EXAMPLES_PREFIX, RAW_PREFIX
from tagqa_assets.datasets.yolo_export import annotations_from_json, yolo_image_path, yolo_label_path, yolo_label_text
from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.labeling.label_store import LabelSnapshot
from tagqa_assets.storage import ObjectStore

HARD_SPLIT = "hard"
CURRENT_KEY = HARD_EXAMPLES_PREFIX + "current.json"
FEEDBACK_RAW_PREFIX = f"{RAW_PREFIX}{EDGE_FEEDBACK_SOURCE}/"


@dataclass(frozen=True)
class HardExampleSet:
    """One stored set: its id, image count, and the manifest rows (image_key, sha256, device, boxes, yolo_image)."""

    set_id: str
    manifest: pd.DataFrame

    @property
    def images(self) -> int:
        return len(self.manifest)

    @property
    def prefix(self) -> str:
        return f"{HARD_EXAMPLES_PREFIX}{self.set_id}/"


def select_hard_examples(snapshot: LabelSnapshot) -> pd.DataFrame:
    """The approved, labeled edge-feedback images of ``snapshot`` (one row per image content)."""
    frame = snapshot.frame
    chosen = frame[frame["image_key"].str.startswith(FEEDBACK_RAW_PREFIX)].copy()
    chosen["device"] = chosen["image_key"].str.slice(len(FEEDBACK_RAW_PREFIX)).str.split("/").str[0]
    return chosen.sort_values("sha256", kind="stable").reset_index(drop=True)


def set_id_of(rows: pd.DataFrame) -> str:
    """16 hex digits over the images' hashes and boxes; the empty set has an id too."""
    digest = hashlib.sha256()
    for sha, boxes in zip(rows["sha256"], rows["annotations"]):
        digest.update(f"{sha}\t{boxes}\n".encode())
    return digest.hexdigest()[:16]


def write_hard_examples(store: ObjectStore, snapshot: LabelSnapshot) -> tuple[HardExampleSet, bool]:
    """Store the current set (unless that exact set is stored already) and point ``current.json`` at it.

    Returns the set and whether anything new was written.
    """
    rows = select_hard_examples(snapshot)
    hard = HardExampleSet(set_id_of(rows), rows)
    current = load_current(store)
    if current is not None and current.set_id == hard.set_id:
        return current, False
    formats = dict(zip(*_formats(store)))
    paths = []
    for row in rows.itertuples():
        image_path = yolo_image_path(HARD_SPLIT, row.sha256, formats.get(row.sha256, "JPEG"))
        store.copy(row.image_key, hard.prefix + image_path)
        store.put_bytes(hard.prefix + yolo_label_path(image_path), yolo_label_text(annotations_from_json(row.annotations), int(row.width), int(row.height)).encode())
        paths.append(image_path)
    manifest = rows.assign(yolo_image=paths)[["image_key", "sha256", "device", "width", "height", "annotations", "event_time", "labeling_job", "yolo_image"]]
    buffer = io.BytesIO()
    manifest.to_parquet(buffer, index=False)
    store.put_bytes(hard.prefix + "manifest.parquet", buffer.getvalue())
    store.put_json(CURRENT_KEY, {"set_id": hard.set_id, "images": hard.images, "prefix": hard.prefix})
    return HardExampleSet(hard.set_id, manifest), True


def _formats(store: ObjectStore) -> tuple[list[str], list[str]]:
    images = RawImageCatalog(store).images()
    return list(images["sha256"]), list(images["format"])


def load_current(store: ObjectStore) -> HardExampleSet | None:
    """The set ``current.json`` names, or ``None`` before the first one was written."""
    if not store.exists(CURRENT_KEY):
        return None
    pointer = store.get_json(CURRENT_KEY)
    manifest = pd.read_parquet(io.BytesIO(store.get_bytes(pointer["prefix"] + "manifest.parquet")))
    return HardExampleSet(pointer["set_id"], manifest)


def stage_hard_examples(store: ObjectStore, hard: HardExampleSet, directory: Path) -> Path:
    """Copy the set's images and labels into ``directory`` (YOLO layout, split ``hard``); returns it."""
    for image_path in hard.manifest["yolo_image"]:
        store.download_file(hard.prefix + image_path, Path(directory) / image_path)
        label = yolo_label_path(image_path)
        store.download_file(hard.prefix + label, Path(directory) / label)
    return Path(directory)
