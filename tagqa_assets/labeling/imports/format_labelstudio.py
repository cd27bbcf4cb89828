"""Label Studio's annotations: its JSON and JSON-MIN export files, and the boxes of one annotation.

This module is the one reader of Label Studio results: the file importer
(``tagqa labels import export.json --format labelstudio``) and the live backend
(``backends/labelstudio.py``) both call ``latest_annotation`` and ``result_boxes``.

Rules (docs/labeling.md, "Label Studio exports"):

- JSON export: a list of tasks, each with ``data`` and ``annotations``. The newest
  annotation that was not cancelled (skipped) is the label: greatest ``updated_at``, then
  ``created_at``, then ``id``. A task whose annotations are all cancelled is rejected as
  ``skipped``; a task with no annotation as ``unannotated``: neither is a label.
- JSON-MIN export: one object per annotation (task data merged in, ``id`` = task id,
  ``annotation_id``, ``created_at``, ``updated_at``, each control's results under its
  ``from_name``); Label Studio leaves cancelled annotations out and writes a task without
  annotations as an object with ``annotation_id: null``. The same newest-wins rule applies
  per task; a task is one row (its older annotations are not rows).
- Boxes are ``rectanglelabels`` results of *any* ``from_name``: ``x, y, width, height`` in
  percent of ``original_width`` x ``original_height`` (the image as a viewer shows it, EXIF
  orientation applied), ``rotation`` in degrees clockwise about the top-left corner. They
  become pixels exactly (``x / 100 * original_width``, rounded to 1/1000 px); a rotated box
  becomes its axis-aligned bounding box. A box whose label is not a class of the taxonomy
  rejects the task with ``unknown_class``.
- A ``choices`` result whose choice is ``reject`` (tagqa's verdict control) makes the label
  ``REJECTED``; any other submitted annotation is ``APPROVED`` (no box = no defect).
- The image: ``data.source_ref`` / ``data.image_sha256`` when the task was created by tagqa,
  else ``data.image`` normalized by ``image_reference`` (upload hash prefix stripped) and
  matched by the usual rule (``matching.py``).
"""

from __future__ import annotations

import json
import math
import posixpath
import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from tagqa_assets.contracts.labels import APPROVED, REJECTED, Annotation
from tagqa_assets.labeling.imports.box_checks import INVALID_VALUE, MISSING_FIELD, SKIPPED, UNANNOTATED, UNPARSEABLE, RowRejected, class_id_for
from tagqa_assets.labeling.imports.rows import LABELSTUDIO, LabelRow, ParsedFile, Reject

RECTANGLE = "rectanglelabels"
REJECT_CHOICE = "reject"
_DECIMALS = 3  # 1/1000 px: the precision the label store compares boxes at
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio names an upload "<uuid4 hex[:8]>-<file name>"
_IMAGE_NAME = re.compile(r"\.(jpe?g|png|bmp|tiff?|webp)$", re.IGNORECASE)


def labelstudio_time(text: object, *, field: str) -> float:
    """Unix seconds of a Label Studio timestamp (ISO 8601; naive = UTC). Raises ``RowRejected``."""
    try:
        when = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise RowRejected(INVALID_VALUE, f"{field} {text!r} is not an ISO 8601 time") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def _order(annotation: dict[str, Any]) -> tuple[float, float, int]:
    updated = annotation.get("updated_at") or annotation.get("created_at")
    created = annotation.get("created_at") or updated
    return (
        labelstudio_time(updated, field="updated_at") if updated else 0.0,
        labelstudio_time(created, field="created_at") if created else 0.0,
        int(annotation.get("id") or annotation.get("annotation_id") or 0),
    )


