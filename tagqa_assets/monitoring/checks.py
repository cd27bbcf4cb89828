"""``line_results_drift``: each device's day against the serving model's evaluation baseline (warning)."""


import warnings

import dagster as dg
import numpy as np
import polars as pl

from tagqa_assets.contracts.models import FP32
from tagqa_assets.labeling.resources import LabelingResource, LabelStoreResource
from tagqa_assets.monitoring.assets import daily_results, line_results, metadata_table, partition_day
from tagqa_assets.monitoring.daily import frame_part_keys, local_paths, unique_frames
from tagqa_assets.monitoring.drift import compare, load_baseline
from tagqa_assets.monitoring.feedback_jobs import open_drift_job
from tagqa_assets.monitoring.resources import MonitoringResource
from tagqa_assets.storage import StoreResource

# Partitioned checks are a preview feature of Dagster 1.13 (warns at import): silenced for this check only.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.PreviewWarning)

    @dg.asset_check(asset=line_results, partitions_def=daily_results, blocking=False)
    def line_results_drift(context: dg.AssetCheckExecutionContext, store: StoreResource, monitoring: MonitoringResource,
                           labels: LabelStoreResource, labeling: LabelingResource) -> dg.AssetCheckResult:
        """Per device: best-score PSI, defect rate and capture-band share against the serving model's test
        split, as scored by the precision variant (fp32, int8) the device ran; per variant when it ran several.
        A drifted device-day opens one labeling job for a sample of that day's captured images."""
        object_store = store.open()
        thresholds = monitoring.thresholds()
        day = partition_day(context.partition_key)
        keys = frame_part_keys(object_store, day)
        if not keys:
            return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN,
                                       description=f"no results for {day}", metadata={"devices": 0})
        with local_paths(object_store, keys) as paths:
            frames = (unique_frames(paths).select("device", "model_id", "precision", "best_score")
                      .with_columns(pl.col("device", "model_id", "precision").cast(pl.String)).collect())
        # Each device is compared under the model that served most of its frames that day, and per precision
        # variant it ran that model in (a swap between fp32 and int8 during the day gives two comparisons, each
        # against its own variant's baseline; records without precision against fp32's).
        serving = (frames.group_by("device", "model_id").len().sort(["device", "len"], descending=[False, True])
                   .unique("device", keep="first").sort("device"))
        rows, drifted, unavailable, mixed, backend = [], [], [], [], None
        for device, model_id, _ in serving.iter_rows():
            groups = (frames.filter((pl.col("device") == device) & pl.col("model_id").eq_missing(model_id))
                      .group_by("precision").agg("best_score").sort("precision", nulls_last=True))
            if groups.height > 1:
                mixed.append(device)
            device_rows, drifted_rows, reasons = [], [], []
            for precision, scores in groups.iter_rows():
                baseline = load_baseline(object_store, model_id, precision) if model_id else None
                if baseline is None:
                    unavailable.append(device if groups.height == 1 else f"{device} ({precision or 'no precision'})")
                    device_rows.append({"device": device, "model_id": model_id or "", "frames": len(scores),
                                        "precision": precision or "", "baseline": "none",
                                        "reasons": f"no {precision or FP32} baseline recorded", "labeling_job": ""})
                    continue
                result = compare(device, model_id, np.asarray(scores, dtype=np.float64), baseline, thresholds,
                                 precision=precision)
                device_rows.append({**result.row(), "labeling_job": ""})
                if result.drifted:
                    drifted_rows.append(device_rows[-1])
                    label = f"{precision or 'no precision'}: " if groups.height > 1 else ""
                    reasons += [label + reason for reason in result.reasons]
            if reasons:  # one labeling job per device-day, whichever of its precisions drifted
                drifted.append(device)
                backend = backend or labeling.open(object_store, labels.open(object_store))
                record = open_drift_job(object_store, backend, device, day, sample=monitoring.labeling_sample,
                                        reasons=reasons)
                for row in drifted_rows:
                    row["labeling_job"] = record["job_id"] or record["note"]
                context.log.warning(f"{device} drifted on {day} ({'; '.join(reasons)}): labeling job "
                                    f"{record['job_id'] or 'not opened, ' + record['note']}")
            rows.extend(device_rows)
        table = pl.DataFrame(rows, infer_schema_length=None)
        description = (f"drift on {day}: {', '.join(drifted)}" if drifted else f"no drift on {day}")
        if unavailable:
            description += f"; no evaluation baseline for {', '.join(unavailable)}"
        if mixed:
            description += f"; compared per precision (a device ran several that day): {', '.join(mixed)}"
        return dg.AssetCheckResult(
            passed=not drifted, severity=dg.AssetCheckSeverity.WARN, description=description,
            metadata={"devices": serving.height, "drifted_devices": len(drifted), "without_baseline": len(unavailable),
                      "mixed_precision_devices": len(mixed),
                      "per_device": metadata_table(table),
                      "thresholds": dg.MetadataValue.json({"psi": thresholds.psi,
                                                           "defect_rate_delta": thresholds.defect_rate_delta,
                                                           "capture_share_delta": thresholds.capture_share_delta,
                                                           "min_frames": thresholds.min_frames})})
