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


ACCOUNTING_CHECK = "accounting"


@dg.asset(
    group_name="ingestion",
    kinds={"python", "parquet"},
    code_version="ingest-v1",
    check_specs=[
        dg.AssetCheckSpec(
            ACCOUNTING_CHECK,
            asset="raw_images",
            blocking=True,
            description="accepted + quarantined + duplicates == files seen; a run that fails it commits no inventory part and stops downstream assets.",
        )
    ],
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
    accounting_error = report.accounting_error()
    counts = {
        "files_seen": report.seen,
        "accepted": len(report.accepted),
        "quarantined": len(report.quarantined),
        "duplicates": len(report.duplicates),
    }
    return dg.MaterializeResult(
        check_results=[
            dg.AssetCheckResult(
                check_name=ACCOUNTING_CHECK,
                passed=accounting_error is None,
                severity=dg.AssetCheckSeverity.ERROR,
                description=accounting_error or "every file seen is accepted, quarantined or a duplicate",
                metadata=counts,
            )
        ],
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
