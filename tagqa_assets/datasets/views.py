"""What a dataset version shows in the Dagster UI."""

from __future__ import annotations

import json

import dagster as dg
import pandas as pd

from tagqa_assets.contracts.datasets import MANIFEST_FILE, SPLITS, YOLO_DIR, DatasetRecord
from tagqa_assets.contracts.keys import dataset_prefix
from tagqa_assets.previews import Tile, grid_markdown, metadata_table
from tagqa_assets.storage import ObjectStore

SAMPLE_TILES = 12


def _bar(count: int, largest: int, width: int = 30) -> str:
    return "█" * max(1 if count else 0, round(width * count / largest)) if largest else ""


def version_metadata(store: ObjectStore, record: DatasetRecord, stats: dict, manifest: pd.DataFrame) -> dict:
    """Counts per split, boxes-per-image histogram, diff against the parent, lineage, samples."""
    histogram = stats["boxes_per_image"]
    largest = max(histogram.values(), default=0)
    diff = stats["diff"]
    sample = manifest[manifest["split"] == "train"].head(SAMPLE_TILES)
    tiles = [
        Tile(store.get_bytes(row.image_key), row.split, [tuple(box[1:]) for box in json.loads(row.boxes)])
        for row in sample.itertuples(index=False)
    ]
    return {
        "version": record.version,
        "parent": record.parent or "(first version)",
        "label_snapshot_id": record.label_snapshot_id,
        "dagster/row_count": len(manifest),
        "images": len(manifest),
        "counts_per_split": metadata_table(
            [{"split": s, "images": record.counts.get(s, 0), "boxes": record.box_counts.get(s, 0), "ratio": record.split_ratios.get(s)} for s in SPLITS]
        ),
        "boxes_per_image": metadata_table(
            [{"boxes": k, "images": v, "share": _bar(v, largest)} for k, v in sorted(histogram.items(), key=lambda kv: int(kv[0]))]
        ),
        "diff_vs_parent": metadata_table(
            [{"parent": diff.get("parent") or "-", "added": diff["added"], "removed": diff["removed"], "relabeled": diff["relabeled"], "unchanged": diff["unchanged"]}]
        ),
        "diff_examples": metadata_table(
            [{"change": change, "image": key} for change, keys in diff.get("examples", {}).items() for key in keys]
        ),
        "val_falls_back_to_train": stats["val_falls_back_to_train"],
        "manifest": dg.MetadataValue.path(store.uri_for(dataset_prefix(record.version) + MANIFEST_FILE)),
        "data_yaml": dg.MetadataValue.path(store.uri_for(dataset_prefix(record.version) + f"{YOLO_DIR}/data.yaml")),
        "train_samples": grid_markdown(tiles, "train images with their boxes"),
    }
