"""Parsing SageMaker Ground Truth output manifests (bounding-box and verification jobs).

One JSON line per image: ``source-ref``, the label attribute (``<attr>`` with
``image_size`` and ``annotations`` of ``{class_id, left, top, width, height}``) and its
``<attr>-metadata`` (``job-name``, ``creation-date`` as ``%Y-%m-%dT%H:%M:%S.%f``,
``class-map``). A verification job adds an attribute whose value is a class: ``0``
approves, anything else rejects, as in the reference pipeline.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tagqa_assets.contracts.labels import APPROVED, REJECTED
from tagqa_assets.labeling.box_checks import INVALID_VALUE, MISSING_FIELD, RowRejected
from tagqa_assets.labeling.backends.groundtruth_manifests import PRELABEL_ATTRIBUTE
from tagqa_assets.labeling.importers import GROUNDTRUTH, LabelRow, ParsedFile, Reject, annotations_of, json_lines, positive_int, require

VERIFICATION_APPROVED_CLASS = 0  # the reference pipeline's verification job: class 0 = approve


def groundtruth_time(text: str) -> float:
    """Unix seconds of a Ground Truth ``creation-date`` (``%Y-%m-%dT%H:%M:%S.%f``, UTC)."""
    for pattern in ("%Y-%m-%dT%H:%M:%S.%f", "%Y-%m-%dT%H:%M:%S"):
        try:
            return datetime.strptime(text.rstrip("Z"), pattern).replace(tzinfo=timezone.utc).timestamp()
        except ValueError:
            continue
    raise RowRejected(INVALID_VALUE, f"creation-date {text!r} is not %Y-%m-%dT%H:%M:%S.%f")


def _groundtruth_attributes(item: dict[str, Any]) -> tuple[str, str | None]:
    candidates = [k for k, v in item.items() if isinstance(v, dict) and "annotations" in v]
    # An adjustment job's output also carries its input's model suggestions (``prelabel``):
    # the people's boxes are the attribute Ground Truth marks human-annotated.
    human = [k for k in candidates if (item.get(f"{k}-metadata") or {}).get("human-annotated") == "yes"]
    label = next(iter(human or [k for k in candidates if k != PRELABEL_ATTRIBUTE] or candidates), None)
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
    for line, item in json_lines(data, parsed, name):
        ref = str(item.get("source-ref") or "")
        try:
            require(item, ("source-ref",))
            label, verification = _groundtruth_attributes(item)
            value, meta = item[label], item.get(f"{label}-metadata") or {}
            require(meta, ("creation-date", "job-name"))
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
                    annotations=annotations_of(value.get("annotations"), class_map),
                    event_time=event_time,
                    labeling_job=str(meta["job-name"]),
                    status=status,
                    width=positive_int(sizes[0].get("width"), "image_size.width"),
                    height=positive_int(sizes[0].get("height"), "image_size.height"),
                    depth=positive_int(sizes[0].get("depth") or 3, "image_size.depth"),
                )
            )
        except RowRejected as exc:
            parsed.rejects.append(Reject(line, ref, exc.reason, exc.detail))
    return parsed
