"""The append-only Parquet-parts writer shared by the raw catalog and the label store: reads, compaction."""

from __future__ import annotations

import pandas as pd

from tagqa_assets.contracts.labels import Annotation, LabelRecord
from tagqa_assets.ingestion.catalog import RawImage, RawImageCatalog
from tagqa_assets.labeling.label_store import LocalLabelStore
from tagqa_assets.parquet_parts import ParquetParts


def _frame(start: int, count: int) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"k{i:05d}" for i in range(start, start + count)], "value": list(range(start, start + count))})


def test_compaction_keeps_first_row_per_key_in_part_order_and_deletes_covered_parts(local_store):
    parts = ParquetParts(local_store, "t/", columns=("id", "value"), unique_by="id", compact_at=None)
    for start in range(0, 50, 5):
        parts.write(_frame(start, 5))
    later = pd.DataFrame({"id": ["k00003"], "value": [999]})  # a repeated key: the first row must win
    parts.write(later)
    before = parts.read()
    assert len(parts.part_keys()) == 11 and len(before) == 51

    done = parts.compact()

    assert done is not None and done.parts_covered == 11 and done.rows == 50
    assert parts.part_keys() == [done.part]
    after = parts.read()
    assert after["id"].tolist() == [f"k{i:05d}" for i in range(50)]
    assert after.loc[after["id"] == "k00003", "value"].tolist() == [3]
    assert parts.compact() is None  # one part: nothing to do


def test_writer_compacts_by_itself_and_parts_written_later_stay(local_store):
    parts = ParquetParts(local_store, "t/", columns=("id", "value"), unique_by="id", compact_at=8)
    for start in range(8):
        parts.write(_frame(start * 2, 2))
    assert len(parts.part_keys()) == 1  # the 8th write compacted all 8 parts
    parts.write(_frame(100, 2))
    keys = parts.part_keys()
    assert len(keys) == 2 and keys[0] < keys[1]
    assert parts.read()["id"].tolist() == [f"k{i:05d}" for i in range(16)] + ["k00100", "k00101"]


def test_compaction_covers_only_the_parts_it_listed(local_store):
    parts = ParquetParts(local_store, "t/", columns=("id", "value"), unique_by="id", compact_at=None)
    for start in range(3):
        parts.write(_frame(start, 1))
    listed = parts.part_keys()
    newcomer = parts.write(_frame(10, 1))  # written while a compaction was reading
    done = parts.compact(listed)
    assert done is not None and set(parts.part_keys()) == {done.part, newcomer}
    assert sorted(parts.read()["id"]) == ["k00000", "k00001", "k00002", "k00010"]


def test_an_interrupted_compaction_leaves_rows_readers_still_count_once(local_store):
    """A compaction that wrote its part but died before deleting the covered parts."""
    parts = ParquetParts(local_store, "labels/records/", columns=(), unique_by="record_id", compact_at=None)
    store = LocalLabelStore(local_store)
    for n in range(4):
        store.append([LabelRecord(f"raw/x{n}.jpg", 450, 300, (Annotation(0, 1, 2, 3, 4),), float(n), "job", image_sha256=f"{n:064x}")])
    keys = parts.part_keys()
    table = parts.read_table(keys=keys)
    parts._put(table, stamp="19700101T000000000000Z", tag="0compactcrash")  # the part a crashed compaction left
    assert len(store.records()) == 4 and store.append([]).appended == 0
    parts.compact()
    assert len(parts.part_keys()) == 1 and len(store.records()) == 4


def test_catalog_and_label_store_read_the_same_after_compaction(local_store):
    catalog = RawImageCatalog(local_store)
    for n in range(6):
        catalog.append([RawImage(f"raw/2024/a{n}.jpg", f"{n:064x}", 10, 450, 300, "JPEG", 3, "test", "2024-01-01T00:00:00", None, "r")])
    catalog.append([RawImage("raw/2024/dup.jpg", f"{0:064x}", 10, 450, 300, "JPEG", 3, "test", "2024-01-01T00:00:00", "raw/2024/a0.jpg", "r")])
    before = catalog.load()
    catalog.parts.compact()
    pd.testing.assert_frame_equal(catalog.load(), before)
    assert catalog.images()["key"].tolist() == [f"raw/2024/a{n}.jpg" for n in range(6)]
