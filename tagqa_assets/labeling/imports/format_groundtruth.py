"""SageMaker Ground Truth output manifests (bounding-box and verification jobs): the one parser.

Both the file importer (``tagqa labels import out.manifest``) and the ``groundtruth``
labeling backend (``backends/groundtruth.py``) read manifests here.

One JSON line per image: ``source-ref``, the label attribute (``<attr>`` with
``image_size`` and ``annotations`` of ``{class_id, left, top, width, height}``) and its
``<attr>-metadata`` (``job-name``, ``creation-date`` as ``%Y-%m-%dT%H:%M:%S.%f`` UTC,
``class-map``, or ``failure-reason``). A verification job adds an attribute (``verified``,
or any attribute whose metadata type is ``groundtruth/label-verification``) whose value is
a class of the verification job; the verdict is read by ``verdict_status``.

A line whose labeling or verification failed (``failure-reason``) is rejected as
``unannotated``: it carries no label. Every other problem is a reject with its reason.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from tagqa_assets.contracts.labels import APPROVED, REJECTED
from tagqa_assets.labeling.imports.box_checks import INVALID_VALUE, MISSING_FIELD, UNANNOTATED, RowRejected
from tagqa_assets.labeling.imports.rows import GROUNDTRUTH, LabelRow, ParsedFile, Reject, annotations_of, json_lines, positive_int, require

PRELABEL_ATTRIBUTE = "prelabel"  # model suggestions tagqa puts into a job's input manifest
VERIFICATION_TYPE = "groundtruth/label-verification"
# The verification job tagqa creates: class 0 approves, every other class rejects.
VERDICTS = (
    "The boxes are right: every scratch has one tight box",
    "A box is wrong or a scratch has no box",
    "The image is unusable (blurred, cut off, not a tag)",
)
APPROVE_NAMES = frozenset({VERDICTS[0].lower(), "approve", "approved", "accept", "accepted", "correct", "yes"})
REJECT_NAMES = frozenset({*(v.lower() for v in VERDICTS[1:]), "reject", "rejected", "incorrect", "wrong", "no"})
APPROVED_CLASS = 0  # the reference pipeline's rule when a verdict has no class name


def groundtruth_time(text: object) -> float:
    """Unix seconds of a Ground Truth ``creation-date`` (ISO 8601, naive = UTC). Raises ``RowRejected``."""
    try:
        when = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise RowRejected(INVALID_VALUE, f"creation-date {text!r} is not %Y-%m-%dT%H:%M:%S.%f") from None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def verdict_status(value: Any, meta: dict[str, Any]) -> str:
    """``APPROVED`` or ``REJECTED`` for a verification verdict ``value`` and its ``-metadata``.

    The verdict's name is ``meta['class-name']``, else ``meta['class-map'][value]``. A name
    approves when it is tagqa's first verdict or one of ``APPROVE_NAMES``, rejects when it is
    another tagqa verdict or one of ``REJECT_NAMES`` (case-insensitive). Without a name the
    reference pipeline's rule holds: class ``0`` approves, any other integer class rejects.
    Anything else raises ``RowRejected(INVALID_VALUE)`` naming what could not be read.
    """
    name = meta.get("class-name")
    class_map = meta.get("class-map") or {}
    if name is None and isinstance(class_map, dict) and class_map:
        name = class_map.get(str(value))
        if name is None:
            raise RowRejected(INVALID_VALUE, f"verdict {value!r} is not in the verification class-map {class_map}")
    if name is not None:
        lowered = str(name).strip().lower()
        if lowered in APPROVE_NAMES:
            return APPROVED
        if lowered in REJECT_NAMES:
            return REJECTED
        raise RowRejected(INVALID_VALUE, f"verdict class-name {name!r} is neither an approve name {sorted(APPROVE_NAMES)} nor a reject name")
    try:
        class_id = int(str(value).strip())
    except ValueError:
        raise RowRejected(INVALID_VALUE, f"verdict {value!r} is not a class id and has no class-name") from None
    return APPROVED if class_id == APPROVED_CLASS else REJECTED


def _attributes(item: dict[str, Any]) -> tuple[str, str | None]:
    """``(label attribute, verification attribute or None)`` of one manifest line."""
    candidates = [k for k, v in item.items() if isinstance(v, dict) and "annotations" in v]
    # An adjustment job's output also carries its input's model suggestions (``prelabel``):
    # the people's boxes are the attribute Ground Truth marks human-annotated.
    human = [k for k in candidates if (item.get(f"{k}-metadata") or {}).get("human-annotated") == "yes"]
    label = next(iter(human or [k for k in candidates if k != PRELABEL_ATTRIBUTE] or candidates), None)
    failed = next((v.get("failure-reason") for k, v in item.items() if k.endswith("-metadata") and isinstance(v, dict) and v.get("failure-reason")), None)
    if failed:
        raise RowRejected(UNANNOTATED, f"Ground Truth failed on this image: {failed}")
    if label is None:
        raise RowRejected(MISSING_FIELD, "no bounding-box attribute (an object with 'annotations')")
    verification = None
    for key in item:
        meta = item.get(f"{key}-metadata")
        if key != label and not key.endswith("-metadata") and (key == "verified" or (isinstance(meta, dict) and meta.get("type") == VERIFICATION_TYPE)):
            verification = key
    return label, verification


def parse_groundtruth(data: bytes, name: str, *, require_verdict: bool = False) -> ParsedFile:
    """Rows of a Ground Truth output manifest (a bounding-box job's, or its verification job's).

    Without a verification attribute the labels count as approved, unless
    ``require_verdict`` (a verification job's output, where a line without a verdict was not
    verified: ``unannotated``). The event time is the later of the labeling and
    verification ``creation-date``s (the time of the decision).
    """
    parsed = ParsedFile(GROUNDTRUTH)
    for line, item in json_lines(data, parsed, name):
        ref = str(item.get("source-ref") or "")
        try:
            require(item, ("source-ref",))
            label, verification = _attributes(item)
            value, meta = item[label], item.get(f"{label}-metadata") or {}
            require(meta, ("creation-date", "job-name"))
            sizes = value.get("image_size") or []
            if not sizes or not isinstance(sizes[0], dict):
                raise RowRejected(MISSING_FIELD, f"{label}.image_size is missing")
            class_map = {str(k): str(v) for k, v in (meta.get("class-map") or {}).items()} or None
            event_time = groundtruth_time(meta["creation-date"])
            status = APPROVED
            if verification is None and require_verdict:
                raise RowRejected(UNANNOTATED, "the verification job gave no verdict for this image")
            if verification is not None:
                verified_meta = item.get(f"{verification}-metadata") or {}
                status = verdict_status(item[verification], verified_meta)
                if verified_meta.get("creation-date"):
                    event_time = max(event_time, groundtruth_time(verified_meta["creation-date"]))
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
