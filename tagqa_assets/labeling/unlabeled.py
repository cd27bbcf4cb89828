"""Which raw images still need a label, and opening labeling jobs for them."""

from __future__ import annotations

import pandas as pd

from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.labeling.backends.base import ImageRef, LabelingBackend, LabelingJob
from tagqa_assets.labeling.jobs import JobBook, new_job_id
from tagqa_assets.labeling.label_store import LabelStore
from tagqa_assets.labeling.pre_annotations import PreAnnotationResource
from tagqa_assets.storage import ObjectStore


def find_unlabeled(store: ObjectStore, label_store: LabelStore) -> pd.DataFrame:
    """Inventory rows (one per distinct image content) with no label decision and no open task.

    An image counts as labeled when a record names its raw key or its content hash, so a
    label given to the same bytes under another key covers it too.
    """
    images = RawImageCatalog(store).images()
    decided = label_store.labeled_keys()
    waiting = JobBook(store).images_in_open_jobs()
    keep = ~images["key"].isin(decided) & ~images["sha256"].isin(decided) & ~images["key"].isin(waiting)
    return images[keep].reset_index(drop=True)


def open_jobs_for(store: ObjectStore, backend: LabelingBackend, unlabeled: pd.DataFrame, *, max_images: int = 500,
                  pre_annotation: PreAnnotationResource | None = None) -> list[LabelingJob]:
    """Open one job per ``max_images`` unlabeled images, with ``pre_annotation``'s boxes as suggestions."""
    if max_images < 1:
        raise ValueError(f"max_images must be >= 1, got {max_images}")
    book = JobBook(store)
    refs = [
        ImageRef(key=row.key, sha256=row.sha256, width=int(row.width), height=int(row.height), uri=store.uri_for(row.key))
        for row in unlabeled.itertuples(index=False)
    ]
    jobs = []
    for start in range(0, len(refs), max_images):
        batch = refs[start : start + max_images]
        suggestions = pre_annotation.suggest(store, batch) if pre_annotation is not None else {}
        job = backend.create_job(batch, job_id=new_job_id([r.key for r in batch]), pre_annotations=suggestions)
        book.record(job)
        jobs.append(job)
    return jobs
