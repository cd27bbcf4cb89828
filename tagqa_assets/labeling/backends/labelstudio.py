"""``labelstudio``: label images in a self-hosted Label Studio (the local default for humans).

How a job maps onto Label Studio:

* one project (``project_title``, created on first use) holds the tasks of every job; its
  labeling config is ``labelstudio_boxes.labeling_config()``;
* the image bytes are read from the object store and uploaded into Label Studio, so the
  images show up whatever the store is (local folder or S3) and wherever Label Studio runs,
  with no storage connection or server-side settings (the price: a copy of each image in
  Label Studio's media folder);
* each image becomes one task whose data carries ``source_ref`` (the raw key),
  ``image_sha256`` and ``tagqa_job``; model suggestions become the task's ``predictions``;
* a task is done when it has a submitted annotation that was not skipped; the latest such
  annotation is the label. Ticking "reject" makes the record ``REJECTED``; a submit with no
  box is an ``APPROVED`` image without scratches.
"""

from __future__ import annotations

import json
import posixpath
from datetime import datetime, timezone
from typing import Any

from tagqa_assets.contracts.labels import APPROVED, REJECTED, Annotation, LabelRecord
from tagqa_assets.labeling.backends.base import (COMPLETED, FAILED, OPEN, ImageRef, JobStatus, LabelingBackend,
                                                 LabelingJob, check_job_request)
from tagqa_assets.labeling.backends.labelstudio_api import LabelStudioClient, LabelStudioError
from tagqa_assets.labeling.backends.labelstudio_boxes import BOXES_NAME, IMAGE_NAME, box_control, labeling_config, to_annotations, to_prediction_result
from tagqa_assets.labeling.imports.format_labelstudio import is_rejected, latest_annotation, labelstudio_time
from tagqa_assets.storage import ObjectStore

_UPLOAD_BATCH = 20
_EXPORT_BATCH = 100
_PAGE_SIZE = 100


