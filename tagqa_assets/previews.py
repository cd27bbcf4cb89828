"""Pictures and tables for the Dagster UI: thumbnail grids (optionally with boxes), charts, typed tables.

Dagster renders markdown metadata, including ``data:`` image URIs, so a grid or a plot
travels inside the materialization event itself and stays visible for that exact run.
Images are downscaled and JPEG/PNG-compressed, and each inline image is capped at
``MAX_INLINE_BYTES`` (re-encoded smaller when over), so events stay small in the event log.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

import dagster as dg

MAX_INLINE_BYTES = 48_000


@dataclass(frozen=True)
class Tile:
    """One image of a grid: encoded bytes, a caption, and boxes ``(x1, y1, x2, y2)`` in its pixels."""

    data: bytes
    caption: str = ""
    boxes: Sequence[tuple[float, float, float, float]] = field(default_factory=tuple)
    # Second set of boxes drawn in another colour (e.g. predictions next to ground truth).
    other_boxes: Sequence[tuple[float, float, float, float]] = field(default_factory=tuple)


def image_markdown(data: bytes, alt: str, mime: str = "image/png") -> dg.MetadataValue:
    """Markdown metadata showing one encoded image inline, at most ``MAX_INLINE_BYTES`` of image.

    A larger image is re-encoded as a JPEG at half the size until it fits, so one event never
    carries more than ~``MAX_INLINE_BYTES`` * 4/3 of base64 (the full-size file stays in the store).
    """
    data, mime = shrink_image(data, mime)
    encoded = base64.b64encode(data).decode()
    return dg.MetadataValue.md(f"![{alt}](data:{mime};base64,{encoded})")


def shrink_image(data: bytes, mime: str, limit: int = 0) -> tuple[bytes, str]:
    """``(data, mime)`` unchanged when within ``limit`` (default ``MAX_INLINE_BYTES``), else a smaller JPEG."""
    limit = limit or MAX_INLINE_BYTES
    if len(data) <= limit:
        return data, mime
    with Image.open(io.BytesIO(data)) as source:
        image = source.convert("RGB")
    while True:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=75)
        if buffer.tell() <= limit or min(image.size) <= 32:
            return buffer.getvalue(), "image/jpeg"
        image = image.resize((max(1, image.width // 2), max(1, image.height // 2)))


def grid_jpeg(tiles: Sequence[Tile], *, tile_size: int = 128, columns: int = 6) -> bytes:
    """Compose tiles into one JPEG: ground-truth boxes in green, ``other_boxes`` in red."""
    rows = max(1, (len(tiles) + columns - 1) // columns)
    canvas = Image.new("RGB", (columns * tile_size, rows * tile_size), (32, 32, 32))
    for index, tile in enumerate(tiles):
        with Image.open(io.BytesIO(tile.data)) as source:
            image = source.convert("RGB")
        scale = tile_size / max(image.size)
        thumb = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        draw = ImageDraw.Draw(thumb)
        for colour, boxes in (((40, 220, 80), tile.boxes), ((240, 60, 60), tile.other_boxes)):
            for x1, y1, x2, y2 in boxes:
                draw.rectangle([x1 * scale, y1 * scale, x2 * scale, y2 * scale], outline=colour, width=2)
        if tile.caption:
            draw.text((3, 2), tile.caption[:22], fill=(255, 255, 0))
        canvas.paste(thumb, ((index % columns) * tile_size, (index // columns) * tile_size))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def grid_markdown(tiles: Sequence[Tile], alt: str, *, tile_size: int = 128, columns: int = 6) -> dg.MetadataValue:
    """A thumbnail grid as markdown metadata (empty note when there are no tiles)."""
    if not tiles:
        return dg.MetadataValue.md(f"_{alt}: nothing to show_")
    return image_markdown(grid_jpeg(tiles, tile_size=tile_size, columns=columns), alt, mime="image/jpeg")


def _column_type(values: Sequence[object]) -> str:
    present = [v for v in values if v is not None and v != ""]
    if present and all(isinstance(v, bool) for v in present):
        return "bool"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "int"
    if present and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        return "float"
    return "string"


def metadata_table(rows: Sequence[dict[str, object]], columns: Sequence[str] | None = None) -> dg.MetadataValue:
    """Rows as ``dg.MetadataValue.table`` with a ``TableSchema`` (types inferred per column: int, float, bool, string).

    Columns default to every key of the rows, in the order they first appear; an empty table
    keeps the given columns. Values that are not numbers or booleans are shown as text; a
    missing value stays empty (every record carries every column, as Dagster requires).
    """
    names = list(columns or dict.fromkeys(key for row in rows for key in row))
    types = {name: _column_type([row.get(name) for row in rows]) for name in names}
    records = []
    for row in rows:
        values: dict[str, object] = {}
        for name in names:
            value = row.get(name)
            if types[name] == "string":
                values[name] = "" if value is None else str(value)
            else:
                values[name] = None if value is None or value == "" else value
        records.append(dg.TableRecord(values))
    schema = dg.TableSchema(columns=[dg.TableColumn(name, types[name]) for name in names])
    return dg.MetadataValue.table(records, schema=schema)
