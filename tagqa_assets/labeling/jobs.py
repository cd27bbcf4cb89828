"""Bookkeeping of labeling jobs in the store, whatever the backend.

``labeling/jobs/<job_id>.json`` is written once when a job opens; ``labeling/open/<job_id>``
marks it open (listing open jobs costs one short listing, however many jobs ever ran);
closing writes ``labeling/jobs/<job_id>.closed.json`` and then removes the marker.
No object is ever rewritten.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, replace
from datetime import datetime, timezone
from typing import Any

from tagqa_assets.labeling.backends.base import COMPLETED, FAILED, OPEN, ImageRef, LabelingJob
from tagqa_assets.storage import ObjectNotFound, ObjectStore

JOBS_PREFIX = "labeling/jobs/"
OPEN_PREFIX = "labeling/open/"


def new_job_id(image_keys: list[str], when: datetime | None = None) -> str:
    """``lj-<UTC time>-<hash of the image keys>``: sorts by creation, names its images."""
    when = when or datetime.now(timezone.utc)
    digest = hashlib.sha256("\n".join(sorted(image_keys)).encode()).hexdigest()[:8]
    return f"lj-{when:%Y%m%dT%H%M%S}-{digest}"


def job_to_dict(job: LabelingJob) -> dict[str, Any]:
    data = asdict(job)
    data["images"] = [asdict(image) for image in job.images]
    return data


def job_from_dict(data: dict[str, Any]) -> LabelingJob:
    return LabelingJob(
        job_id=data["job_id"],
        backend=data["backend"],
        images=tuple(ImageRef(**image) for image in data["images"]),
        created_at=data["created_at"],
        external_id=data.get("external_id", ""),
        state=data.get("state", OPEN),
        detail=dict(data.get("detail") or {}),
    )


class JobBook:
    """Open, look up and close labeling jobs in one store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def record(self, job: LabelingJob) -> None:
        """Remember a job the backend just opened."""
        self.store.put_json(f"{JOBS_PREFIX}{job.job_id}.json", job_to_dict(job))
        self.store.put_json(f"{OPEN_PREFIX}{job.job_id}.json", {"job_id": job.job_id, "backend": job.backend})

    def get(self, job_id: str) -> LabelingJob:
        """The job with its current state; raises ``ValueError`` naming an unknown job."""
        try:
            job = job_from_dict(self.store.get_json(f"{JOBS_PREFIX}{job_id}.json"))
        except ObjectNotFound:
            raise ValueError(f"no labeling job {job_id!r} in {self.store.uri}") from None
        try:
            closed = self.store.get_json(f"{JOBS_PREFIX}{job_id}.closed.json")
        except ObjectNotFound:
            return job
        return replace(job, state=closed["state"], detail={**job.detail, "closed": closed})

    def open_jobs(self) -> list[LabelingJob]:
        """Jobs not closed yet, oldest first."""
        ids = [info.key[len(OPEN_PREFIX) :].removesuffix(".json") for info in self.store.list_objects(OPEN_PREFIX)]
        return [job for job in (self.get(job_id) for job_id in ids) if job.state == OPEN]

    def close(self, job: LabelingJob, state: str, *, message: str = "", imported: int = 0) -> None:
        """Mark a job ``COMPLETED`` or ``FAILED``; closing twice keeps the first closure."""
        if state not in (COMPLETED, FAILED):
            raise ValueError(f"cannot close labeling job {job.job_id} as {state!r}")
        key = f"{JOBS_PREFIX}{job.job_id}.closed.json"
        if not self.store.exists(key):
            self.store.put_json(key, {"state": state, "message": message, "imported": imported, "closed_at": datetime.now(timezone.utc).isoformat()})
        self.store.delete(f"{OPEN_PREFIX}{job.job_id}.json")

    def images_in_open_jobs(self) -> set[str]:
        """Raw keys of every image some open job is waiting for."""
        return {image.key for job in self.open_jobs() for image in job.images}
