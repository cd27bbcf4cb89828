"""COCO detection JSON files into label rows (see ``rows.py``).

One row per entry of ``images`` (an image without annotations is a label saying "no
defect"); boxes are ``bbox = [x, y, w, h]`` pixels; categories map by name. The image
file itself is found under ``--images-root`` when given, so it can be matched by content
hash; else it is matched by name. ``info.date_created`` is the event time of every row.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path

from tagqa_assets.contracts.labels import Annotation
from tagqa_assets.labeling.imports.box_checks import INVALID_VALUE, MISSING_FIELD, UNPARSEABLE, RowRejected, class_id_for
from tagqa_assets.labeling.imports.rows import COCO, LabelRow, ParsedFile, Reject


def coco_time(value: object) -> float:
    """Unix seconds of a COCO ``info.date_created``, read as ISO 8601.

    Accepts every form ``datetime.fromisoformat`` reads (date only, ``T`` or space
    separator, fractional seconds, ``Z`` or an offset) and COCO's own ``YYYY/MM/DD``.
    A value without a time zone is UTC, never the importing machine's local time.
    Raises ``RowRejected(INVALID_VALUE)`` naming the value when it is none of these.
    """
    text = str(value).strip()
    try:
        when = datetime.fromisoformat(text.replace("/", "-") if len(text) == 10 else text)
    except ValueError:
        raise RowRejected(INVALID_VALUE, f"info.date_created {value!r} is not an ISO 8601 date or time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def parse_coco(data: bytes, name: str, *, event_time: float, images_root: Path | None = None) -> ParsedFile:
    """A COCO detection file; ``event_time`` is used when ``info.date_created`` is absent."""
    parsed = ParsedFile(COCO)
    try:
        document = json.loads(data)
        images, annotations = document["images"], document.get("annotations", [])
        categories = {c["id"]: c["name"] for c in document.get("categories", [])}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        parsed.rejects.append(Reject(0, name, UNPARSEABLE, f"not a COCO detection file: {exc!r}"))
        return parsed
    info = document.get("info")
    date_created = info.get("date_created") if isinstance(info, dict) else None
    when: float | RowRejected
    try:
        when = coco_time(date_created) if date_created not in (None, "") else event_time
    except RowRejected as exc:
        when = exc  # every image row is rejected with this reason
    boxes_by_image: dict[object, list[dict]] = defaultdict(list)
    known_ids = {image.get("id") for image in images if isinstance(image, dict)}
    for index, annotation in enumerate(annotations, start=1):
        image_id = annotation.get("image_id") if isinstance(annotation, dict) else None
        if image_id not in known_ids:
            parsed.rejects.append(Reject(index, f"annotation {annotation.get('id', index) if isinstance(annotation, dict) else index}", INVALID_VALUE, f"refers to image id {image_id!r}, which is not in 'images'"))
            continue
        boxes_by_image[image_id].append(annotation)
    for line, image in enumerate(images, start=1):
        ref = str(image.get("file_name") or "") if isinstance(image, dict) else ""
        try:
            if not ref:
                raise RowRejected(MISSING_FIELD, "image entry lacks file_name")
            if isinstance(when, RowRejected):
                raise when
            boxes = []
            for annotation in boxes_by_image.get(image.get("id"), []):
                bbox = annotation.get("bbox")
                if not isinstance(bbox, list) or len(bbox) != 4:
                    raise RowRejected(INVALID_VALUE, f"annotation {annotation.get('id')} has bbox {bbox!r}, expected [x, y, w, h]")
                category = categories.get(annotation.get("category_id"), annotation.get("category_id"))
                boxes.append(Annotation(class_id_for(category), *(float(v) for v in bbox)))
            local = images_root / ref if images_root is not None and (images_root / ref).is_file() else None
            parsed.rows.append(
                LabelRow(
                    line=line,
                    source_ref=ref,
                    annotations=boxes,
                    event_time=float(when),
                    labeling_job=f"coco:{name}",
                    width=int(image["width"]) if image.get("width") else None,
                    height=int(image["height"]) if image.get("height") else None,
                    local_image=str(local) if local else None,
                )
            )
        except (RowRejected, TypeError, ValueError) as exc:
            reason, detail = (exc.reason, exc.detail) if isinstance(exc, RowRejected) else (INVALID_VALUE, str(exc))
            parsed.rejects.append(Reject(line, ref, reason, detail))
    return parsed
