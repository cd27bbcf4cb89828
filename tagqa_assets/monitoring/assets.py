"""``line_results``: one day of inspection results from every device, with metrics people plot across days."""


from datetime import date, datetime, timezone

import dagster as dg
import polars as pl

from tagqa_assets.contracts.keys import model_prefix
from tagqa_assets.contracts.results import FRAMES_PREFIX, day_prefix
from tagqa_assets.monitoring.daily import (compact_day, frame_part_keys, local_paths, reject_counts, scan_frame_parts,
                                           summarize, unique_frames)
from tagqa_assets.storage import StoreResource

# end_offset=1: today's partition exists while its results arrive, not only once the day is over.
daily_results = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC", end_offset=1)
PLOTTED_DEVICES = 20  # per-device numeric metadata for at most this many devices (the tables have all)


def partition_day(partition_key: str) -> date:
    return date.fromisoformat(partition_key)


def _value(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4)
    return "" if value is None else value


def metadata_table(frame: pl.DataFrame) -> dg.MetadataValue:
    """A Dagster table of ``frame`` (numbers stay numbers, times become ISO text)."""
    kinds = {pl.Int64: "int", pl.UInt32: "int", pl.Int32: "int", pl.Float64: "float", pl.Boolean: "bool"}
    schema = dg.TableSchema(columns=[dg.TableColumn(name, kinds.get(dtype, "string"))
                                     for name, dtype in frame.schema.items()])
    return dg.MetadataValue.table(
        records=[dg.TableRecord({k: _value(v) for k, v in row.items()}) for row in frame.iter_rows(named=True)],
        schema=schema)


@dg.asset(
    partitions_def=daily_results,
    deps=[dg.AssetKey("edge_deployment")],
    group_name="monitoring",
    kinds={"polars", "parquet"},
    code_version="line-results-v1",
)
def line_results(context: dg.AssetExecutionContext, store: StoreResource) -> dg.MaterializeResult:
    """One UTC day of line results (``results/frames/<YYYY>/<MM>/<DD>/<device>/``): frames, defect rate per
    device and per model version, latency p50/p95, frames per second and capture rate, with the models
    (and their dataset versions) that produced them. Materialized by ``line_results_sensor`` as parts arrive.
    """
    object_store = store.open()
    day = partition_day(context.partition_key)
    now = datetime.now(timezone.utc)
    # The collector writes a part per device per flush: compaction keeps the day readable.
    compacted = compact_day(object_store, day, now, day_is_over=day < now.date())
    keys = frame_part_keys(object_store, day)
    rejects = reject_counts(object_store, day)
    metadata: dict[str, object] = {
        "parts": len(keys), "parts_compacted": compacted, "rejects": sum(rejects.values()), "rejects_by_reason": dg.MetadataValue.json(rejects),
        "results_prefix": dg.MetadataValue.path(object_store.uri_for(day_prefix(FRAMES_PREFIX, day).rstrip("/"))),
    }
    if not keys:
        context.log.info(f"no results for {day} yet")
        return dg.MaterializeResult(metadata={**metadata, "frames": 0, "devices": 0})
    with local_paths(object_store, keys) as paths:
        stored_rows = scan_frame_parts(paths).select(pl.len()).collect().item()
        tables = summarize(unique_frames(paths))
    overall = tables["overall"].row(0, named=True)
    by_device, by_model = tables["by_device"], tables["by_model"]
    metadata.update({
        name: dg.MetadataValue.float(float(overall[name])) for name in
        ("defect_rate", "latency_p50_ms", "latency_p95_ms", "frames_per_second", "capture_rate")
    })
    metadata.update({"frames": int(overall["frames"]), "devices": int(overall["devices"]),
                     "duplicate_rows": int(stored_rows - overall["frames"]),
                     "by_device": metadata_table(by_device.drop("first_frame", "last_frame"))})
    for row in by_device.head(PLOTTED_DEVICES).iter_rows(named=True):
        metadata[f"defect_rate/{row['device']}"] = float(row["defect_rate"])
        metadata[f"frames/{row['device']}"] = int(row["frames"])
        metadata[f"device {row['device']}"] = metadata_table(
            by_model.filter(pl.col("device") == row["device"]).drop("device", "first_frame", "last_frame"))
    per_version = unique_frames_by_version(by_model)
    for row in per_version.iter_rows(named=True):
        metadata[f"defect_rate/model_v{row['model_version']}"] = float(row["defect_rate"])
    # Lineage: each model version that served that day, its model folder and its dataset version.
    models = per_version.select("model_version", "model_id", "dataset_version", "frames").with_columns(
        pl.col("model_id").map_elements(lambda m: object_store.uri_for(model_prefix(m).rstrip("/")) if m else "",
                                        return_dtype=pl.String).alias("model_dir"))
    metadata["models"] = metadata_table(models)
    serving = per_version.sort("frames", descending=True).row(0, named=True)
    metadata.update({"serving_model_version": str(serving["model_version"]), "serving_model_id": str(serving["model_id"]),
                     "serving_dataset_version": str(serving["dataset_version"])})
    if serving["model_id"]:
        metadata["serving_model_dir"] = dg.MetadataValue.path(object_store.uri_for(model_prefix(serving["model_id"]).rstrip("/")))
    return dg.MaterializeResult(metadata=metadata)


def unique_frames_by_version(by_model: pl.DataFrame) -> pl.DataFrame:
    """Frames and defect rate per model version over all devices (from the device x version table)."""
    return (by_model.group_by("model_version", "model_id", "dataset_version")
            .agg(pl.col("frames").sum(), pl.col("defects").sum())
            .with_columns((pl.col("defects") / pl.col("frames")).alias("defect_rate"))
            .sort("model_version", nulls_last=True))