def latest_annotation(annotations: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    """The newest annotation that was not cancelled (by ``updated_at``, ``created_at``, ``id``), or ``None``."""
    submitted = [a for a in annotations or [] if not (a.get("was_cancelled") or a.get("skipped"))]
    return max(submitted, key=_order) if submitted else None


def is_rejected(result: list[dict[str, Any]]) -> bool:
    """Whether the annotation ticks the ``reject`` choice (tagqa's verdict control)."""
    return any(item.get("type") == "choices" and REJECT_CHOICE in ((item.get("value") or {}).get("choices") or []) for item in result)


def rotated_box_bounds(left: float, top: float, width: float, height: float, rotation_deg: float) -> tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` enclosing a ``width`` x ``height`` box turned clockwise (y down) about its top-left corner."""
    if rotation_deg % 360 == 0:
        return (left, top, left + width, top + height)
    angle = math.radians(rotation_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    corners = [(left + dx * cos - dy * sin, top + dx * sin + dy * cos) for dx, dy in ((0, 0), (width, 0), (width, height), (0, height))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return (min(xs), min(ys), max(xs), max(ys))


def box_of(value: dict[str, Any], width: int, height: int, *, index: int = 0) -> Annotation:
    """One ``rectanglelabels`` value (percent of ``width`` x ``height``) as a pixel box, not clipped.

    Raises ``RowRejected``: ``unknown_class`` for a label outside the taxonomy (or not exactly
    one label), ``invalid_value`` / ``missing_field`` for coordinates that are not numbers.
    """
    names = value.get(RECTANGLE) or []
    if len(names) != 1:
        raise RowRejected(INVALID_VALUE, f"box {index} carries labels {names!r}; expected exactly one")
    class_id = class_id_for(str(names[0]))
    try:
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        rotation = float(value.get("rotation") or 0.0)
    except KeyError as exc:
        raise RowRejected(MISSING_FIELD, f"box {index} lacks {exc.args[0]!r}") from None
    except (TypeError, ValueError):
        raise RowRejected(INVALID_VALUE, f"box {index} has a non-numeric coordinate in {value!r}") from None
    x1, y1, x2, y2 = rotated_box_bounds(x / 100.0 * width, y / 100.0 * height, w / 100.0 * width, h / 100.0 * height, rotation)
    return Annotation(class_id, round(x1, _DECIMALS), round(y1, _DECIMALS), round(x2 - x1, _DECIMALS), round(y2 - y1, _DECIMALS))


def result_boxes(
    result: list[dict[str, Any]], *, from_name: str | None = None, size: tuple[int, int] | None = None
) -> tuple[list[Annotation], tuple[int, int] | None]:
    """The pixel boxes of one annotation ``result`` and the image size Label Studio saw.

    Takes ``rectanglelabels`` results of ``from_name`` (any control when ``None``). The size
    is the results' ``original_width`` x ``original_height`` (``None`` without boxes), or
    ``size`` for results that lack it (when the caller knows the image); results that disagree
    on it reject the annotation. Raises ``RowRejected`` (see ``box_of``).
    """
    items = [r for r in result if r.get("type") == RECTANGLE and (from_name is None or r.get("from_name") == from_name)]
    return _boxes(items, [r.get("value") or {} for r in items], size)


def _boxes(items: list[dict[str, Any]], values: list[dict[str, Any]], known: tuple[int, int] | None = None) -> tuple[list[Annotation], tuple[int, int] | None]:
    sizes = set()
    for item in items:
        if item.get("original_width") in (None, "") or item.get("original_height") in (None, ""):
            if known is not None:
                sizes.add(known)
                continue
            raise RowRejected(MISSING_FIELD, "a box lacks original_width/original_height, so its percentages cannot become pixels")
        try:
            sizes.add((int(item["original_width"]), int(item["original_height"])))
        except (TypeError, ValueError):
            raise RowRejected(INVALID_VALUE, f"original size {item['original_width']!r}x{item['original_height']!r} is not a number") from None
    if len(sizes) > 1:
        raise RowRejected(INVALID_VALUE, f"boxes of one annotation give different image sizes {sorted(sizes)}")
    size = next(iter(sizes), None)
    boxes = [box_of(value, size[0], size[1], index=index) for index, value in enumerate(values)] if size else []
    return boxes, size


def image_reference(url: str) -> str:
    """A task's image address as a reference for matching (``matching.py``).

    ``/data/upload/<project>/<8 hex>-<name>`` -> ``<name>`` (Label Studio's upload prefix
    stripped); ``/data/local-files/?d=<path>`` -> ``<path>``; ``s3://`` and other URLs keep
    their path (query strings dropped). Anything else is returned as given.
    """
    text = str(url).strip()
    parts = urlsplit(text)
    if parts.path.startswith("/data/local-files") and "d" in parse_qs(parts.query):
        return unquote(parse_qs(parts.query)["d"][0])
    if parts.path.startswith("/data/upload/") or "/data/upload/" in parts.path:
        return _UPLOAD_PREFIX.sub("", posixpath.basename(unquote(parts.path)), count=1)
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}{unquote(parts.path)}"
    return text


def _task_image(data: dict[str, Any]) -> tuple[str, str | None]:
    """``(reference, image sha256 or None)`` of a task's ``data``."""
    if data.get("source_ref"):
        return str(data["source_ref"]), (str(data["image_sha256"]) if data.get("image_sha256") else None)
    if isinstance(data.get("image"), str) and data["image"]:
        return image_reference(data["image"]), None
    images = [v for v in data.values() if isinstance(v, str) and (_IMAGE_NAME.search(urlsplit(v).path) or "/data/" in v)]
    if len(images) == 1:
        return image_reference(images[0]), None
    raise RowRejected(MISSING_FIELD, f"task data has no 'image' (keys: {sorted(data)[:8]})")


def _row(line: int, ref: str, sha: str | None, annotation: dict[str, Any], boxes: list[Annotation], size: tuple[int, int] | None,
         *, rejected: bool, job: str) -> LabelRow:
    updated = annotation.get("updated_at") or annotation.get("created_at")
    if not updated:
        raise RowRejected(MISSING_FIELD, "the annotation has neither updated_at nor created_at")
    return LabelRow(
        line=line,
        source_ref=ref,
        annotations=boxes,
        event_time=labelstudio_time(updated, field="updated_at"),
        labeling_job=job,
        status=REJECTED if rejected else APPROVED,
        width=size[0] if size else None,
        height=size[1] if size else None,
        image_sha256=sha,
    )


def is_labelstudio_export(document: Any) -> bool:
    """Whether a decoded JSON document is a Label Studio JSON or JSON-MIN export."""
    if not isinstance(document, list) or not document or not isinstance(document[0], dict):
        return False
    first = document[0]
    return ("annotations" in first and "data" in first) or ("annotation_id" in first and "id" in first)


def parse_labelstudio(data: bytes, name: str) -> ParsedFile:
    """A Label Studio JSON or JSON-MIN export: one row (or reject) per task, by the module's rules."""
    parsed = ParsedFile(LABELSTUDIO)
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        parsed.rejects.append(Reject(0, name, UNPARSEABLE, f"not JSON: {exc}"))
        return parsed
    if not is_labelstudio_export(document):
        parsed.rejects.append(Reject(0, name, UNPARSEABLE, "not a Label Studio export (a list of tasks with 'data' and 'annotations', or JSON-MIN)"))
        return parsed
    if "annotations" in document[0]:
        _parse_tasks(document, parsed, name)
    else:
        _parse_min(document, parsed, name)
    return parsed


def _parse_tasks(tasks: list[Any], parsed: ParsedFile, name: str) -> None:
    for line, task in enumerate(tasks, start=1):
        ref = ""
        try:
            if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
                raise RowRejected(UNPARSEABLE, "a task must be an object with 'data'")
            ref, sha = _task_image(task["data"])
            annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict)]
            annotation = latest_annotation(annotations)
            if annotation is None:
                if annotations:
                    raise RowRejected(SKIPPED, f"task {task.get('id')}: every annotation was cancelled (skipped)")
                raise RowRejected(UNANNOTATED, f"task {task.get('id')} has no annotation")
            result = [r for r in annotation.get("result") or [] if isinstance(r, dict)]
            boxes, size = result_boxes(result)
            project = annotation.get("project") or task.get("project")
            job = f"labelstudio/{project}" if project else f"labelstudio:{name}"
            parsed.rows.append(_row(line, ref, sha, annotation, boxes, size, rejected=is_rejected(result), job=job))
        except RowRejected as exc:
            parsed.rejects.append(Reject(line, ref, exc.reason, exc.detail))


def _min_results(item: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """The box values (with their original size) of one JSON-MIN object, and whether it says reject."""
    boxes, rejected = [], False
    for value in item.values():
        if value == REJECT_CHOICE or (isinstance(value, list) and REJECT_CHOICE in value):
            rejected = True
        if isinstance(value, list):
            boxes.extend(v for v in value if isinstance(v, dict) and RECTANGLE in v)
    return boxes, rejected


def _parse_min(items: list[Any], parsed: ParsedFile, name: str) -> None:
    """One row per task (the newest of its annotations; older ones are not rows), in file order."""
    by_task: dict[object, list[tuple[int, dict[str, Any]]]] = {}
    for line, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            parsed.rejects.append(Reject(line, "", UNPARSEABLE, "a JSON-MIN entry must be an object"))
            continue
        by_task.setdefault(item.get("id", f"line {line}"), []).append((line, item))
    for task_id, entries in by_task.items():
        line, item = entries[0]
        ref = ""
        try:
            ref, sha = _task_image(item)
            annotated = [entry for entry in entries if entry[1].get("annotation_id") is not None]
            if not annotated:
                raise RowRejected(UNANNOTATED, f"task {task_id} has no annotation")
            line, item = max(annotated, key=lambda entry: _order(entry[1]))
            boxes, rejected = _min_results(item)
            pixels, size = _boxes(boxes, boxes)
            parsed.rows.append(_row(line, ref, sha, item, pixels, size, rejected=rejected, job=f"labelstudio:{name}"))
        except RowRejected as exc:
            parsed.rejects.append(Reject(line, ref, exc.reason, exc.detail))
