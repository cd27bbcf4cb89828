"""Sanity rules for the boxes of one label, and the reasons a label row is rejected.

A row is all or nothing: when one of its boxes is unusable (no size, fully outside the
image, unknown class) the whole row is rejected, because keeping the other boxes would
teach the model that the dropped scratch is background. A box that is only partly outside
is clipped to the image and the row is kept, with a note saying which box was clipped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tagqa_assets.contracts.labels import Annotation
from tagqa_assets.settings import defect_classes

# Reject reasons (docs/labeling.md explains each). Counts per reason are shown in the UI.
UNPARSEABLE = "unparseable"
MISSING_FIELD = "missing_field"
INVALID_VALUE = "invalid_value"
UNKNOWN_CLASS = "unknown_class"
EMPTY_BOX = "empty_box"
BOX_OUTSIDE_IMAGE = "box_outside_image"
DUPLICATE_ROW = "duplicate_row"
CONFLICTING_ROW = "conflicting_row"
SIZE_MISMATCH = "size_mismatch"
# A task of a labeling tool that carries no label: never annotated (or the tool failed on
# it), or every annotation was skipped.
UNANNOTATED = "unannotated"
SKIPPED = "skipped"
# From matching (matching.py): no image yet (held and retried), or several.
IMAGE_NOT_FOUND = "image_not_found"
AMBIGUOUS_IMAGE = "ambiguous_image"
REJECT_REASONS = (
    UNPARSEABLE,
    MISSING_FIELD,
    INVALID_VALUE,
    UNKNOWN_CLASS,
    EMPTY_BOX,
    BOX_OUTSIDE_IMAGE,
    DUPLICATE_ROW,
    CONFLICTING_ROW,
    SIZE_MISMATCH,
    UNANNOTATED,
    SKIPPED,
    IMAGE_NOT_FOUND,
    AMBIGUOUS_IMAGE,
)


class RowRejected(ValueError):
    """A label row that cannot be imported: ``reason`` is one of ``REJECT_REASONS``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def check_boxes(
    boxes: Sequence[Annotation], width: int, height: int, *, class_names: tuple[str, ...] | None = None
) -> tuple[tuple[Annotation, ...], list[str]]:
    """Validate ``boxes`` of a ``width`` x ``height`` image against the taxonomy ``class_names``
    (default: ``TAGQA_DEFECT_CLASSES``).

    Returns the boxes to store (partly-outside ones clipped to the image) and one note per
    clipped box; raises ``RowRejected`` for the first unusable box. Guarantees every
    returned box has a known class, positive size and lies inside the image.
    """
    names = class_names or defect_classes()
    kept: list[Annotation] = []
    notes: list[str] = []
    for index, box in enumerate(boxes):
        values = (box.left, box.top, box.width, box.height)
        if not all(math.isfinite(v) for v in values):
            raise RowRejected(INVALID_VALUE, f"box {index} has a non-finite coordinate {values}")
        if not 0 <= box.class_id < len(names):
            raise RowRejected(UNKNOWN_CLASS, f"box {index} has class id {box.class_id}; known: {dict(enumerate(names))}")
        if box.width <= 0 or box.height <= 0:
            raise RowRejected(EMPTY_BOX, f"box {index} has width {box.width:g} and height {box.height:g}")
        x1, y1, x2, y2 = box.xyxy()
        if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
            raise RowRejected(BOX_OUTSIDE_IMAGE, f"box {index} ({x1:g},{y1:g})-({x2:g},{y2:g}) lies outside the {width}x{height} image")
        cx1, cy1, cx2, cy2 = max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2)
        if (cx1, cy1, cx2, cy2) != (x1, y1, x2, y2):
            notes.append(f"box {index} ({x1:g},{y1:g})-({x2:g},{y2:g}) clipped to ({cx1:g},{cy1:g})-({cx2:g},{cy2:g})")
            box = Annotation(box.class_id, cx1, cy1, cx2 - cx1, cy2 - cy1)
        kept.append(box)
    return tuple(kept), notes


def class_id_for(name_or_id: object, class_map: dict[str, str] | None = None, *, class_names: tuple[str, ...] | None = None) -> int:
    """Our class id for a foreign class: a name (``scratch``) or an id, optionally via a
    Ground Truth ``class-map`` (``{"0": "scratch"}``), in the taxonomy ``class_names``
    (default: ``TAGQA_DEFECT_CLASSES``). Raises ``RowRejected(UNKNOWN_CLASS)`` naming the
    class and the taxonomy."""
    names = class_names or defect_classes()
    if class_map:
        name = class_map.get(str(name_or_id))
        if name is None:
            raise RowRejected(UNKNOWN_CLASS, f"class id {name_or_id!r} is not in the class map {class_map}")
        name_or_id = name
    if isinstance(name_or_id, str) and not name_or_id.strip().lstrip("-").isdigit():
        if name_or_id.strip() not in names:
            raise RowRejected(UNKNOWN_CLASS, f"class {name_or_id!r} is not one of the taxonomy {list(names)} (TAGQA_DEFECT_CLASSES)")
        return names.index(name_or_id.strip())
    try:
        class_id = int(name_or_id)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise RowRejected(UNKNOWN_CLASS, f"class {name_or_id!r} is neither a class name nor an id") from None
    if not 0 <= class_id < len(names):
        raise RowRejected(UNKNOWN_CLASS, f"class id {class_id} is not one of {dict(enumerate(names))} (TAGQA_DEFECT_CLASSES)")
    return class_id
