"""Label Studio's labeling config and box format, converted to and from tagqa annotations.

Label Studio stores a rectangle as percentages of the image (``x, y, width, height`` in
0..100, top-left origin) plus ``rotation`` in degrees clockwise about the top-left corner,
and records the image's natural size as ``original_width/original_height``. tagqa keeps
pixels (``Annotation``). These functions are the one place that converts between them.
"""

from __future__ import annotations

import math
from typing import Any
from xml.sax.saxutils import quoteattr

from tagqa_assets.contracts.labels import CLASS_NAMES, Annotation

IMAGE_NAME = "image"  # the <Image> tag; tasks carry the image URL in data["image"]
BOXES_NAME = "label"  # the <RectangleLabels> control
VERDICT_NAME = "verdict"  # the <Choices> control an annotator ticks to reject an image
REJECT_CHOICE = "reject"
_DECIMALS = 3  # 1/1000 px: the precision the label store compares boxes at
_COLORS = ("#e5484d", "#3e63dd", "#30a46c", "#f76b15")


def labeling_config(class_names: tuple[str, ...] = CLASS_NAMES) -> str:
    """The project's labeling config: one rectangle label per class, plus a 'reject' choice."""
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(_COLORS[i % len(_COLORS)])}/>" for i, name in enumerate(class_names)
    )
    return f"""<View>
  <Header value="Draw a box around every scratch. No scratch: submit without a box."/>
  <Image name="{IMAGE_NAME}" value="${IMAGE_NAME}" zoom="true" zoomControl="true"/>
  <RectangleLabels name="{BOXES_NAME}" toName="{IMAGE_NAME}" strokeWidth="2">
{labels}
  </RectangleLabels>
  <Header value="Image unusable for training (blurred, cut off, not a tag)? Tick reject and submit." size="6"/>
  <Choices name="{VERDICT_NAME}" toName="{IMAGE_NAME}" choice="single" showInline="true">
    <Choice value="{REJECT_CHOICE}"/>
  </Choices>
</View>
"""


def check_project_config(parsed: dict[str, Any], *, project: str) -> None:
    """Raise ``ValueError`` naming ``project`` unless its parsed config has tagqa's box control and classes."""
    control = parsed.get(BOXES_NAME) or {}
    if control.get("type") != "RectangleLabels" or IMAGE_NAME not in (control.get("to_name") or []):
        raise ValueError(
            f"Label Studio project {project} has no <RectangleLabels name={BOXES_NAME!r} toName={IMAGE_NAME!r}>; "
            "it was not created by tagqa: choose another project_title"
        )
    missing = [name for name in CLASS_NAMES if name not in (control.get("labels") or [])]
    if missing:
        raise ValueError(f"Label Studio project {project}: label config lacks classes {missing}")


def to_prediction_result(annotation: Annotation, width: int, height: int) -> dict[str, Any]:
    """One pixel box as a Label Studio ``rectanglelabels`` result (percentages of ``width`` x ``height``)."""
    if not 0 <= annotation.class_id < len(CLASS_NAMES):
        raise ValueError(f"class id {annotation.class_id} is not one of {list(range(len(CLASS_NAMES)))}")
    return {
        "from_name": BOXES_NAME,
        "to_name": IMAGE_NAME,
        "type": "rectanglelabels",
        "original_width": width,
        "original_height": height,
        "image_rotation": 0,
        "value": {
            "x": annotation.left / width * 100.0,
            "y": annotation.top / height * 100.0,
            "width": annotation.width / width * 100.0,
            "height": annotation.height / height * 100.0,
            "rotation": 0,
            "rectanglelabels": [CLASS_NAMES[annotation.class_id]],
        },
    }


def to_annotations(result: list[dict[str, Any]], width: int, height: int, *, where: str) -> tuple[Annotation, ...]:
    """The pixel boxes in one Label Studio annotation ``result`` for an image of ``width`` x ``height``.

    Rotated rectangles become their axis-aligned bounding box; every box is clipped to the
    image and rounded to 1/1000 px. Raises ``ValueError`` naming ``where`` for an unknown
    class or an ``original_width/height`` that contradicts the image's size.
    """
    boxes = []
    for item in result:
        if item.get("type") != "rectanglelabels" or item.get("from_name") != BOXES_NAME:
            continue
        original = (item.get("original_width"), item.get("original_height"))
        if original[0] is not None and (int(original[0]), int(original[1])) != (width, height):
            raise ValueError(f"{where}: Label Studio saw the image as {original[0]}x{original[1]}, the store has {width}x{height}")
        value = item["value"]
        names = value.get("rectanglelabels") or []
        if len(names) != 1 or names[0] not in CLASS_NAMES:
            raise ValueError(f"{where}: box labelled {names!r}, expected one of {list(CLASS_NAMES)}")
        x1, y1, x2, y2 = rotated_box_bounds(
            value["x"] / 100.0 * width,
            value["y"] / 100.0 * height,
            value["width"] / 100.0 * width,
            value["height"] / 100.0 * height,
            float(value.get("rotation") or 0.0),
        )
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        boxes.append(
            Annotation(
                class_id=CLASS_NAMES.index(names[0]),
                left=round(x1, _DECIMALS),
                top=round(y1, _DECIMALS),
                width=round(x2 - x1, _DECIMALS),
                height=round(y2 - y1, _DECIMALS),
            )
        )
    return tuple(boxes)


def is_rejected(result: list[dict[str, Any]]) -> bool:
    """Whether the annotator ticked the 'reject' choice in this annotation."""
    return any(
        item.get("type") == "choices" and item.get("from_name") == VERDICT_NAME and REJECT_CHOICE in (item.get("value", {}).get("choices") or [])
        for item in result
    )


def rotated_box_bounds(left: float, top: float, width: float, height: float, rotation_deg: float) -> tuple[float, float, float, float]:
    """``(x1, y1, x2, y2)`` enclosing a ``width`` x ``height`` box turned clockwise (y down) about its top-left corner."""
    if rotation_deg % 360 == 0:
        return (left, top, left + width, top + height)
    angle = math.radians(rotation_deg)
    cos, sin = math.cos(angle), math.sin(angle)
    corners = [(left + dx * cos - dy * sin, top + dx * sin + dy * cos) for dx, dy in ((0, 0), (width, 0), (width, height), (0, height))]
    xs, ys = [c[0] for c in corners], [c[1] for c in corners]
    return (min(xs), min(ys), max(xs), max(ys))
