"""The labeling backend interface: send images to people, get label records back.

Implementations: ``inbox`` (label files dropped into ``inbox/labels/``), ``labelstudio``
(a self-hosted Label Studio, the local default for humans) and ``groundtruth`` (SageMaker
Ground Truth + verification job on AWS). The labeling stage keeps one ``LabelingJob``
record per job in the store and polls open jobs from ``labeling_job_sensor``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from tagqa_assets.contracts.labels import Annotation, LabelRecord

OPEN = "OPEN"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
JOB_STATES = (OPEN, COMPLETED, FAILED)


@dataclass(frozen=True)
class ImageRef:
    """An image to label: its raw key, content hash, size, and an address the backend can read."""

    key: str
    sha256: str
    width: int
    height: int
    uri: str


@dataclass(frozen=True)
class LabelingJob:
    """One job as the pipeline remembers it (``labeling/jobs/<job_id>.json`` in the store)."""

    job_id: str
    backend: str
    images: tuple[ImageRef, ...]
    created_at: str
    external_id: str = ""  # project id, Ground Truth job name, inbox file key
    state: str = OPEN
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobStatus:
    """What polling a job found out."""

    state: str  # one of JOB_STATES
    done: int  # images with a finished label
    total: int
    message: str = ""


def check_job_request(job_id: str, images: list[ImageRef], pre_annotations: dict[str, list[Annotation]] | None) -> None:
    """Raise ``ValueError`` naming the job when it has no images, an image twice, or suggestions for other images."""
    keys = [image.key for image in images]
    if not images:
        raise ValueError(f"labeling job {job_id!r}: no images")
    if len(set(keys)) != len(keys):
        raise ValueError(f"labeling job {job_id!r}: the same image key appears twice")
    unknown = sorted(set(pre_annotations or {}) - set(keys))
    if unknown:
        raise ValueError(f"labeling job {job_id!r}: pre-annotations for images not in the job: {unknown[:5]}")


class LabelingBackend(ABC):
    """Create a job for some images, poll it, fetch its results as label records."""

    name: str

    @abstractmethod
    def create_job(self, images: list[ImageRef], *, job_id: str, pre_annotations: dict[str, list[Annotation]] | None = None) -> LabelingJob:
        """Open a job for ``images``; ``pre_annotations`` (by image key) are model suggestions to start from."""

    @abstractmethod
    def job_status(self, job: LabelingJob) -> JobStatus:
        """Current state of ``job``; never raises for a job that merely is not finished."""

    @abstractmethod
    def fetch_results(self, job: LabelingJob) -> list[LabelRecord]:
        """Finished labels of ``job`` as label records (``source_ref`` = raw key); safe to call repeatedly."""
