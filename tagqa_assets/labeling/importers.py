"""Parsing label files into rows: the reference ``labels.csv`` and label-record JSON lines
(``tagqa demo``) here; Ground Truth output manifests in ``groundtruth_manifest.py``; COCO
JSON and YOLO txt folders in ``yolo_coco.py``.

A parser never stops at a bad row: every row becomes either a ``LabelRow`` or a
``Reject`` with a reason (``box_checks.REJECT_REASONS``) and its line number, so the
valid rows of a file are imported and the rest are reported. Matching rows to raw
images and checking boxes against image sizes happens afterwards (``label_import.py``).
"""

from __future__ import annotations

import ast
import csv
import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tagqa_assets.contracts.labels import APPROVED, STATUSES, Annotation
from tagqa_assets.labeling.box_checks import INVALID_VALUE, MISSING_FIELD, UNPARSEABLE, RowRejected, class_id_for

LABELS_CSV = "labels-csv"
GROUNDTRUTH = "groundtruth"
RECORDS = "records"
COCO = "coco"
YOLO = "yolo"
FORMATS = (LABELS_CSV, GROUNDTRUTH, RECORDS, COCO, YOLO)


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


def detect_format(name: str, data: bytes) -> str:
    """The format of a label file, from its name and first bytes; raises ``ValueError`` naming the file."""
    lowered = name.lower()
    head = data.lstrip()[:4096].decode("utf-8", "replace")
    first_line = head.splitlines()[0] if head else ""
    if lowered.endswith(".csv") or first_line.startswith("source_ref,"):
        return LABELS_CSV
    if lowered.endswith(".json") and head.startswith("{") and '"images"' in data.decode("utf-8", "replace"):
        return COCO
    if '"source-ref"' in first_line:
        return GROUNDTRUTH
    if '"source_ref"' in first_line:
        return RECORDS
    raise ValueError(f"{name}: cannot tell the label format (expected labels.csv, a Ground Truth manifest, label-record JSON lines or COCO JSON)")


def _status(value: Any) -> str:
    status = str(value).strip().upper()
    if status not in STATUSES:
        raise RowRejected(INVALID_VALUE, f"status {value!r} is not one of {STATUSES}")
    return status


def positive_int(value: Any, name: str) -> int:
    try:
        number = int(float(value))
    except (TypeError, ValueError):
        raise RowRejected(INVALID_VALUE, f"{name} {value!r} is not a number") from None
    if number <= 0:
        raise RowRejected(INVALID_VALUE, f"{name} {number} is not positive")
    return number


def _float(value: Any, name: str) -> float:
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
        boxes.append(Annotation(class_id, *(_float(item[k], k) for k in ("left", "top", "width", "height"))))
    return boxes


def require(row: dict[str, Any], names: tuple[str, ...]) -> None:
    missing = [name for name in names if row.get(name) in (None, "")]
    if missing:
        raise RowRejected(MISSING_FIELD, f"missing {', '.join(missing)}")


def parse_labels_csv(data: bytes, name: str) -> ParsedFile:
    """The reference export: ``source_ref,image_width,image_height,image_depth,annotations,
    event_time,labeling_job,status`` with Python-literal annotations."""
    parsed = ParsedFile(LABELS_CSV)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        parsed.rejects.append(Reject(0, name, UNPARSEABLE, f"not UTF-8 text: {exc}"))
        return parsed
    reader = csv.DictReader(io.StringIO(text))
    required = ("source_ref", "image_width", "image_height", "annotations", "event_time", "labeling_job", "status")
    absent = [column for column in required if column not in (reader.fieldnames or [])]
    if absent:
        parsed.rejects.append(Reject(1, name, MISSING_FIELD, f"header lacks columns {absent}"))
        return parsed
    for row in reader:
        line = reader.line_num
        ref = str(row.get("source_ref") or "")
        try:
            if None in row or any(value is None for value in row.values()):
                raise RowRejected(UNPARSEABLE, f"expected {len(reader.fieldnames or [])} columns")
            require(row, required)
            try:
                items = ast.literal_eval(row["annotations"])
            except (ValueError, SyntaxError) as exc:
                raise RowRejected(UNPARSEABLE, f"annotations are not a list literal: {exc}") from None
            parsed.rows.append(_record_row(line, ref, row, items))
        except RowRejected as exc:
            parsed.rejects.append(Reject(line, ref, exc.reason, exc.detail))
    return parsed


def _record_row(line: int, ref: str, record: dict, annotations: list) -> LabelRow:
    """A ``LabelRow`` from a record with the label-store columns (a labels.csv row or a JSON line).

    Raises ``RowRejected`` naming the column that is missing or invalid.
    """
    return LabelRow(
        line=line,
        source_ref=ref,
        annotations=annotations_of(annotations),
        event_time=_float(record["event_time"], "event_time"),
        labeling_job=str(record["labeling_job"]),
        status=_status(record["status"]),
        width=positive_int(record["image_width"], "image_width"),
        height=positive_int(record["image_height"], "image_height"),
        depth=positive_int(record.get("image_depth") or 3, "image_depth"),
        image_sha256=record.get("image_sha256") or None,
    )


def json_lines(data: bytes, parsed: ParsedFile, name: str):
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


def parse_records(data: bytes, name: str) -> ParsedFile:
    """Label-record JSON lines (``LabelRecord.to_row``), as ``tagqa demo`` writes them."""
    parsed = ParsedFile(RECORDS)
    for line, item in json_lines(data, parsed, name):
        ref = str(item.get("source_ref") or "")
        try:
            require(item, ("source_ref", "image_width", "image_height", "event_time", "labeling_job", "status"))
            annotations = item.get("annotations", [])
            if isinstance(annotations, str):
                try:
                    annotations = json.loads(annotations)
                except json.JSONDecodeError as exc:
                    raise RowRejected(UNPARSEABLE, f"annotations are not JSON: {exc}") from None
            parsed.rows.append(_record_row(line, ref, item, annotations))
        except RowRejected as exc:
            parsed.rejects.append(Reject(line, ref, exc.reason, exc.detail))
    return parsed
