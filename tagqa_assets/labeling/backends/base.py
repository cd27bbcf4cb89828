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
