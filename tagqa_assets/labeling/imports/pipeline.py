"""Importing label rows into the label store: match, check, append, report.

For every import (a file, an inbox object, a labeling job's results) the same steps run:
duplicate rows of the file are rejected; each row is matched to a raw image
(``matching.py``); its image size must agree with the raw image; its boxes are checked
(``box_checks.py``); valid rows become label records named by the raw key and its content
hash and are appended (records already stored are skipped, so re-imports change nothing).
Rows whose image is not in the inventory yet are reported *and held* under
``labels/unmatched/`` and retried whenever new raw images were ingested.

Every import writes ``labels/imports/<import_id>/report.json``; for each of them
``rows == imported + already_in_store + len(rejects)``.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from tagqa_assets.contracts.keys import LABELS_PREFIX
from tagqa_assets.contracts.labels import Annotation, LabelRecord
from tagqa_assets.labeling.imports.box_checks import CONFLICTING_ROW, DUPLICATE_ROW, IMAGE_NOT_FOUND, SIZE_MISMATCH, RowRejected, check_boxes
from tagqa_assets.labeling.imports.rows import LabelRow, ParsedFile, Reject
from tagqa_assets.labeling.label_store import LabelStore, canonical_annotations
from tagqa_assets.labeling.imports.matching import RawImageIndex
from tagqa_assets.storage import ObjectStore

IMPORTS_PREFIX = f"{LABELS_PREFIX}imports/"
UNMATCHED_PREFIX = f"{LABELS_PREFIX}unmatched/"


@dataclass
class ImportReport:
    """The outcome of one import (stored as ``labels/imports/<import_id>/report.json``)."""

    import_id: str
    source: str
    format: str
    rows: int = 0
    imported: int = 0
    already_in_store: int = 0
    held_for_retry: int = 0
    rejects: list[Reject] = field(default_factory=list)
    clipped: list[dict] = field(default_factory=list)
    matched_by: dict[str, int] = field(default_factory=dict)
    created_at: str = ""

    def reasons(self) -> dict[str, int]:
        """Rejected rows per reason."""
        return dict(sorted(Counter(r.reason for r in self.rejects).items()))

    def check_accounting(self) -> None:
        """Raise ``AssertionError`` naming the counts if a row is unaccounted for."""
        if self.rows != self.imported + self.already_in_store + len(self.rejects):
            raise AssertionError(
                f"import {self.import_id}: rows {self.rows} != imported {self.imported} + already in store "
                f"{self.already_in_store} + rejected {len(self.rejects)}"
            )

    def to_json(self) -> dict:
        data = asdict(self)
        data["reasons"] = self.reasons()
        return data


def new_import_id(seed: bytes) -> str:
    """``<UTC time>-<content hash 12>``: sorts by time, differs for different inputs."""
    return f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}-{hashlib.sha256(seed).hexdigest()[:12]}"


def _file_sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def resolve_row(row: LabelRow, index: RawImageIndex) -> tuple[LabelRecord, str, list[str]]:
    """Match and check one row: returns ``(record, matching rule, clip notes)`` or raises ``RowRejected``."""
    local_sha = _file_sha256(row.local_image) if row.local_image else None
    if local_sha:
        match = index.match_content(local_sha)
    else:
        match = index.match(row.source_ref, sha256=row.image_sha256, by_stem=row.by_stem)
    if match.image is None:
        if match.reason == IMAGE_NOT_FOUND and row.width and row.height and not row.normalized:
            check_boxes(row.annotations, row.width, row.height)  # a bad row is rejected now, not held
        raise RowRejected(match.reason, match.detail)
    image = match.image
    if (row.width and row.width != image.width) or (row.height and row.height != image.height):
        raise RowRejected(SIZE_MISMATCH, f"label says {row.width}x{row.height}, raw image {image.key} is {image.width}x{image.height}")
    boxes = row.annotations
    if row.normalized:
        boxes = [Annotation(b.class_id, b.left * image.width, b.top * image.height, b.width * image.width, b.height * image.height) for b in boxes]
    checked, notes = check_boxes(boxes, image.width, image.height)
    record = LabelRecord(
        source_ref=image.key,
        image_sha256=image.sha256,
        image_width=image.width,
        image_height=image.height,
        image_depth=row.depth,
        annotations=checked,
        event_time=row.event_time,
        labeling_job=row.labeling_job,
        status=row.status,
    )
    return record, match.rule, notes


def _duplicate_rejects(rows: Sequence[LabelRow]) -> tuple[list[LabelRow], list[Reject]]:
    seen: dict[tuple[str, float], tuple[int, str]] = {}
    kept, rejects = [], []
    for row in rows:
        content = f"{row.status}|{row.width}|{row.height}|{canonical_annotations([asdict(a) for a in row.annotations])}"
        first = seen.get((row.source_ref, row.event_time))
        if first is None:
            seen[(row.source_ref, row.event_time)] = (row.line, content)
            kept.append(row)
        elif first[1] == content:
            rejects.append(Reject(row.line, row.source_ref, DUPLICATE_ROW, f"same label as line {first[0]}"))
        else:
            rejects.append(Reject(row.line, row.source_ref, CONFLICTING_ROW, f"same image and event_time as line {first[0]} but a different label; line {first[0]} kept"))
    return kept, rejects


def import_parsed(
    store: ObjectStore,
    label_store: LabelStore,
    parsed: ParsedFile,
    *,
    source: str,
    index: RawImageIndex | None = None,
    import_id: str | None = None,
    hold_unmatched: bool = True,
    write_report: bool = True,
) -> ImportReport:
    """Import the rows of ``parsed``; see the module docstring for what is guaranteed."""
    index = index if index is not None else RawImageIndex.load(store)
    import_id = import_id or new_import_id(source.encode() + json.dumps([r.to_json() for r in parsed.rows]).encode())
    report = ImportReport(import_id, source, parsed.format, created_at=datetime.now(timezone.utc).isoformat())
    report.rows = len(parsed.rows) + len(parsed.rejects)
    report.rejects.extend(parsed.rejects)
    rows, duplicates = _duplicate_rejects(parsed.rows)
    report.rejects.extend(duplicates)
    records, held, rules = [], [], Counter()
    for row in rows:
        try:
            record, rule, notes = resolve_row(row, index)
        except RowRejected as exc:
            report.rejects.append(Reject(row.line, row.source_ref, exc.reason, exc.detail))
            if exc.reason == IMAGE_NOT_FOUND:
                held.append({"row": row.to_json(), "format": parsed.format, "source": source, "detail": exc.detail})
            continue
        records.append(record)
        rules[rule] += 1
        report.clipped.extend({"line": row.line, "source_ref": row.source_ref, "note": note} for note in notes)
    result = label_store.append(records)
    report.imported, report.already_in_store = result.appended, result.already_present
    report.matched_by = dict(sorted(rules.items()))
    if held and hold_unmatched:
        store.put_bytes(f"{UNMATCHED_PREFIX}{import_id}.jsonl", "".join(json.dumps(h) + "\n" for h in held).encode())
        report.held_for_retry = len(held)
    report.check_accounting()
    if write_report:
        save_report(store, report)
    return report


def save_report(store: ObjectStore, report: ImportReport) -> str:
    """Write the report under ``labels/imports/<import_id>/report.json`` and return its key."""
    key = f"{IMPORTS_PREFIX}{report.import_id}/report.json"
    store.put_json(key, report.to_json())
    return key


def records_as_rows(records: Sequence[LabelRecord]) -> ParsedFile:
    """Label records from a labeling backend, as rows to import (``source_ref`` = raw key)."""
    rows = [
        LabelRow(
            line=number,
            source_ref=record.source_ref,
            annotations=list(record.annotations),
            event_time=record.event_time,
            labeling_job=record.labeling_job,
            status=record.status,
            width=record.image_width,
            height=record.image_height,
            depth=record.image_depth,
            image_sha256=record.image_sha256,
        )
        for number, record in enumerate(records, start=1)
    ]
    return ParsedFile("records", rows=rows)


def retry_unmatched(store: ObjectStore, label_store: LabelStore, index: RawImageIndex | None = None) -> list[ImportReport]:
    """Re-import every held row; rows still without an image stay held. One report per held file."""
    index = index if index is not None else RawImageIndex.load(store)
    reports = []
    for info in list(store.list_objects(UNMATCHED_PREFIX)):
        held = [json.loads(line) for line in store.get_bytes(info.key).decode().splitlines() if line.strip()]
        rows = [LabelRow.from_json(item["row"]) for item in held]
        parsed = ParsedFile(held[0]["format"] if held else "records", rows=rows)
        original = info.key[len(UNMATCHED_PREFIX) :].removesuffix(".jsonl").split(".retry-")[0]
        retry_id = f"{original}.retry-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}"
        report = import_parsed(
            store, label_store, parsed, source=f"retry of {original}", index=index, import_id=retry_id, hold_unmatched=False, write_report=False
        )
        still = {(r.line, r.source_ref) for r in report.rejects if r.reason == IMAGE_NOT_FOUND}
        remaining = [item for item in held if (item["row"]["line"], item["row"]["source_ref"]) in still]
        if remaining and len(remaining) == len(held):
            continue  # nothing matched: keep the held file as it is
        if remaining:
            store.put_bytes(f"{UNMATCHED_PREFIX}{retry_id}.jsonl", "".join(json.dumps(h) + "\n" for h in remaining).encode())
        report.held_for_retry = len(remaining)
        save_report(store, report)
        store.delete(info.key)
        reports.append(report)
    return reports
