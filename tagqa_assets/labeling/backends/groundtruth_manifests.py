"""Ground Truth manifests and task files as the groundtruth backend writes and reads them.

Input manifest (JSON lines): ``{"source-ref": "s3://..."}``, plus, when the model has
suggestions, a ``prelabel`` attribute in Ground Truth's own bounding-box format that the
worker template shows as editable starting boxes.

Output manifest of the labeling job (and, line by line, of the verification job, which
copies it and adds its verdict): ``source-ref``; ``category`` with ``image_size``
``[{width, height, depth}]`` and ``annotations`` ``[{class_id, left, top, width, height}]``
in pixels; ``category-metadata`` with ``class-map``, ``job-name``, ``creation-date``
(``%Y-%m-%dT%H:%M:%S.%f``, UTC) or ``failure-reason``; and from the verification job
``verified`` (class 0 = the boxes are right, approve; any other class rejects) with
``verified-metadata`` (``class-name``, ``class-map``). Both are read by the one Ground
Truth parser, ``imports/format_groundtruth.py``.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from tagqa_assets.contracts.labels import Annotation, LabelRecord
from tagqa_assets.labeling.backends.base import ImageRef
from tagqa_assets.labeling.imports.box_checks import UNANNOTATED
from tagqa_assets.labeling.imports.format_groundtruth import PRELABEL_ATTRIBUTE, VERDICTS, VERIFICATION_TYPE, parse_groundtruth
from tagqa_assets.settings import defect_classes

LABEL_ATTRIBUTE = "category"
VERIFICATION_ATTRIBUTE = "verified"
_TEMPLATES = Path(__file__).parent  # groundtruth-<name>.liquid.html, shipped as package data
_CLASS_NAMES_MARK = "__TAGQA_CLASS_NAMES_JSON__"


def _json_lines(items: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(item, separators=(",", ":")) + "\n" for item in items).encode()


def _class_map() -> dict[str, str]:
    return {str(index): name for index, name in enumerate(defect_classes())}


def input_manifest(images: list[ImageRef], uris: dict[str, str], suggestions: dict[str, list[Annotation]] | None, *, when: datetime) -> bytes:
    """The labeling job's input manifest: one line per image, with ``prelabel`` boxes when ``suggestions`` is given."""
    lines = []
    for image in images:
        line: dict[str, Any] = {"source-ref": uris[image.key]}
        if suggestions is not None:
            boxes = suggestions.get(image.key, [])
            line[PRELABEL_ATTRIBUTE] = {
                "image_size": [{"width": image.width, "height": image.height, "depth": 3}],
                "annotations": [{"class_id": b.class_id, "left": b.left, "top": b.top, "width": b.width, "height": b.height} for b in boxes],
            }
            line[f"{PRELABEL_ATTRIBUTE}-metadata"] = {
                "class-map": _class_map(),
                "type": "groundtruth/object-detection",
                "human-annotated": "no",
                "creation-date": when.strftime("%Y-%m-%dT%H:%M:%S.%f"),
                "job-name": "tagqa-model-suggestions",
            }
        lines.append(line)
    return _json_lines(lines)


def label_categories() -> dict[str, Any]:
    """The labeling job's label category configuration: one label per class of the taxonomy
    (``TAGQA_DEFECT_CLASSES``), in class-id order."""
    return {"document-version": "2018-11-28", "labels": [{"label": name} for name in defect_classes()]}


def verification_categories() -> dict[str, Any]:
    """The verification job's categories; the first one (class 0) approves, every other rejects."""
    return {"document-version": "2018-11-28", "labels": [{"label": verdict} for verdict in VERDICTS]}


def template(name: str) -> bytes:
    """A worker task template (``bounding-box`` or ``verification``) with tagqa's class names filled in."""
    text = (_TEMPLATES / f"groundtruth-{name}.liquid.html").read_text()
    return text.replace(_CLASS_NAMES_MARK, json.dumps(list(defect_classes())).replace('"', "&quot;")).encode()


def labeled_lines(data: bytes) -> tuple[bytes, int]:
    """The labeling output's lines that got a label (the verification job's input), and how many failed."""
    kept, failed = [], 0
    for raw in data.splitlines():
        if not raw.strip():
            continue
        item = json.loads(raw)
        if LABEL_ATTRIBUTE in item and "failure-reason" not in (item.get(f"{LABEL_ATTRIBUTE}-metadata") or {}):
            kept.append(raw.decode() + "\n")
        else:
            failed += 1
    return "".join(kept).encode(), failed


def parse_output(data: bytes, images_by_uri: dict[str, ImageRef], *, manifest: str, verified: bool) -> list[LabelRecord]:
    """Label records of an output manifest (``verified``: the verification job's), read by the one
    Ground Truth parser (``imports/format_groundtruth.py``).

    Lines whose labeling or verification failed carry no label and are left out. The event
    time is the later of the labeling and verification ``creation-date``s (the time of the
    decision), ``labeling_job`` the labeling job's ``job-name``. Raises ``ValueError`` naming
    ``manifest``, the line and the reason for any other line that does not fit: a job's own
    output has no room for bad rows.
    """
    parsed = parse_groundtruth(data, manifest, require_verdict=verified)
    problems = [r for r in parsed.rejects if r.reason != UNANNOTATED]
    if problems:
        first = problems[0]
        raise ValueError(f"{manifest} line {first.line}: {first.reason}: {first.detail}" + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    records = []
    for row in parsed.rows:
        image = images_by_uri.get(row.source_ref)
        if image is None:
            raise ValueError(f"{manifest} line {row.line}: source-ref {row.source_ref!r} is not an image of this job")
        item = json.loads(data.splitlines()[row.line - 1])
        verdict = next((v.get("class-name") for k, v in item.items() if k.endswith("-metadata") and isinstance(v, dict) and v.get("type") == VERIFICATION_TYPE), None)
        records.append(
            LabelRecord(
                source_ref=image.key,
                image_sha256=image.sha256,
                image_width=int(row.width or image.width),
                image_height=int(row.height or image.height),
                image_depth=row.depth,
                annotations=tuple(row.annotations),
                event_time=row.event_time,
                labeling_job=row.labeling_job,
                status=row.status,
                extra={"verdict": verdict or (item.get(f"{VERIFICATION_ATTRIBUTE}-metadata") or {}).get("class-name")} if verified else {},
            )
        )
    return records