class LabelStudioBackend(LabelingBackend):
    """Labeling jobs as tasks in one Label Studio project (see module docstring)."""

    name = "labelstudio"

    def __init__(
        self,
        *,
        url: str,
        api_token: str,
        store: ObjectStore,
        project_title: str = "tagqa scratches",
        model_version: str = "tagqa-champion",
        client: LabelStudioClient | None = None,
    ) -> None:
        self.client = client or LabelStudioClient(url, api_token)
        self.store = store
        self.project_title = project_title
        self.model_version = model_version
        self._project_id: int | None = None
        self._controls: tuple[str, str] = (BOXES_NAME, IMAGE_NAME)  # (from_name, to_name) of the box control

    def project_id(self) -> int:
        """The id of the tagqa project, created with tagqa's labeling config when it does not exist."""
        if self._project_id is None:
            projects = self.client.request("GET", "/api/projects", params={"title": self.project_title, "page_size": _PAGE_SIZE})
            same = sorted((p for p in projects["results"] if p["title"] == self.project_title), key=lambda p: p["id"])
            if same:
                self._controls = box_control(same[0].get("parsed_label_config") or {}, project=f"{same[0]['id']} ({self.project_title!r})")
                self._project_id = int(same[0]["id"])
            else:
                created = self.client.request(
                    "POST",
                    "/api/projects",
                    json={
                        "title": self.project_title,
                        "description": "Scratches on metal luggage tags; tasks are created by the tagqa pipeline.",
                        "label_config": labeling_config(),
                        "enable_empty_annotation": True,
                        "show_skip_button": True,
                        "maximum_annotations": 1,
                    },
                )
                self._project_id = int(created["id"])
        return self._project_id

    def create_job(self, images: list[ImageRef], *, job_id: str, pre_annotations: dict[str, list[Annotation]] | None = None) -> LabelingJob:
        """Upload ``images`` and create one task each (with predictions when given).

        Idempotent per ``job_id``: images that already have a task of this job are not
        imported again, so a retried run does not duplicate tasks.
        """
        check_job_request(job_id, images, pre_annotations)
        keys = [image.key for image in images]
        project = self.project_id()
        existing = self._job_task_ids(project, job_id)
        todo = [image for image in images if image.key not in existing]
        if todo:
            urls = self._upload(project, todo)
            tasks = [self._task(image, urls[image.key], job_id, (pre_annotations or {}).get(image.key)) for image in todo]
            self.client.request("POST", f"/api/projects/{project}/import", json=tasks)
            existing = self._job_task_ids(project, job_id)
        missing = [key for key in keys if key not in existing]
        if missing:
            raise LabelStudioError(f"labeling job {job_id!r}: Label Studio project {project} has no task for {missing[:5]}")
        return LabelingJob(
            job_id=job_id,
            backend=self.name,
            images=tuple(images),
            created_at=datetime.now(timezone.utc).isoformat(),
            external_id=str(project),
            detail={
                "project_id": project,
                "task_ids": {key: existing[key] for key in keys},
                "url": f"{self.client.url}/projects/{project}/data",
            },
        )

    def job_status(self, job: LabelingJob) -> JobStatus:
        """COMPLETED when every task has a submitted annotation; FAILED when the project or tasks were deleted."""
        try:
            tasks = self._export(job)
        except LabelStudioError as exc:
            if exc.status == 404:
                return JobStatus(FAILED, 0, len(job.images), f"Label Studio project {job.external_id} is gone: {exc}")
            raise
        task_ids = {key: int(task_id) for key, task_id in job.detail["task_ids"].items()}
        gone = [image.key for image in job.images if task_ids[image.key] not in tasks]
        done = sum(1 for image in job.images if _finished(tasks.get(task_ids[image.key])) is not None)
        skipped = sum(1 for task in tasks.values() if _finished(task) is None and any(a.get("was_cancelled") for a in task["annotations"]))
        total = len(job.images)
        if gone:
            return JobStatus(FAILED, done, total, f"{len(gone)} task(s) were deleted from Label Studio project {job.external_id}, e.g. {gone[0]}")
        message = f"{done}/{total} annotated in {job.detail.get('url', job.external_id)}" + (f", {skipped} skipped" if skipped else "")
        return JobStatus(COMPLETED if done == total else OPEN, done, total, message)

    def fetch_results(self, job: LabelingJob) -> list[LabelRecord]:
        """A label record for every task of ``job`` that has a submitted annotation (done so far)."""
        self.project_id()  # reads the project's box control name
        tasks = self._export(job)
        records = []
        for image in job.images:
            task = tasks.get(int(job.detail["task_ids"][image.key]))
            annotation = _finished(task)
            if annotation is None:
                continue
            where = f"Label Studio task {task['id']} ({image.key})"
            if task["data"].get("source_ref") != image.key:
                raise ValueError(f"{where} holds image {task['data'].get('source_ref')!r}")
            result = annotation.get("result") or []
            records.append(
                LabelRecord(
                    source_ref=image.key,
                    image_sha256=image.sha256,
                    image_width=image.width,
                    image_height=image.height,
                    annotations=to_annotations(result, image.width, image.height, where=where, from_name=self._controls[0]),
                    event_time=labelstudio_time(annotation["updated_at"], field="updated_at"),
                    labeling_job=f"{self.name}/{job.external_id}",
                    status=REJECTED if is_rejected(result) else APPROVED,
                    extra={"task_id": task["id"], "annotation_id": annotation["id"], "completed_by": annotation.get("completed_by")},
                )
            )
        return records

    def _task(self, image: ImageRef, url: str, job_id: str, suggestions: list[Annotation] | None) -> dict[str, Any]:
        task: dict[str, Any] = {"data": {"image": url, "source_ref": image.key, "image_sha256": image.sha256, "tagqa_job": job_id}}
        if suggestions is not None:
            from_name, to_name = self._controls
            result = [to_prediction_result(box, image.width, image.height, from_name=from_name, to_name=to_name) for box in suggestions]
            task["predictions"] = [{"model_version": self.model_version, "result": result}]
        return task

    def _upload(self, project: int, images: list[ImageRef]) -> dict[str, str]:
        """Upload the images' bytes without creating tasks; returns the Label Studio URL of each key."""
        urls: dict[str, str] = {}
        for start in range(0, len(images), _UPLOAD_BATCH):
            batch = images[start : start + _UPLOAD_BATCH]
            # Label Studio stores an upload as "<random>-<file name>": unique names map them back.
            names = {f"{start + i:05d}-{image.sha256[:16]}{posixpath.splitext(image.key)[1].lower()}": image for i, image in enumerate(batch)}
            # One form field per file: Label Studio keeps only the last file of a repeated field.
            files = [(f"file{i}", (name, self.store.get_bytes(image.key))) for i, (name, image) in enumerate(names.items())]
            answer = self.client.request("POST", f"/api/projects/{project}/import", params={"commit_to_project": "false"}, files=files)
            uploads = self.client.request(
                "GET", f"/api/projects/{project}/file-uploads", params={"ids": json.dumps(answer["file_upload_ids"])}
            )
            for upload in uploads:
                stored = posixpath.basename(upload["file"])
                image = names.get(stored.split("-", 1)[1] if "-" in stored else stored)
                if image is not None:
                    urls[image.key] = "/data/" + upload["file"].lstrip("/")
        lost = [image.key for image in images if image.key not in urls]
        if lost:
            raise LabelStudioError(f"Label Studio project {project}: uploads of {lost[:5]} are not listed after upload")
        return urls

    def _job_task_ids(self, project: int, job_id: str) -> dict[str, int]:
        """``source_ref -> task id`` for the tasks of ``job_id`` already in the project."""
        query = {"filters": {"conjunction": "and", "items": [
            {"filter": "filter:tasks:data.tagqa_job", "operator": "equal", "type": "String", "value": job_id}
        ]}}
        found: dict[str, int] = {}
        page = 1
        while True:
            params = {"project": project, "query": json.dumps(query), "fields": "task_only", "page": page, "page_size": _PAGE_SIZE}
            answer = self.client.request("GET", "/api/tasks", params=params)
            for task in answer["tasks"]:
                found.setdefault(task["data"]["source_ref"], int(task["id"]))
            if page * _PAGE_SIZE >= int(answer.get("total", 0)):
                return found
            page += 1

    def _export(self, job: LabelingJob) -> dict[int, dict[str, Any]]:
        """The job's tasks with their annotations, by task id (deleted tasks are absent)."""
        project = job.detail["project_id"]
        ids = sorted({int(task_id) for task_id in job.detail["task_ids"].values()})
        tasks: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), _EXPORT_BATCH):
            params = {"exportType": "JSON", "download_all_tasks": "true", "ids[]": ids[start : start + _EXPORT_BATCH]}
            for task in self.client.request("GET", f"/api/projects/{project}/export", params=params):
                tasks[int(task["id"])] = task
        return tasks


def _finished(task: dict[str, Any] | None) -> dict[str, Any] | None:
    """The task's label: its newest submitted, not skipped annotation (the shared rule), or ``None``."""
    return None if task is None else latest_annotation(task.get("annotations"))
