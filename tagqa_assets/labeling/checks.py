"""``label_store_sanity``: the label store's winning labels are usable training data."""

import json

import dagster as dg

from tagqa_assets.contracts.labels import APPROVED
from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.labeling.assets import label_store
from tagqa_assets.labeling.imports.pipeline import UNMATCHED_PREFIX
from tagqa_assets.labeling.label_store import latest_records
from tagqa_assets.labeling.resources import LabelStoreResource
from tagqa_assets.previews import metadata_table
from tagqa_assets.storage import StoreResource

EXAMPLES = 20


def _box_problem(annotations: str, width: int, height: int) -> str | None:
    for box in json.loads(annotations):
        x1, y1 = box["left"], box["top"]
        x2, y2 = x1 + box["width"], y1 + box["height"]
        if box["width"] <= 0 or box["height"] <= 0 or x1 < 0 or y1 < 0 or x2 > width + 1e-6 or y2 > height + 1e-6:
            return f"box ({x1:g},{y1:g})-({x2:g},{y2:g}) in a {width}x{height} image"
    return None


@dg.asset_check(asset=label_store, name="label_store_sanity")
def label_store_sanity(store: StoreResource, labels: LabelStoreResource) -> dg.AssetCheckResult:
    """Every approved winning label names an ingested image (by content hash) and has boxes
    inside it. Labels written by foreign tools (no content hash) and rows still waiting for
    their image are shown, not failed."""
    object_store = store.open()
    latest = latest_records(labels.open(object_store).records())
    approved = latest[latest["status"] == APPROVED] if len(latest) else latest
    known = set(RawImageCatalog(object_store).images()["sha256"])
    problems = []
    unresolved = 0
    for row in approved.itertuples(index=False):
        if not row.image_sha256:
            unresolved += 1
        elif row.image_sha256 not in known:
            problems.append({"source_ref": row.source_ref, "problem": "image not in the raw-image inventory"})
        elif (issue := _box_problem(row.annotations, int(row.image_width), int(row.image_height))) is not None:
            problems.append({"source_ref": row.source_ref, "problem": issue})
    held = sum(1 for _ in object_store.list_objects(UNMATCHED_PREFIX))
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={
            "approved_images": len(approved),
            "problems": len(problems),
            "examples": metadata_table(problems[:EXAMPLES]),
            "approved_without_content_hash": unresolved,
            "held_unmatched_files": held,
        },
    )
