"""What the labeling assets show in the Dagster UI: counts, import reports, labeled images."""

from __future__ import annotations

import json
from collections import Counter

import dagster as dg
import pandas as pd

from tagqa_assets.contracts.labels import APPROVED, REJECTED
from tagqa_assets.labeling.imports.pipeline import ImportReport
from tagqa_assets.labeling.label_store import LabelSnapshot, latest_records
from tagqa_assets.previews import Tile, grid_markdown, metadata_table
from tagqa_assets.storage import ObjectNotFound, ObjectStore

REJECT_ROWS = 50


def store_summary(records: pd.DataFrame, snapshot: LabelSnapshot, backend: str) -> dict:
    """Totals of the label store and the approved snapshot id (lineage of dataset versions)."""
    latest = latest_records(records)
    return {
        "label_store": backend,
        "records": len(records),
        "images_labeled": len(latest),
        "approved": int((latest["status"] == APPROVED).sum()) if len(latest) else 0,
        "rejected": int((latest["status"] == REJECTED).sum()) if len(latest) else 0,
        "approved_snapshot_id": snapshot.snapshot_id,
        "approved_images_in_snapshot": snapshot.images,
    }


def import_metadata(reports: list[ImportReport]) -> dict:
    """Per-import counts, rejects per reason, and the first rejected rows."""
    reasons = Counter()
    for report in reports:
        reasons.update(report.reasons())
    rejects = [
        {"source": r.source.rsplit("/", 1)[-1], "line": x.line, "source_ref": x.source_ref[-60:], "reason": x.reason, "detail": x.detail[:120]}
        for r in reports
        for x in r.rejects
    ]
    return {
        "imports": metadata_table(
            [
                {
                    "import": r.import_id,
                    "source": r.source.rsplit("/", 1)[-1],
                    "format": r.format,
                    "rows": r.rows,
                    "imported": r.imported,
                    "already_in_store": r.already_in_store,
                    "rejected": len(r.rejects),
                    "held_for_retry": r.held_for_retry,
                    "clipped_boxes": len(r.clipped),
                    "matched_by": json.dumps(r.matched_by),
                }
                for r in reports
            ]
        ),
        "rows_imported": sum(r.imported for r in reports),
        "rows_already_in_store": sum(r.already_in_store for r in reports),
        "rows_rejected": sum(len(r.rejects) for r in reports),
        "rows_held_for_retry": sum(r.held_for_retry for r in reports),
        "boxes_clipped": sum(len(r.clipped) for r in reports),
        "rejects_by_reason": metadata_table([{"reason": k, "rows": v} for k, v in sorted(reasons.items())]),
        "rejected_rows": metadata_table(rejects[:REJECT_ROWS]),
    }


def label_grid(store: ObjectStore, records: pd.DataFrame, reports: list[ImportReport], *, limit: int) -> dg.MetadataValue:
    """Thumbnails with boxes of the latest labels (newest first), to eyeball what came in."""
    if not any(r.imported for r in reports) or records.empty:
        return dg.MetadataValue.md("_no new labels in this run_")
    latest = latest_records(records)
    latest = latest[latest["status"] == APPROVED].sort_values("written_at", ascending=False).head(limit)
    tiles = []
    for row in latest.itertuples(index=False):
        try:
            data = store.get_bytes(row.source_ref)
        except ObjectNotFound:
            continue
        boxes = [(a["left"], a["top"], a["left"] + a["width"], a["top"] + a["height"]) for a in json.loads(row.annotations)]
        tiles.append(Tile(data, row.source_ref.rsplit("/", 1)[-1], boxes))
    return grid_markdown(tiles, "newest labels (green boxes)")
