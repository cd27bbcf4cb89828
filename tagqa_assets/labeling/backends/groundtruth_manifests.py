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
``verified-metadata``.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tagqa_assets.contracts.labels import APPROVED, CLASS_NAMES, REJECTED, Annotation, LabelRecord
from tagqa_assets.labeling.backends.base import ImageRef

LABEL_ATTRIBUTE = "category"
VERIFICATION_ATTRIBUTE = "verified"
PRELABEL_ATTRIBUTE = "prelabel"
APPROVED_CLASS = 0
VERDICTS = (
    "The boxes are right: every scratch has one tight box",
    "A box is wrong or a scratch has no box",
    "The image is unusable (blurred, cut off, not a tag)",
)
_TEMPLATES = Path(__file__).parent  # groundtruth-<name>.liquid.html, shipped as package data
_CLASS_NAMES_MARK = "__TAGQA_CLASS_NAMES_JSON__"


def _json_lines(items: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(item, separators=(",", ":")) + "\n" for item in items).encode()


def _class_map() -> dict[str, str]:
    return {str(index): name for index, name in enumerate(CLASS_NAMES)}


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
    """The labeling job's label category configuration: one label per class, in class-id order."""
    return {"document-version": "2018-11-28", "labels": [{"label": name} for name in CLASS_NAMES]}


def verification_categories() -> dict[str, Any]:
    """The verification job's categories; the first one (class 0) approves, every other rejects."""
    return {"document-version": "2018-11-28", "labels": [{"label": verdict} for verdict in VERDICTS]}


def template(name: str) -> bytes:
    """A worker task template (``bounding-box`` or ``verification``) with tagqa's class names filled in."""
    text = (_TEMPLATES / f"groundtruth-{name}.liquid.html").read_text()
    return text.replace(_CLASS_NAMES_MARK, json.dumps(list(CLASS_NAMES)).replace('"', "&quot;")).encode()


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


def creation_time(text: str, *, where: str) -> float:
    """Unix seconds of a Ground Truth ``creation-date`` (UTC, ``%Y-%m-%dT%H:%M:%S[.%f]``)."""
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text.rstrip("Z"), pattern).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise ValueError(f"{where}: creation-date {text!r} is not %Y-%m-%dT%H:%M:%S.%f")


def parse_output(data: bytes, images_by_uri: dict[str, ImageRef], *, manifest: str, verified: bool) -> list[LabelRecord]:
    """Label records of an output manifest (``verified``: the verification job's, with approve/reject verdicts).

    Lines whose labeling or verification failed carry no label and are left out. The event
    time is the later of the labeling and verification ``creation-date``s (the time of the
    decision), ``labeling_job`` the labeling job's ``job-name``. Raises ``ValueError`` naming
    ``manifest`` and the line for anything else that does not fit.
    """
    records = []
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{manifest} line {number}"
        try:
            item = json.loads(raw)
            image = images_by_uri.get(item["source-ref"])
            if image is None:
                raise ValueError(f"source-ref {item['source-ref']!r} is not an image of this job")
            meta = item.get(f"{LABEL_ATTRIBUTE}-metadata") or {}
            verdict_meta = item.get(f"{VERIFICATION_ATTRIBUTE}-metadata") or {}
            if LABEL_ATTRIBUTE not in item or "failure-reason" in meta or (verified and (VERIFICATION_ATTRIBUTE not in item or "failure-reason" in verdict_meta)):
                continue
            records.append(_record(item, meta, verdict_meta, image, verified=verified, where=where))
        except (KeyError, TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{where}: not a Ground Truth bounding-box line ({type(exc).__name__}: {exc})") from exc
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from exc
    return records


def _record(item: dict[str, Any], meta: dict[str, Any], verdict_meta: dict[str, Any], image: ImageRef, *, verified: bool, where: str) -> LabelRecord:
    label = item[LABEL_ATTRIBUTE]
    size = label["image_size"][0]
    class_map = {str(k): str(v) for k, v in (meta.get("class-map") or _class_map()).items()}
    boxes = []
    for box in label["annotations"]:
        name = class_map.get(str(box["class_id"]))
        if name not in CLASS_NAMES:
            raise ValueError(f"class {box['class_id']} ({name!r}) is not one of {list(CLASS_NAMES)}")
        boxes.append(Annotation(CLASS_NAMES.index(name), float(box["left"]), float(box["top"]), float(box["width"]), float(box["height"])))
    event_time = creation_time(str(meta["creation-date"]), where=where)
    status = APPROVED
    if verified:
        status = APPROVED if int(item[VERIFICATION_ATTRIBUTE]) == APPROVED_CLASS else REJECTED
        if verdict_meta.get("creation-date"):
            event_time = max(event_time, creation_time(str(verdict_meta["creation-date"]), where=where))
    return LabelRecord(
        source_ref=image.key,
        image_sha256=image.sha256,
        image_width=int(size["width"]),
        image_height=int(size["height"]),
        image_depth=int(size.get("depth") or 3),
        annotations=tuple(boxes),
        event_time=event_time,
        labeling_job=str(meta["job-name"]),
        status=status,
        extra={"verdict": verdict_meta.get("class-name")} if verified else {},
    )
