"""Parsing label files into rows: the reference ``labels.csv``, Ground Truth output
manifests, label-record JSON lines (``tagqa demo``), COCO JSON and YOLO txt folders
(the last two in ``yolo_coco.py``).

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
from datetime import datetime, timezone
from typing import Any

from tagqa_assets.contracts.labels import APPROVED, REJECTED, STATUSES, Annotation
from tagqa_assets.labeling.box_checks import INVALID_VALUE, MISSING_FIELD, UNPARSEABLE, RowRejected, class_id_for

LABELS_CSV = "labels-csv"
GROUNDTRUTH = "groundtruth"
RECORDS = "records"
COCO = "coco"
YOLO = "yolo"
FORMATS = (LABELS_CSV, GROUNDTRUTH, RECORDS, COCO, YOLO)
VERIFICATION_APPROVED_CLASS = 0  # the reference pipeline's verification job: class 0 = approve


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


def _positive_int(value: Any, name: str) -> int:
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


def _annotations(items: Any, class_map: dict[str, str] | None = None) -> list[Annotation]:
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


def _require(row: dict[str, Any], names: tuple[str, ...]) -> None:
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
            _require(row, required)
            try:
                items = ast.literal_eval(row["annotations"])
            except (ValueError, SyntaxError) as exc:
                raise RowRejected(UNPARSEABLE, f"annotations are not a list literal: {exc}") from None
            parsed.rows.append(
                LabelRow(
                    line=line,
                    source_ref=ref,
                    annotations=_annotations(items),
                    event_time=_float(row["event_time"], "event_time"),
                    labeling_job=row["labeling_job"],
                    status=_status(row["status"]),
                    width=_positive_int(row["image_width"], "image_width"),
                    height=_positive_int(row["image_height"], "image_height"),
                    depth=_positive_int(row.get("image_depth") or 3, "image_depth"),
                    image_sha256=row.get("image_sha256") or None,
                )
            )
        except RowRejected as exc:
            parsed.rejects.append(Reject(line, ref, exc.reason, exc.detail))
    return parsed


def _json_lines(data: bytes, parsed: ParsedFile, name: str):
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
    for line, item in _json_lines(data, parsed, name):
        ref = str(item.get("source_ref") or "")
        try:
            _require(item, ("source_ref", "image_width", "image_height", "event_time", "labeling_job", "status"))
            annotations = item.get("annotations", [])
            if isinstance(annotations, str):
                try:
                    annotations = json.loads(annotations)
                except json.JSONDecodeError as exc:
                    raise RowRejected(UNPARSEABLE, f"annotations are not JSON: {exc}") from None
            parsed.rows.append(
                LabelRow(
                    line=line,
                    source_ref=ref,
                    annotations=_annotations(annotations),
                    event_time=_float(item["event_time"], "event_time"),
                    labeling_job=str(item["labeling_job"]),
                    status=_status(item["status"]),
                    width=_positive_int(item["image_width"], "image_width"),
                    height=_positive_int(item["image_height"], "image_height"),
                    depth=_positive_int(item.get("image_depth") or 3, "image_depth"),
                    image_sha256=item.get("image_sha256") or None,
                )
            )
        except RowRejected as exc:
            parsed.rejects.append(Reject(line, ref, exc.reason, exc.detail))
    return parsed


def groundtruth_time(text: str) -> float:
    """Unix seconds of a Ground Truth ``creation-date`` (``%Y-%m-%dT%H:%M:%S.%f``, UTC)."""
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text.rstrip("Z"), pattern).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise RowRejected(INVALID_VALUE, f"creation-date {text!r} is not %Y-%m-%dT%H:%M:%S.%f")


def _groundtruth_attributes(item: dict[str, Any]) -> tuple[str, str | None]:
    label = next((k for k, v in item.items() if isinstance(v, dict) and "annotations" in v), None)
    if label is None:
        failed = next((v.get("failure-reason") for k, v in item.items() if k.endswith("-metadata") and isinstance(v, dict) and v.get("failure-reason")), None)
        raise RowRejected(MISSING_FIELD, f"no bounding-box attribute (an object with 'annotations'){f': {failed}' if failed else ''}")
    verification = None
    for key, value in item.items():
        meta = item.get(f"{key}-metadata")
        if key != label and not key.endswith("-metadata") and (key == "verified" or (isinstance(meta, dict) and meta.get("type") == "groundtruth/label-verification")):
            verification = key
    return label, verification


def parse_groundtruth(data: bytes, name: str) -> ParsedFile:
    """Ground Truth output manifests: a bounding-box job's, or its verification job's.

    The verification attribute (``verified``, or any attribute whose metadata type is
    ``groundtruth/label-verification``) is a class: ``0`` approves, anything else rejects,
    as in the reference pipeline. Without one, the labels count as approved. The event
    time is the later of the labeling and verification ``creation-date``s.
    """
    parsed = ParsedFile(GROUNDTRUTH)
    for line, item in _json_lines(data, parsed, name):
        ref = str(item.get("source-ref") or "")
        try:
            _require(item, ("source-ref",))
            label, verification = _groundtruth_attributes(item)
            value, meta = item[label], item.get(f"{label}-metadata") or {}
            _require(meta, ("creation-date", "job-name"))
            sizes = value.get("image_size") or []
            if not sizes or not isinstance(sizes[0], dict):
                raise RowRejected(MISSING_FIELD, f"{label}.image_size is missing")
            class_map = {str(k): str(v) for k, v in (meta.get("class-map") or {}).items()} or None
            event_time = groundtruth_time(str(meta["creation-date"]))
            status = APPROVED
            if verification is not None:
                verdict = item[verification]
                status = APPROVED if str(verdict) == str(VERIFICATION_APPROVED_CLASS) else REJECTED
                verified_meta = item.get(f"{verification}-metadata") or {}
                if verified_meta.get("creation-date"):
                    event_time = max(event_time, groundtruth_time(str(verified_meta["creation-date"])))
            parsed.rows.append(
                LabelRow(
                    line=line,
                    source_ref=ref,
                    annotations=_annotations(value.get("annotations"), class_map),
                    event_time=event_time,
                    labeling_job=str(meta["job-name"]),
                    status=status,
                    width=_positive_int(sizes[0].get("width"), "image_size.width"),
                    height=_positive_int(sizes[0].get("height"), "image_size.height"),
                    depth=_positive_int(sizes[0].get("depth") or 3, "image_size.depth"),
                )
            )
        except RowRejected as exc:
            parsed.rejects.append(Reject(line, ref, exc.reason, exc.detail))
    return parsed
