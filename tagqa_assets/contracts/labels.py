"""The label record: one labeling decision about one image (contract version 1).

Same fields as the reference pipeline's SageMaker Feature Store record
(``source_ref, image_width, image_height, image_depth, annotations, event_time,
labeling_job, status``) plus ``image_sha256``, the content hash of the labeled image, which
tagqa uses to join labels to raw images and dataset manifests. The store is append-only;
for each ``source_ref`` the record with the greatest ``event_time`` wins, and a winning
``REJECTED`` record removes the image from training.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

LABEL_RECORD_VERSION = 1
# The defect taxonomy: class id = position. The project's own comes from TAGQA_DEFECT_CLASSES
# (``tagqa_assets.settings.defect_classes``); this is the reference pipeline's, the default.
DEFAULT_CLASS_NAMES: tuple[str, ...] = ("scratch",)

# The labeling job of the labels ``tagqa demo`` writes with its synthetic images; a dataset
# version whose every label carries it is a demo version (trained with the demo profile).
DEMO_LABELING_JOB = "synthetic-demo"

APPROVED = "APPROVED"
REJECTED = "REJECTED"
STATUSES = (APPROVED, REJECTED)

LABEL_RECORD_COLUMNS = (
    "source_ref",
    "image_sha256",
    "image_width",
    "image_height",
    "image_depth",
    "annotations",
    "event_time",
    "labeling_job",
    "status",
)


def parse_class_names(text: str, *, source: str = "TAGQA_DEFECT_CLASSES") -> tuple[str, ...]:
    """An ordered, comma-separated list of defect class names as a tuple (class id = position).

    Names are stripped; raises ``ValueError`` naming ``source`` for an empty list, an empty
    name or a name given twice.
    """
    names = tuple(name.strip() for name in text.split(","))
    if not text.strip() or any(not name for name in names):
        raise ValueError(f"{source}={text!r}: expected comma-separated class names such as 'scratch,dent'")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"{source}={text!r}: class names {repeated} appear more than once")
    return names


@dataclass(frozen=True)
class Annotation:
    """One box in pixels of the original image, top-left origin (Ground Truth's format)."""

    class_id: int
    left: float
    top: float
    width: float
    height: float

    def xyxy(self) -> tuple[float, float, float, float]:
        """The box as ``(x1, y1, x2, y2)`` pixels."""
        return (self.left, self.top, self.left + self.width, self.top + self.height)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Annotation:
        """Build from ``{'class_id','left','top','width','height'}``; raises ``ValueError`` on missing/non-numeric fields."""
        try:
            return cls(
                class_id=int(raw["class_id"]),
                left=float(raw["left"]),
                top=float(raw["top"]),
                width=float(raw["width"]),
                height=float(raw["height"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid annotation {raw!r}: {exc}") from exc


@dataclass(frozen=True)
class LabelRecord:
    """One row of the label store (see module docstring)."""

    source_ref: str
    image_width: int
    image_height: int
    annotations: tuple[Annotation, ...]
    event_time: float
    labeling_job: str
    status: str = APPROVED
    image_depth: int = 3
    image_sha256: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"label for {self.source_ref!r}: status {self.status!r} is not one of {STATUSES}")
        if self.image_width <= 0 or self.image_height <= 0:
            raise ValueError(f"label for {self.source_ref!r}: image size {self.image_width}x{self.image_height} is not positive")

    def annotations_json(self) -> str:
        """Annotations serialized as the JSON string stored in Parquet / Feature Store."""
        return json.dumps([asdict(a) for a in self.annotations], separators=(",", ":"))

    def to_row(self) -> dict[str, Any]:
        """A flat row with ``LABEL_RECORD_COLUMNS`` (annotations as a JSON string)."""
        return {
            "source_ref": self.source_ref,
            "image_sha256": self.image_sha256,
            "image_width": int(self.image_width),
            "image_height": int(self.image_height),
            "image_depth": int(self.image_depth),
            "annotations": self.annotations_json(),
            "event_time": float(self.event_time),
            "labeling_job": self.labeling_job,
            "status": self.status,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> LabelRecord:
        """Inverse of ``to_row``; ``annotations`` may be a JSON string or a list of dicts."""
        annotations = row["annotations"]
        if isinstance(annotations, str):
            annotations = json.loads(annotations)
        sha = row.get("image_sha256")
        return cls(
            source_ref=str(row["source_ref"]),
            image_sha256=str(sha) if sha else None,
            image_width=int(row["image_width"]),
            image_height=int(row["image_height"]),
            image_depth=int(row.get("image_depth") or 3),
            annotations=tuple(Annotation.from_dict(a) for a in annotations),
            event_time=float(row["event_time"]),
            labeling_job=str(row["labeling_job"]),
            status=str(row["status"]),
        )
