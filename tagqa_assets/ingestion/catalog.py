"""The raw-image inventory: one row per ingested raw key, kept as append-only Parquet parts.

Each ingestion run appends one part under ``catalog/raw_images/``; a reader unions the parts
and keeps the first row per key, so a retried or concurrent run can never make an image
count twice. Rows whose ``duplicate_of`` is set are keys whose bytes were already ingested
under another key: the image is recorded once, the extra key is remembered so it is not
re-examined.
"""

from __future__ import annotations

import io
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import pandas as pd

from tagqa_assets.contracts.keys import RAW_CATALOG_PREFIX
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
)


@dataclass(frozen=True)
class RawImage:
    """One inventory row."""

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


class RawImageCatalog:
    """Read and append the raw-image inventory in one store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def load(self) -> pd.DataFrame:
        """All rows, first row per key, ordered by key; empty frame with the columns when none."""
        frames = [
            pd.read_parquet(io.BytesIO(self.store.get_bytes(info.key)))
            for info in self.store.list_objects(RAW_CATALOG_PREFIX)
            if info.key.endswith(".parquet")
        ]
        if not frames:
            return pd.DataFrame({column: pd.Series(dtype="object") for column in CATALOG_COLUMNS})
        table = pd.concat(frames, ignore_index=True)
        table = table.drop_duplicates(subset="key", keep="first")
        return table.sort_values("key", kind="stable").reset_index(drop=True)

    def images(self) -> pd.DataFrame:
        """Accepted images only (one row per distinct content)."""
        table = self.load()
        return table[table["duplicate_of"].isna()].reset_index(drop=True)

    def append(self, rows: list[RawImage]) -> str | None:
        """Write ``rows`` as a new part and return its key (``None`` when there is nothing to write)."""
        if not rows:
            return None
        frame = pd.DataFrame([asdict(row) for row in rows], columns=list(CATALOG_COLUMNS))
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
        key = f"{RAW_CATALOG_PREFIX}part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        self.store.put_bytes(key, buffer.getvalue())
        return key
