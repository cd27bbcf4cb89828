"""The rows every label-format parser produces (``format_*.py``), and helpers they share.

A parser never stops at a bad row: every row becomes either a ``LabelRow`` or a
``Reject`` with a reason (``box_checks.REJECT_REASONS``) and its line number, so the
valid rows of a file are imported and the rest are reported. Matching rows to raw
images and checking boxes against image sizes happens afterwards (``pipeline.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from tagqa_assets.contracts.labels import APPROVED, Annotation
from tagqa_assets.labeling.imports.box_checks import INVALID_VALUE, MISSING_FIELD, UNPARSEABLE, RowRejected, class_id_for

LABELS_CSV = "labels-csv"
GROUNDTRUTH = "groundtruth"
RECORDS = "records"
COCO = "coco"
YOLO = "yolo"
LABELSTUDIO = "labelstudio"
FORMATS = (LABELS_CSV, GROUNDTRUTH, RECORDS, COCO, YOLO, LABELSTUDIO)


@dataclass
class LabelRow:
    """One parsed label, not yet matched to a raw image.

    ``annotations`` are in pixels, or in fractions of the image size when ``normalized``
    (YOLO). ``by_stem`` marks references without an image extension (YOLO label files);
    ``local_image`` is a readable copy of the image, used to match by content hash.
    """

    line: int
    source_ref: str
    annotations: list[Annotation]
    event_time: float
    labeling_job: str
    status: str = APPROVED
    width: int | None = None
    height: int | None = None
    depth: int = 3
    image_sha256: str | None = None
    normalized: bool = False
    by_stem: bool = False
    local_image: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["annotations"] = [asdict(a) for a in self.annotations]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LabelRow:
        values = dict(data)
        values["annotations"] = [Annotation.from_dict(a) for a in data["annotations"]]
        return cls(**values)


@dataclass(frozen=True)
class Reject:
    """A row that was not imported, and why."""

    line: int
    source_ref: str
    reason: str
    detail: str


@dataclass
class ParsedFile:
    """Rows and rejects of one label file, in file order."""

    format: str
    rows: list[LabelRow] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)


def positive_int(value: Any, name: str) -> int:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise RowRejected(INVALID_VALUE, f"{name} {value!r} is not a number") from None
    if number <= 0:
        raise RowRejected(INVALID_VALUE, f"{name} {number} is not positive")
    return number


def number(value: Any, name: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RowRejected(INVALID_VALUE, f"{name} {value!r} is not a number") from None


def annotations_of(items: Any, class_map: dict[str, str] | None = None) -> list[Annotation]:
    if not isinstance(items, list):
        raise RowRejected(INVALID_VALUE, f"annotations must be a list, got {type(items).__name__}")
    boxes = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise RowRejected(INVALID_VALUE, f"annotation {index} is not an object: {item!r}")
        missing = [k for k in ("class_id", "left", "top", "width", "height") if k not in item]
        if missing:
            raise RowRejected(MISSING_FIELD, f"annotation {index} lacks {missing}")
        class_id = class_id_for(item["class_id"], class_map)
        boxes.append(Annotation(class_id, *(number(item[k], k) for k in ("left", "top", "width", "height"))))
    return boxes


def require(row: dict[str, Any], names: tuple[str, ...]) -> None:
    missing = [name for name in names if row.get(name) in (None, "")]
    if missing:
        raise RowRejected(MISSING_FIELD, f"missing {', '.join(missing)}")


def json_lines(data: bytes, parsed: ParsedFile, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, object)`` for each JSON-object line; other lines become ``UNPARSEABLE`` rejects in ``parsed``."""
    for line, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            item = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            parsed.rejects.append(Reject(line, "", UNPARSEABLE, f"not JSON: {exc}"))
            continue
        if not isinstance(item, dict):
            parsed.rejects.append(Reject(line, "", UNPARSEABLE, f"a JSON line must be an object, got {type(item).__name__}"))
            continue
        yield line, item


