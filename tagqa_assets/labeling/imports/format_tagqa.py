"""The label-store formats: the reference ``labels.csv`` and label-record JSON lines (``tagqa demo``)."""

from __future__ import annotations

import ast
import csv
import io
import json
from typing import Any

from tagqa_assets.contracts.labels import STATUSES
from tagqa_assets.labeling.imports.box_checks import INVALID_VALUE, MISSING_FIELD, UNPARSEABLE, RowRejected
from tagqa_assets.labeling.imports.rows import LABELS_CSV, RECORDS, LabelRow, ParsedFile, Reject, annotations_of, json_lines, number, positive_int, require


def _status(value: Any) -> str:
    status = str(value).strip().upper()
    if status not in STATUSES:
        raise RowRejected(INVALID_VALUE, f"status {value!r} is not one of {STATUSES}")
    return status


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
        event_time=number(record["event_time"], "event_time"),
        labeling_job=str(record["labeling_job"]),
        status=_status(record["status"]),
        width=positive_int(record["image_width"], "image_width"),
        height=positive_int(record["image_height"], "image_height"),
        depth=positive_int(record.get("image_depth") or 3, "image_depth"),
        image_sha256=record.get("image_sha256") or None,
    )


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
