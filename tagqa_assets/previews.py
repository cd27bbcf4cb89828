"""Pictures for the Dagster UI: thumbnail grids (optionally with boxes) and charts as markdown.

Dagster renders markdown metadata, including ``data:`` image URIs, so a grid or a plot
travels inside the materialization event itself and stays visible for that exact run.
Images are downscaled and JPEG/PNG-compressed to keep an event well under ~200 KB.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from dataclasses import dataclass, field

from PIL import Image, ImageDraw

import dagster as dg


@dataclass(frozen=True)
class Tile:
    """One image of a grid: encoded bytes, a caption, and boxes ``(x1, y1, x2, y2)`` in its pixels."""

    data: bytes
    caption: str = ""
    boxes: Sequence[tuple[float, float, float, float]] = field(default_factory=tuple)
    # Second set of boxes drawn in another colour (e.g. predictions next to ground truth).
    other_boxes: Sequence[tuple[float, float, float, float]] = field(default_factory=tuple)


def image_markdown(data: bytes, alt: str, mime: str = "image/png") -> dg.MetadataValue:
    """Markdown metadata showing one encoded image inline."""
    encoded = base64.b64encode(data).decode()
    return dg.MetadataValue.md(f"![{alt}](data:{mime};base64,{encoded})")


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


def markdown_table(rows: Sequence[dict[str, object]], columns: Sequence[str] | None = None) -> dg.MetadataValue:
    """Rows as a markdown table (``_none_`` when empty)."""
    if not rows:
        return dg.MetadataValue.md("_none_")
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(str(row.get(column, "")).replace("|", "\\|") for column in columns) + " |")
    return dg.MetadataValue.md("\n".join(lines))
