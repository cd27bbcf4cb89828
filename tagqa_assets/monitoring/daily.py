"""One day of line results, read column-wise with Polars: de-duplicated frames and their metrics.

Parts are scanned as one lazy query (projection pushed into the Parquet reader: the
per-detection column is never loaded for the daily metrics), de-duplicated by (device,
image id), and aggregated per device and per (device, model version) in the engine.
"""

from __future__ import annotations

import io
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from tagqa_assets.contracts.results import (
    FRAME_SCHEMA,
    FRAMES_PREFIX,
    PART_SUFFIX,
    REJECTS_PREFIX,
    day_prefix,
    frame_part_key,
    is_merged_part,
)
from tagqa_assets.storage import LocalObjectStore, ObjectStore

SMALL_PARTS_BEFORE_MERGE = 64
COLUMNS = ["device", "image_id", "timestamp", "verdict", "model_id", "model_version", "dataset_version",
           "best_score", "latency_ms", "captured", "provider", "precision"]
# FRAME_SCHEMA as Polars reads it: every part is read against it, not against the first part's own schema.
FRAME_COLUMNS = pl.from_arrow(FRAME_SCHEMA.empty_table()).schema


def scan_frame_parts(paths: list[str]) -> pl.LazyFrame:
    """Frame parts as one lazy table with ``FRAME_SCHEMA``'s columns.

    A part written before a column existed (``provider``, added with execution providers;
    ``precision``, added with precision variants) reads as null in it; a column a newer writer added is left out. Without this a day
    holding both kinds fails to read.
    """
    return pl.scan_parquet(paths, schema=FRAME_COLUMNS, missing_columns="insert", extra_columns="ignore")


def part_keys(store: ObjectStore, prefix: str, day: date) -> list[str]:
    """Keys of the Parquet parts under ``<prefix><YYYY>/<MM>/<DD>/``, in key order."""
    return [info.key for info in store.list_objects(day_prefix(prefix, day)) if info.key.endswith(PART_SUFFIX)]


@contextmanager
def local_paths(store: ObjectStore, keys: list[str]) -> Iterator[list[str]]:
    """Local file paths of ``keys``: the files themselves in a local store, a temporary copy otherwise."""
    if isinstance(store, LocalObjectStore):
        yield [store.uri_for(key) for key in keys]
        return
    folder = Path(tempfile.mkdtemp(prefix="tagqa-results-"))
    try:
        yield [str(store.download_file(key, folder / f"{index:06d}.parquet")) for index, key in enumerate(keys)]
    finally:
        shutil.rmtree(folder, ignore_errors=True)


CATEGORIES = ("device", "verdict", "model_id", "model_version", "dataset_version", "captured", "provider",
              "precision")


def unique_frames(paths: list[str]) -> pl.LazyFrame:
    """The frames of ``paths`` (Parquet parts), one row per (device, image id) (the first in part order).

    Repeated text columns become categoricals: a day of 4.3 million frames then fits in
    about 0.9 GB instead of 3 GB (docs/benchmarks.md).
    """
    return (scan_frame_parts(paths).select(COLUMNS)
            .filter(pl.struct("device", "image_id").is_first_distinct())
            .drop("image_id")
            .with_columns(pl.col(name).cast(pl.Categorical) for name in CATEGORIES))


def _metrics() -> list[pl.Expr]:
    span = (pl.col("timestamp").max() - pl.col("timestamp").min()).dt.total_microseconds() / 1e6
    return [
        pl.len().alias("frames"),
        (pl.col("verdict") == "defect").sum().alias("defects"),
        (pl.col("verdict") == "defect").mean().alias("defect_rate"),
        pl.col("latency_ms").quantile(0.5, "linear").alias("latency_p50_ms"),
        pl.col("latency_ms").quantile(0.95, "linear").alias("latency_p95_ms"),
        (pl.len() / pl.max_horizontal(span, pl.lit(1.0))).alias("frames_per_second"),
        pl.col("captured").is_not_null().mean().alias("capture_rate"),
        pl.col("timestamp").min().alias("first_frame"),
        pl.col("timestamp").max().alias("last_frame"),
    ]


def summarize(frames: pl.LazyFrame) -> dict[str, pl.DataFrame]:
    """``overall`` (one row), ``by_device`` and ``by_model`` (device x model version) metrics, computed together."""
    by_model_keys = ["device", "model_version", "model_id", "dataset_version", "provider", "precision"]
    overall, by_device, by_model = (
        table.with_columns(pl.col(pl.Categorical).cast(pl.String)) for table in pl.collect_all([
            frames.select(_metrics() + [pl.col("device").n_unique().alias("devices")]),
            frames.group_by("device").agg(_metrics()),
            frames.group_by(by_model_keys).agg(_metrics()),
        ], engine="streaming"))
    return {"overall": overall, "by_device": by_device.sort("device"),
            "by_model": by_model.sort(["device", "model_version"], nulls_last=True)}


def reject_counts(store: ObjectStore, day: date) -> dict[str, int]:
    """Rejected messages received on ``day``, by reason."""
    keys = part_keys(store, REJECTS_PREFIX, day)
    if not keys:
        return {}
    with local_paths(store, keys) as paths:
        counts = pl.scan_parquet(paths).group_by("reason").len().collect()
    return dict(sorted(zip(counts["reason"].to_list(), counts["len"].to_list())))


def frame_part_keys(store: ObjectStore, day: date) -> list[str]:
    """Keys of the frame parts of ``day`` (all devices)."""
    return part_keys(store, FRAMES_PREFIX, day)


def compact_day(store: ObjectStore, day: date, written_at: datetime, *, day_is_over: bool,
                small_parts: int = SMALL_PARTS_BEFORE_MERGE) -> int:
    """Merge parts of ``day`` per device; returns how many parts were merged away.

    A day that is over ends with one part per device. During the day, a device's parts that
    no compaction made yet are merged once there are ``small_parts`` of them, so the number
    of files a read opens stays in the hundreds (the collector writes one part per device
    per flush). The merged part is written before the parts it replaces are deleted, so a
    crash in between leaves rows twice, never zero times, and readers de-duplicate. Parts
    written while this runs are not in the listing and stay as they are.
    """
    by_device: dict[str, list[str]] = {}
    for key in frame_part_keys(store, day):
        by_device.setdefault(key.rsplit("/", 2)[-2], []).append(key)
    removed = 0
    for device, keys in sorted(by_device.items()):
        if not day_is_over:
            keys = [key for key in keys if not is_merged_part(key)]
            if len(keys) < small_parts:
                continue
        if len(keys) < 2:
            continue
        with local_paths(store, keys) as paths:
            merged = (scan_frame_parts(paths).filter(pl.col("image_id").is_first_distinct())
                      .sort("timestamp", maintain_order=True).collect())
        buffer = io.BytesIO()
        pq.write_table(merged.select(FRAME_SCHEMA.names).to_arrow().cast(FRAME_SCHEMA), buffer, compression="zstd")
        store.put_bytes(frame_part_key(day, device, written_at, merged=True), buffer.getvalue())
        for key in keys:
            store.delete(key)
        removed += len(keys)
    return removed
