"""The raw-image inventory: one row per ingested raw key, kept as append-only Parquet parts.

Each ingestion run appends one part under ``catalog/raw_images/`` (``parquet_parts.py``, which
also compacts the parts so reads stay fast); a reader unions the parts and keeps the first
row per key, so a retried or concurrent run can never make an image
count twice. Rows whose ``duplicate_of`` is set are keys whose bytes were already ingested
under another key: the image is recorded once, the extra key is remembered so it is not
re-examined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pandas as pd

from tagqa_assets.contracts.keys import RAW_CATALOG_PREFIX
from tagqa_assets.parquet_parts import ParquetParts
from tagqa_assets.storage import ObjectStore

CATALOG_COLUMNS = (
    "key",
    "sha256",
    "bytes",
    "width",
    "height",
    "format",
    "channels",
    "source",
    "ingested_at",
    "duplicate_of",
    "run_id",
    "stored_width",
    "stored_height",
    "orientation",
)


@dataclass(frozen=True)
class RawImage:
    """One inventory row: ``width`` x ``height`` is the display size (EXIF orientation applied),
    ``stored_width`` x ``stored_height`` and ``orientation`` how the pixels are stored
    (``ingestion/validation.py``). Rows written before orientation was recorded read as
    orientation 1 with the stored size equal to the display size."""

    key: str
    sha256: str
    bytes: int
    width: int
    height: int
    format: str
    channels: int
    source: str
    ingested_at: str
    duplicate_of: str | None
    run_id: str
    stored_width: int | None = None
    stored_height: int | None = None
    orientation: int = 1


class RawImageCatalog:
    """Read and append the raw-image inventory in one store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store
        self.parts = ParquetParts(store, RAW_CATALOG_PREFIX, columns=CATALOG_COLUMNS, unique_by="key")

    def load(self) -> pd.DataFrame:
        """All rows, first row per key, ordered by key; empty frame with the columns when none."""
        table = self.parts.read()
        if table.empty:
            return table
        table = table.drop_duplicates(subset="key", keep="first").copy()
        for column in ("stored_width", "stored_height", "orientation"):
            if column not in table.columns:
                table[column] = None
        table["orientation"] = table["orientation"].fillna(1).astype("int64")
        table["stored_width"] = table["stored_width"].fillna(table["width"]).astype("int64")
        table["stored_height"] = table["stored_height"].fillna(table["height"]).astype("int64")
        return table.sort_values("key", kind="stable").reset_index(drop=True)

    def images(self) -> pd.DataFrame:
        """Accepted images only (one row per distinct content)."""
        table = self.load()
        return table[table["duplicate_of"].isna()].reset_index(drop=True)

    def append(self, rows: list[RawImage]) -> str | None:
        """Write ``rows`` as a new part and return its key (``None`` when there is nothing to write)."""
        if not rows:
            return None
        return self.parts.write(pd.DataFrame([asdict(row) for row in rows], columns=list(CATALOG_COLUMNS)))
