"""The ``inbox`` labeling backend: label files dropped into ``inbox/labels/``.

Opening a job writes a task file ``inbox/tasks/<job_id>.jsonl``: one label-record JSON line
per image, pre-filled with the model's suggested boxes (or none). A person (or a script)
corrects the boxes and drops the file, or any label file naming these images, into
``inbox/labels/``; ``labeling_job_sensor`` imports it like every inbox file. A job is
done when every one of its images has a label decision in the label store.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from tagqa_assets.contracts.labels import Annotation, LabelRecord
from tagqa_assets.labeling.backends.base import (COMPLETED, OPEN, ImageRef, JobStatus, LabelingBackend, LabelingJob,
                                                 check_job_request)
from tagqa_assets.labeling.label_store import LabelStore
from tagqa_assets.storage import ObjectStore

TASKS_PREFIX = "inbox/tasks/"


class InboxBackend(LabelingBackend):
    """Labeling through files in the store (see module docstring)."""

    name = "inbox"

    def __init__(self, *, store: ObjectStore, label_store: LabelStore) -> None:
        self.store = store
        self.label_store = label_store

    def create_job(self, images: list[ImageRef], *, job_id: str, pre_annotations: dict[str, list[Annotation]] | None = None) -> LabelingJob:
        check_job_request(job_id, images, pre_annotations)
        now = datetime.now(timezone.utc)
        lines = []
        for image in images:
            suggested = (pre_annotations or {}).get(image.key, [])
            record = LabelRecord(
                source_ref=image.key,
                image_sha256=image.sha256,
                image_width=image.width,
                image_height=image.height,
                annotations=tuple(suggested),
                event_time=now.timestamp(),
                labeling_job=job_id,
            )
            lines.append(json.dumps(record.to_row()))
        task_key = f"{TASKS_PREFIX}{job_id}.jsonl"
        self.store.put_bytes(task_key, ("\n".join(lines) + "\n").encode())
        return LabelingJob(
            job_id=job_id,
            backend=self.name,
            images=tuple(images),
            created_at=now.isoformat(),
            external_id=task_key,
            detail={
                "task_file": self.store.uri_for(task_key),
                "pre_annotated": sum(1 for image in images if (pre_annotations or {}).get(image.key)),
                "how_to_finish": "correct the boxes, then put the file into inbox/labels/",
            },
        )

    def _labeled(self, job: LabelingJob) -> list[ImageRef]:
        decided = self.label_store.labeled_keys()
        return [image for image in job.images if image.key in decided or image.sha256 in decided]

    def job_status(self, job: LabelingJob) -> JobStatus:
        done = len(self._labeled(job))
        total = len(job.images)
        state = COMPLETED if done == total else OPEN
        return JobStatus(state=state, done=done, total=total, message=f"{done}/{total} images labeled via the inbox")

    def fetch_results(self, job: LabelingJob) -> list[LabelRecord]:
        """The stored labels of the job's images (they arrived through the inbox import)."""
        keys = {image.key for image in job.images}
        latest = self.label_store.latest()
        rows = latest[latest["source_ref"].isin(keys)]
        return [LabelRecord.from_row(row) for row in rows.to_dict("records") if row["status"] in ("APPROVED", "REJECTED")]
