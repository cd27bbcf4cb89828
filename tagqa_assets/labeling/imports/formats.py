"""Which format a label file is in, and the parser for it (``format_*.py``).

Formats: ``labels-csv`` (the reference export), ``records`` (label-record JSON lines),
``groundtruth`` (SageMaker Ground Truth output manifests), ``coco`` (COCO detection JSON),
``labelstudio`` (Label Studio JSON or JSON-MIN export) and ``yolo`` (a folder, see
``format_yolo.py``). Detection reads the name and the content, never the name alone.
"""

from __future__ import annotations

import json
from pathlib import Path

from tagqa_assets.labeling.imports.format_coco import parse_coco
from tagqa_assets.labeling.imports.format_groundtruth import parse_groundtruth
from tagqa_assets.labeling.imports.format_labelstudio import is_labelstudio_export, parse_labelstudio
from tagqa_assets.labeling.imports.format_tagqa import parse_labels_csv, parse_records
from tagqa_assets.labeling.imports.rows import COCO, FORMATS, GROUNDTRUTH, LABELS_CSV, LABELSTUDIO, RECORDS, YOLO, ParsedFile


def detect_format(name: str, data: bytes) -> str:
    """The format of a label file, from its name and first bytes; raises ``ValueError`` naming the file."""
    lowered = name.lower()
    head = data.lstrip()[:4096].decode("utf-8", "replace")
    first_line = head.splitlines()[0] if head else ""
    if lowered.endswith(".csv") or first_line.startswith("source_ref,"):
        return LABELS_CSV
    if head.startswith("{") and lowered.endswith(".json") and '"images"' in data.decode("utf-8", "replace"):
        return COCO
    if head.startswith("["):
        try:
            if is_labelstudio_export(json.loads(data)):
                return LABELSTUDIO
        except (json.JSONDecodeError, UnicodeDecodeError):
            pass
    if '"source-ref"' in first_line:
        return GROUNDTRUTH
    if '"source_ref"' in first_line:
        return RECORDS
    raise ValueError(
        f"{name}: cannot tell the label format (expected labels.csv, a Ground Truth manifest, label-record JSON lines, "
        "COCO JSON or a Label Studio JSON/JSON-MIN export); name one with --format"
    )


def parse_label_bytes(data: bytes, name: str, *, fmt: str | None, event_time: float, images_root: Path | None = None) -> ParsedFile:
    """Parse one label file's bytes; ``fmt`` ``None`` detects the format (``ValueError`` if it cannot)."""
    fmt = fmt or detect_format(name, data)
    if fmt == LABELS_CSV:
        parsed = parse_labels_csv(data, name)
    elif fmt == GROUNDTRUTH:
        parsed = parse_groundtruth(data, name)
    elif fmt == RECORDS:
        parsed = parse_records(data, name)
    elif fmt == COCO:
        return parse_coco(data, name, event_time=event_time, images_root=images_root)
    elif fmt == LABELSTUDIO:
        parsed = parse_labelstudio(data, name)
    else:
        raise ValueError(f"{name}: format {fmt!r} is not a single-file format; use one of {[f for f in FORMATS if f != YOLO]}")
    if images_root is not None:
        for row in parsed.rows:
            row.local_image = find_local_image(row.source_ref, images_root)
    return parsed


def find_local_image(source_ref: str, images_root: Path) -> str | None:
    """The file under ``images_root`` a reference points at: its longest path suffix that exists."""
    ref = source_ref.split("://", 1)[-1]
    parts = [p for p in ref.split("/") if p not in ("", ".", "..")]
    for length in range(len(parts), 0, -1):
        candidate = images_root.joinpath(*parts[-length:])
        if candidate.is_file():
            return str(candidate)
    return None


