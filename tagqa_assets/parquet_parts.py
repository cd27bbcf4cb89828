"""Append-only tables as Parquet parts in the object store, with compaction (a layer: imports no stage).

The raw-image catalog (``catalog/raw_images/``) and the local label store
(``labels/records/``) are both tables that only grow. Each append writes one new part
``<prefix>part-<UTC time>-<random>.parquet``, so concurrent writers never rewrite an object
and part names sort in write order. Readers list the parts, read them with pyarrow
(projected to the columns asked for, fetched in parallel so an S3 store is not read one
round trip at a time) and concatenate them into one table.

After thousands of imports a read would fetch thousands of small objects, so the writer
compacts: once ``compact_at`` parts exist (and on ``compact()``), it writes their rows as
one part, in part order, keeping the first row per ``unique_by`` value, named after the
first part it covers so it sorts where that part did, and only then deletes the parts it
covered. A crash between the two steps leaves rows twice, which every reader already
tolerates (readers keep the first row per ``unique_by``); two compactions at the same time
do the same, and the next compaction merges their outputs. Parts written during a
compaction are not covered by it and stay as they are.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from tagqa_assets.storage import ObjectStore

PART_SUFFIX = ".parquet"
DEFAULT_COMPACT_AT = 200
_READ_THREADS = 8


@dataclass(frozen=True)
class Compaction:
    """What one compaction did: the part it wrote, how many parts and rows it covered."""

    part: str
    parts_covered: int
    rows: int


class ParquetParts:
    """One append-only table under ``prefix`` (see module docstring).

    ``columns`` are the table's columns (the shape of an empty read); ``unique_by`` is the
    column whose first row wins when rows repeat (compaction drops the later ones).
    """

    def __init__(
        self, store: ObjectStore, prefix: str, *, columns: Sequence[str], unique_by: str, compact_at: int | None = DEFAULT_COMPACT_AT
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.columns = tuple(columns)
        self.unique_by = unique_by
        self.compact_at = compact_at

    def part_keys(self) -> list[str]:
        """The parts' keys, in write order."""
        return sorted(info.key for info in self.store.list_objects(self.prefix) if info.key.endswith(PART_SUFFIX))

    def _read_part(self, key: str, columns: Sequence[str] | None) -> pa.Table:
        return pq.read_table(pa.BufferReader(self.store.get_bytes(key)), columns=list(columns) if columns else None)

    def read_table(self, columns: Sequence[str] | None = None, *, keys: Sequence[str] | None = None) -> pa.Table:
        """Every row of every part (``keys``: of those parts only), in part order, as one Arrow table."""
        keys = self.part_keys() if keys is None else list(keys)
        wanted = list(columns) if columns else list(self.columns)
        if not keys:
            return pa.table({column: pa.array([], type=pa.string()) for column in wanted})
        if len(keys) == 1:
            tables = [self._read_part(keys[0], columns)]
        else:
            with ThreadPoolExecutor(max_workers=min(_READ_THREADS, len(keys))) as pool:
                tables = list(pool.map(lambda key: self._read_part(key, columns), keys))
        # "permissive": a part whose column was all null stored it as type null; promote it.
        return pa.concat_tables(tables, promote_options="permissive")

    def read(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """Every row as a pandas frame (``columns``, or all), in part order; empty frame with the columns when none."""
        table = self.read_table(columns)
        if table.num_rows == 0:
            return pd.DataFrame({column: pd.Series(dtype="object") for column in (columns or self.columns)})
        return table.to_pandas()

    def write(self, frame: pd.DataFrame | pa.Table) -> str:
        """Write ``frame`` as a new part and return its key; compacts when ``compact_at`` parts exist."""
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        key = self._put(table, stamp=datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ"), tag=uuid.uuid4().hex[:8])
        if self.compact_at is not None:
            keys = self.part_keys()
            if len(keys) >= self.compact_at:
                self.compact(keys)
        return key

    def _put(self, table: pa.Table, *, stamp: str, tag: str) -> str:
        key = f"{self.prefix}part-{stamp}-{tag}{PART_SUFFIX}"
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        self.store.put_bytes(key, buffer.getvalue())
        return key

    def compact(self, keys: Sequence[str] | None = None) -> Compaction | None:
        """Merge the parts ``keys`` (default: all) into one part, then delete them; ``None`` when fewer than two."""
        keys = self.part_keys() if keys is None else sorted(keys)
        if len(keys) < 2:
            return None
        table = self.read_table(keys=keys)
        if self.unique_by in table.column_names and table.num_rows:
            indices = pa.array(range(table.num_rows), type=pa.int64())
            firsts = (
                pa.table({"value": table[self.unique_by], "index": indices}).group_by("value", use_threads=False).aggregate([("index", "min")])
            )
            first_rows = firsts["index_min"].combine_chunks()
            table = table.take(pc.take(first_rows, pc.sort_indices(first_rows)))
        first_stamp = keys[0][len(self.prefix) + len("part-") :].split("-", 1)[0]
        part = self._put(table, stamp=first_stamp, tag=f"0compact{uuid.uuid4().hex[:8]}")
        for key in keys:
            if key != part:
                self.store.delete(key)
        return Compaction(part, len(keys), table.num_rows)
