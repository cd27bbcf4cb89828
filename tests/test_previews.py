"""UI metadata stays typed and small: tables with a schema, inline images capped in size."""

from __future__ import annotations

import base64
import io

import dagster as dg
import numpy as np
from PIL import Image

from tagqa_assets.previews import MAX_INLINE_BYTES, image_markdown, metadata_table


def _noise_png(size: int) -> bytes:
    # Random pixels do not compress: a PNG far above the inline limit.
    pixels = np.random.default_rng(0).integers(0, 256, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_large_image_is_shrunk_below_the_inline_limit():
    data = _noise_png(600)
    assert len(data) > 10 * MAX_INLINE_BYTES
    text = image_markdown(data, "noise").value
    encoded = text.split("base64,", 1)[1].rstrip(")")
    assert text.startswith("![noise](data:image/jpeg;base64,")
    assert len(base64.b64decode(encoded)) <= MAX_INLINE_BYTES


def test_a_small_image_is_kept_as_it_is():
    data = _noise_png(40)
    assert len(data) <= MAX_INLINE_BYTES
    assert image_markdown(data, "small").value == f"![small](data:image/png;base64,{base64.b64encode(data).decode()})"


def test_tables_carry_a_schema_with_types_per_column():
    # A key only a later row has (an optional field of a reject) still gets its column.
    table = metadata_table([{"split": "test", "images": 3, "map50": 0.5, "ok": True},
                            {"split": "val", "images": 2, "map50": 1, "ok": False, "extra": "kept"}])
    assert isinstance(table, dg.TableMetadataValue)
    assert [(c.name, c.type) for c in table.schema.columns] == [("split", "string"), ("images", "int"), ("map50", "float"),
                                                                ("ok", "bool"), ("extra", "string")]
    assert [r.data for r in table.records] == [{"split": "test", "images": 3, "map50": 0.5, "ok": True, "extra": ""},
                                               {"split": "val", "images": 2, "map50": 1, "ok": False, "extra": "kept"}]


def test_missing_values_and_mixed_columns():
    # Every record has every column (Dagster requires it); a column of numbers and text is text.
    table = metadata_table([{"version": 1, "note": None}, {"version": "-", "note": "x"}, {"version": 3}], ["version", "note"])
    assert [(c.name, c.type) for c in table.schema.columns] == [("version", "string"), ("note", "string")]
    assert [r.data for r in table.records] == [{"version": "1", "note": ""}, {"version": "-", "note": "x"}, {"version": "3", "note": ""}]
    assert metadata_table([], ["a"]).records == []
