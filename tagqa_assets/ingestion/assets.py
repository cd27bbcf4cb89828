"""The ``raw_images`` asset: the validated inventory of every raw image in the store."""

from collections import Counter

import dagster as dg

from tagqa_assets.ingestion import validation
from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.ingestion.ingest import ingest_keys, uningested_raw_keys
from tagqa_assets.previews import Tile, grid_markdown, metadata_table
from tagqa_assets.storage import StoreResource

GRID_LIMIT = 24


class RawImagesConfig(dg.Config):
    """Which keys to ingest; the raw-image sensor fills ``keys``, an empty list reconciles all of raw/."""

    keys: list[str] = []
    max_pixels: int = validation.DEFAULT_MAX_PIXELS


@dg.asset(
    group_name="ingestion",
    kinds={"python", "parquet"},
    code_version="ingest-v1",
)
def raw_images(context: dg.AssetExecutionContext, config: RawImagesConfig, store: StoreResource) -> dg.MaterializeResult:
    """Inventory of raw images (key, sha256, bytes, width, height, format, source, ingested_at).

    Every new file under ``raw/`` is decoded to validate it; invalid inputs move to
    ``quarantine/`` with a reason record; content already ingested under another key is
    recorded as a duplicate, never twice as an image. For every run
    ``accepted + quarantined + duplicates == files seen``.
    """
    object_store = store.open()
    catalog = RawImageCatalog(object_store)
    keys = config.keys or uningested_raw_keys(object_store, catalog)
    context.log.info(f"ingesting {len(keys)} key(s) from {object_store.uri} ({'sensor batch' if config.keys else 'full reconcile'})")
    report = ingest_keys(object_store, keys, run_id=context.run.run_id, max_pixels=config.max_pixels, catalog=catalog)
    for record in report.quarantined:
        context.log.warning(f"quarantined {record.original_key!r}: {record.reason}: {record.detail}")
    images = catalog.images()
    tiles = [Tile(object_store.get_bytes(row.key), row.key.rsplit("/", 1)[-1]) for row in report.accepted[:GRID_LIMIT]]
    reasons = Counter(record.reason for record in report.quarantined)
    return dg.MaterializeResult(
        metadata={
            "files_seen": report.seen,
            "accepted": len(report.accepted),
            "quarantined": len(report.quarantined),
            "duplicates": len(report.duplicates),
            "already_ingested": report.already_ingested,
            "missing": report.missing,
            "total_images": len(images),
            "images_by_source": metadata_table(
                [{"source": source, "images": count} for source, count in sorted(Counter(images["source"]).items())]
            ),
            "quarantine_reasons": metadata_table([{"reason": r, "files": n} for r, n in sorted(reasons.items())]),
            "quarantined_files": metadata_table(
                [{"key": q.original_key, "reason": q.reason, "detail": q.detail[:120]} for q in report.quarantined[:50]]
            ),
            "new_images": grid_markdown(tiles, "new images in this run"),
            "catalog_part": report.catalog_part or "(nothing new)",
            "store": object_store.uri,
        }
    )
