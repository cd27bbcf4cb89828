"""The labeling assets: ``label_store`` (imports labels) and ``unlabeled_images`` (opens jobs)."""

from collections import Counter
from typing import Optional

import dagster as dg

from tagqa_assets.contracts.keys import LABELS_INBOX_PREFIX
from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.labeling.backends.base import OPEN
from tagqa_assets.labeling.jobs import JobBook
from tagqa_assets.labeling.imports.pipeline import UNMATCHED_PREFIX, ImportReport, import_parsed, records_as_rows, retry_unmatched
from tagqa_assets.labeling.imports.sources import import_inbox_object, inbox_keys
from tagqa_assets.labeling.label_store import snapshot_of
from tagqa_assets.labeling.imports.matching import RawImageIndex
from tagqa_assets.labeling.pre_annotations import PreAnnotationResource
from tagqa_assets.labeling.resources import LabelingResource, LabelStoreResource
from tagqa_assets.labeling.unlabeled import find_unlabeled, open_jobs_for
from tagqa_assets.labeling.views import import_metadata, label_grid, store_summary
from tagqa_assets.previews import Tile, grid_markdown, metadata_table
from tagqa_assets.settings import defect_classes
from tagqa_assets.storage import StoreResource

GRID_LIMIT = 24


class LabelStoreConfig(dg.Config):
    """What to import; ``None`` means everything waiting (every inbox file, every open job)."""

    inbox_keys: Optional[list[str]] = None
    job_ids: Optional[list[str]] = None
    retry_unmatched: bool = True


@dg.asset(group_name="labeling", kinds={"python", "parquet"}, deps=[raw_images], code_version="labels-v1")
def label_store(
    context: dg.AssetExecutionContext,
    config: LabelStoreConfig,
    store: StoreResource,
    labels: LabelStoreResource,
    labeling: LabelingResource,
) -> dg.MaterializeResult:
    """Append-only label records (latest per image wins; REJECTED removes it from training).

    Imports label files waiting in ``inbox/labels/``, the results of labeling jobs (and
    closes the finished ones) and held rows whose image has arrived since. Every row ends up
    imported, already in the store, or in a rejects report with its reason.
    """
    object_store = store.open()
    label_store_ = labels.open(object_store)
    index = RawImageIndex.load(object_store)
    reports: list[ImportReport] = []
    present = set(inbox_keys(object_store))
    for key in sorted(present) if config.inbox_keys is None else config.inbox_keys:
        if key not in present:
            context.log.info(f"{key} is no longer in the inbox (imported by an earlier run)")
            continue
        report = import_inbox_object(object_store, label_store_, key, index=index)
        if report is None:
            context.log.info(f"{key} was imported by another run meanwhile")
            continue
        reports.append(report)
    book = JobBook(object_store)
    jobs = book.open_jobs() if config.job_ids is None else [book.get(job_id) for job_id in config.job_ids]
    failures = []
    backend = labeling.open(object_store, label_store_) if any(job.state == OPEN for job in jobs) else None
    for job in (job for job in jobs if job.state == OPEN):
        if job.backend != backend.name:
            failures.append(f"job {job.job_id} belongs to the {job.backend!r} backend, but TAGQA_LABELING_BACKEND is {backend.name!r}")
            continue
        try:
            status = backend.job_status(job)
            records = backend.fetch_results(job)
        except Exception as exc:  # one unreachable job must not block the other imports; reported below
            failures.append(f"job {job.job_id} ({job.backend}): {type(exc).__name__}: {exc}")
            continue
        report = import_parsed(object_store, label_store_, records_as_rows(records), source=f"labeling job {job.job_id}", index=index)
        reports.append(report)
        if status.state != OPEN:
            book.close(job, status.state, message=status.message, imported=report.imported)
            context.log.info(f"closed labeling job {job.job_id}: {status.state} ({status.message})")
    if config.retry_unmatched and next(iter(object_store.list_objects(UNMATCHED_PREFIX)), None) is not None:
        reports.extend(retry_unmatched(object_store, label_store_, index))
    for report in reports:
        for reject in report.rejects[:20]:
            context.log.warning(f"{report.source} line {reject.line}: {reject.reason}: {reject.detail}")
    records = label_store_.records()
    snapshot = snapshot_of(records, defect_classes())
    metadata = {**store_summary(records, snapshot, label_store_.name), **import_metadata(reports)}
    metadata["open_jobs"] = len(book.open_jobs())
    metadata["new_labels"] = label_grid(object_store, records, reports, limit=GRID_LIMIT)
    if failures:
        raise dg.Failure(
            description=f"{len(failures)} labeling job(s) could not be polled; everything else was imported",
            metadata={"failures": metadata_table([{"problem": f} for f in failures]), **metadata},
        )
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(snapshot.snapshot_id[:16]))


class UnlabeledImagesConfig(dg.Config):
    """Whether to open labeling jobs for what is found, and how big a job may be."""

    open_jobs: bool = True
    max_images_per_job: int = 500


@dg.asset(group_name="labeling", kinds={"python"}, deps=[raw_images, label_store], code_version="unlabeled-v1")
def unlabeled_images(
    context: dg.AssetExecutionContext,
    config: UnlabeledImagesConfig,
    store: StoreResource,
    labels: LabelStoreResource,
    labeling: LabelingResource,
    pre_annotation: PreAnnotationResource,
) -> dg.MaterializeResult:
    """Raw images with no label record and no open labeling task; opens labeling jobs for them.

    Each job gets the champion model's boxes as suggestions when a champion exists
    (model-assisted labeling, through the ``pre_annotation`` resource).
    """
    object_store = store.open()
    label_store_ = labels.open(object_store)
    unlabeled = find_unlabeled(object_store, label_store_)
    opened = []
    if config.open_jobs and len(unlabeled):
        backend = labeling.open(object_store, label_store_)
        opened = open_jobs_for(object_store, backend, unlabeled, max_images=config.max_images_per_job,
                               pre_annotation=pre_annotation)
        for job in opened:
            context.log.info(f"opened {job.backend} labeling job {job.job_id} for {len(job.images)} image(s)")
    tiles = [Tile(object_store.get_bytes(key), key.rsplit("/", 1)[-1]) for key in unlabeled["key"][:GRID_LIMIT]]
    return dg.MaterializeResult(
        metadata={
            "unlabeled": len(unlabeled),
            "by_source": metadata_table([{"source": s, "images": n} for s, n in sorted(Counter(unlabeled["source"]).items())]),
            "jobs_opened": metadata_table(
                [{"job": j.job_id, "backend": j.backend, "images": len(j.images), "where": j.external_id or "-"} for j in opened]
            ),
            "images": grid_markdown(tiles, "unlabeled images"),
            "labels_inbox": object_store.uri_for(LABELS_INBOX_PREFIX.rstrip("/")),
        }
    )
