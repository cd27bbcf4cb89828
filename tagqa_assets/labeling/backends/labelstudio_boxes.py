"""Label Studio's labeling config and box format, converted to and from tagqa annotations.

Label Studio stores a rectangle as percentages of the image (``x, y, width, height`` in
0..100, top-left origin) plus ``rotation`` in degrees clockwise about the top-left corner,
and records the image's natural size as ``original_width/original_height``. tagqa keeps
pixels (``Annotation``). Reading results is the shared parser's job
(``imports/format_labelstudio.py``, also used for export files); this module writes
configs and predictions and checks the live project's boxes against the store.
"""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import quoteattr

from tagqa_assets.contracts.labels import Annotation
from tagqa_assets.labeling.imports.box_checks import RowRejected
from tagqa_assets.labeling.imports.format_labelstudio import REJECT_CHOICE, result_boxes
from tagqa_assets.settings import defect_classes

IMAGE_NAME = "image"  # the <Image> tag; tasks carry the image URL in data["image"]
BOXES_NAME = "label"  # the <RectangleLabels> control
VERDICT_NAME = "verdict"  # the <Choices> control an annotator ticks to reject an image
_DECIMALS = 3  # 1/1000 px: the precision the label store compares boxes at
_COLORS = ("#e5484d", "#3e63dd", "#30a46c", "#f76b15")


def labeling_config(class_names: tuple[str, ...] | None = None) -> str:
    """The project's labeling config: one rectangle label per class of the taxonomy (default
    ``TAGQA_DEFECT_CLASSES``), plus a 'reject' choice."""
    class_names = class_names or defect_classes()
    labels = "\n".join(
        f"    <Label value={quoteattr(name)} background={quoteattr(_COLORS[i % len(_COLORS)])}/>" for i, name in enumerate(class_names)
    )
    return f"""<View>
  <Header value="Draw a box around every defect ({', '.join(class_names)}). No defect: submit without a box."/>
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


def box_control(parsed: dict[str, Any], *, project: str) -> tuple[str, str]:
    """``(from_name, to_name)`` of the project's ``<RectangleLabels>`` control, whatever it is called.

    Raises ``ValueError`` naming ``project`` when the parsed config has no such control on an
    image, or when its labels lack a class of the taxonomy.
    """
    controls = sorted((name, c) for name, c in parsed.items() if isinstance(c, dict) and c.get("type") == "RectangleLabels" and c.get("to_name"))
    if not controls:
        raise ValueError(f"Label Studio project {project} has no <RectangleLabels> control on an image; choose another project_title")
    name, control = next(((n, c) for n, c in controls if n == BOXES_NAME), controls[0])
    missing = [cls for cls in defect_classes() if cls not in (control.get("labels") or [])]
    if missing:
        raise ValueError(f"Label Studio project {project}: <RectangleLabels name={name!r}> lacks classes {missing}")
    return name, str(control["to_name"][0])


def to_prediction_result(annotation: Annotation, width: int, height: int, *, from_name: str = BOXES_NAME, to_name: str = IMAGE_NAME) -> dict[str, Any]:
    """One pixel box as a Label Studio ``rectanglelabels`` result (percentages of ``width`` x ``height``)."""
    class_names = defect_classes()
    if not 0 <= annotation.class_id < len(class_names):
        raise ValueError(f"class id {annotation.class_id} is not one of {list(range(len(class_names)))}")
    return {
        "from_name": from_name,
        "to_name": to_name,
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
            "rectanglelabels": [class_names[annotation.class_id]],
        },
    }


def to_annotations(result: list[dict[str, Any]], width: int, height: int, *, where: str, from_name: str = BOXES_NAME) -> tuple[Annotation, ...]:
    """The pixel boxes in one Label Studio annotation ``result`` for an image of ``width`` x ``height``.

    Read by the shared parser (``imports/format_labelstudio.result_boxes``): rotated
    rectangles become their axis-aligned bounding box, rounded to 1/1000 px; here every box is
    also clipped to the image. Raises ``ValueError`` naming ``where`` for an unknown class or
    an ``original_width/height`` that contradicts the image's (display) size.
    """
    try:
        boxes, size = result_boxes(result, from_name=from_name, size=(width, height))
    except RowRejected as exc:
        raise ValueError(f"{where}: {exc.reason}: {exc.detail}") from None
    if size is not None and size != (width, height):
        raise ValueError(f"{where}: Label Studio saw the image as {size[0]}x{size[1]}, the store has {width}x{height}")
    clipped = []
    for box in boxes:
        x1, y1, x2, y2 = box.xyxy()
        x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
        y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
        clipped.append(Annotation(box.class_id, round(x1, _DECIMALS), round(y1, _DECIMALS), round(x2 - x1, _DECIMALS), round(y2 - y1, _DECIMALS)))
    return tuple(clipped)
