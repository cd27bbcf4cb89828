"""Precision in results and drift: a device-day is compared with the baseline of the variant it ran.

The edge runtime puts the serving model's precision (the card's ``precision``: fp32 or int8) into
every result, every frame error record and its health; the results store keeps it (older parts
and records read as null); ``line_results_drift`` compares each device-day with the test-split
best scores of that variant (``variants.int8.best_scores.test`` for int8), the fp32 baseline
only for records without precision, and a day with a swap between variants per variant.
"""

from __future__ import annotations

import json
import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import numpy as np

from edge_fixtures import MqttCollector, mosquitto, sample_images, tiny_models  # noqa: F401
from edge_runtime.config_sources import FileConfigSource
from edge_runtime.publishers import MqttPublisher
from edge_runtime.service import EdgeRuntime
from results_fixtures import result_message, topic_of
from tagqa_assets.contracts.models import METRICS_FILE, model_key
from tagqa_assets.contracts.results import decode_result
from tagqa_assets.labeling.resources import LabelingResource, LabelStoreResource
from tagqa_assets.monitoring.assets import line_results
from tagqa_assets.monitoring.checks import line_results_drift
from tagqa_assets.monitoring.collector import CollectorSettings, ResultsCollector
from tagqa_assets.monitoring.drift import DriftThresholds, compare, load_baseline
from tagqa_assets.monitoring.resources import MonitoringResource
from tagqa_assets.storage import LocalObjectStore, StoreResource
from tagqa_assets.training.quantization import calibration_images, calibration_set, quantize_model_dir

MODEL = "v0001-abcd1234-0badc0de"
NO_INT8_BASELINE = "v0002-abcd1234-0badc0de"
# The fp32 export scores the test split low, its int8 variant high: far enough apart that a day of either
# compared with the other's baseline drifts (asserted below), so a row's outcome shows which baseline it used.
FP32_BASELINE = np.random.default_rng(1).beta(2, 5, 200)
INT8_BASELINE = np.random.default_rng(2).beta(5, 2, 200)


def _store_baselines(store: LocalObjectStore) -> None:
    store.put_json(model_key(MODEL, METRICS_FILE), {
        "model_id": MODEL, "best_scores": {"test": FP32_BASELINE.round(6).tolist()},
        "variants": {"fp32": {"metrics": {}}, "int8": {"metrics": {}, "best_scores": {
            "test": INT8_BASELINE.round(6).tolist()}}}})
    # A model evaluated before int8 variants recorded best scores: fp32's only.
    store.put_json(model_key(NO_INT8_BASELINE, METRICS_FILE), {
        "model_id": NO_INT8_BASELINE, "best_scores": {"test": FP32_BASELINE.round(6).tolist()},
        "variants": {"int8": {"metrics": {}}}})


def _without_precision(payload: bytes) -> bytes:
    """The record as a runtime from before precision in results published it: no such key."""
    record = json.loads(payload)
    del record["precision"]
    return json.dumps(record).encode()


def _check(store: Path, day: str) -> dg.AssetCheckEvaluation:
    resources = {"store": StoreResource(root=str(store)), "monitoring": MonitoringResource(),
                 "labels": LabelStoreResource(), "labeling": LabelingResource(backend="inbox")}
    result = dg.materialize([line_results, line_results_drift], partition_key=day, resources=resources)
    return result.get_asset_check_evaluations()[0]


def test_the_baseline_is_the_variant_the_device_ran(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    _store_baselines(store)
    assert load_baseline(store, MODEL, "int8").name == "int8"
    assert np.allclose(load_baseline(store, MODEL, "int8").scores, INT8_BASELINE, atol=1e-6)
    assert np.allclose(load_baseline(store, MODEL, "fp32").scores, FP32_BASELINE, atol=1e-6)
    old = load_baseline(store, MODEL, None)
    assert old.precision == "fp32" and "no precision" in old.name
    assert load_baseline(store, NO_INT8_BASELINE, "int8") is None, "an int8 day is never compared with fp32's"
    # The two baselines are far apart: a day of int8 scores against fp32's would drift, and the reverse.
    day_int8 = np.random.default_rng(3).beta(5, 2, 150)
    assert compare("d", MODEL, day_int8, FP32_BASELINE, DriftThresholds()).drifted
    assert not compare("d", MODEL, day_int8, load_baseline(store, MODEL, "int8"), DriftThresholds(),
                       precision="int8").drifted

    day = datetime(2026, 11, 24, tzinfo=timezone.utc)
    collector = ResultsCollector(store, CollectorSettings(), now=lambda: day + timedelta(hours=23))

    def serve(device: str, scores: np.ndarray, precision: str | None, *, start: int = 0, model: str = MODEL) -> None:
        for index, best in enumerate(scores, start):
            payload = result_message(device, index, day + timedelta(seconds=index), best=float(best), model_id=model,
                                     precision=precision)
            collector.accept(topic_of(device), payload if precision else _without_precision(payload))

    # Each device sees tags like the test split's: its day scores as the variant it ran scored them there.
    serve("line-int8", INT8_BASELINE, "int8")  # ships int8
    serve("line-old", FP32_BASELINE, None)  # a runtime from before precision in results: fp32
    serve("line-swap", FP32_BASELINE, "fp32")  # fp32 in the morning, int8 after the swap
    serve("line-swap", INT8_BASELINE, "int8", start=200)
    serve("line-dark", FP32_BASELINE, "int8")  # int8, but its scores collapsed to fp32's level: drift
    serve("line-v2", INT8_BASELINE, "int8", model=NO_INT8_BASELINE)
    collector.flush(acknowledge=False)

    check = _check(store.root, "2026-11-24")
    rows = {(r.data["device"], r.data["precision"]): r.data for r in check.metadata["per_device"].value.records}
    assert set(rows) == {("line-int8", "int8"), ("line-old", ""), ("line-swap", "fp32"), ("line-swap", "int8"),
                         ("line-dark", "int8"), ("line-v2", "int8")}
    assert rows["line-int8", "int8"]["baseline"] == "int8" and rows["line-int8", "int8"]["reasons"] == "-"
    assert rows["line-old", ""]["baseline"] == "fp32 (the records name no precision)"
    assert rows["line-old", ""]["reasons"] == "-"
    # The swap day: each part against its own variant (pooled, either baseline would call it drift).
    assert (rows["line-swap", "fp32"]["baseline"], rows["line-swap", "int8"]["baseline"]) == ("fp32", "int8")
    assert rows["line-swap", "fp32"]["frames"] == 200 and rows["line-swap", "int8"]["frames"] == 200
    assert rows["line-swap", "fp32"]["reasons"] == rows["line-swap", "int8"]["reasons"] == "-"
    pooled = np.concatenate([FP32_BASELINE, INT8_BASELINE])
    assert all(compare("d", MODEL, pooled, base, DriftThresholds()).drifted for base in (FP32_BASELINE, INT8_BASELINE))
    assert rows["line-dark", "int8"]["baseline"] == "int8" and "PSI" in rows["line-dark", "int8"]["reasons"]
    assert rows["line-dark", "int8"]["labeling_job"], "a drifted device-day opens its labeling job"
    assert rows["line-v2", "int8"]["baseline"] == "none" and rows["line-v2", "int8"]["reasons"] == \
        "no int8 baseline recorded"
    assert not check.passed and check.description.startswith("drift on 2026-11-24: line-dark;")
    assert "no evaluation baseline for line-v2" in check.description
    assert "compared per precision (a device ran several that day): line-swap" in check.description
    metadata = check.metadata
    assert (metadata["devices"].value, metadata["drifted_devices"].value) == (5, 1)
    assert (metadata["without_baseline"].value, metadata["mixed_precision_devices"].value) == (1, 1)
    assert json.loads(store.get_bytes("monitoring/drift_jobs/2026-11-24/line-dark.json"))["reasons"][0].startswith(
        "best-score PSI")


def test_a_swap_day_opens_one_job_naming_the_variant_that_drifted(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    _store_baselines(store)
    day = datetime(2026, 11, 25, tzinfo=timezone.utc)
    collector = ResultsCollector(store, CollectorSettings(), now=lambda: day + timedelta(hours=23))
    # fp32 fine; after the swap to int8 the scores stay where fp32's were: against int8's baseline that drifts.
    for index, (best, precision) in enumerate([(b, "fp32") for b in FP32_BASELINE]
                                              + [(b, "int8") for b in FP32_BASELINE]):
        collector.accept(topic_of("line-1"), result_message("line-1", index, day + timedelta(seconds=index),
                                                             best=float(best), model_id=MODEL, precision=precision))
    collector.flush(acknowledge=False)
    check = _check(store.root, "2026-11-25")
    rows = {r.data["precision"]: r.data for r in check.metadata["per_device"].value.records}
    assert rows["fp32"]["reasons"] == "-" and not rows["fp32"]["labeling_job"]
    assert "PSI" in rows["int8"]["reasons"] and rows["int8"]["labeling_job"]
    job = json.loads(store.get_bytes("monitoring/drift_jobs/2026-11-25/line-1.json"))
    assert job["reasons"] and all(reason.startswith("int8: ") for reason in job["reasons"])
    assert [i.key for i in store.list_objects("monitoring/drift_jobs/")] == [
        "monitoring/drift_jobs/2026-11-25/line-1.json"], "one labeling job per device-day"


def test_the_runtime_reports_the_variant_it_serves_in_every_record_and_its_health(
        mosquitto, tiny_models, tmp_path: Path) -> None:  # noqa: F811
    """A real runtime serving the int8 variant (quantized, card precision int8) and the fp32 export before it (a
    card from before precision variants): results, error records and health say which; the store keeps it."""
    sample_images(tmp_path / "camera", 6)
    calibration = calibration_images(tmp_path / "camera", 4)
    int8_dir = quantize_model_dir(tiny_models["a"], tmp_path / "int8", calibration,
                                  calibration_set("ds-edge-1", "train", calibration))
    (tmp_path / "camera" / "cut.jpg").write_bytes(calibration[0].read_bytes()[:1500])  # a corrupt frame: error record
    records: dict[str, list[dict]] = {}
    healths: dict[str, dict] = {}
    for name, model_dir in (("fp32", tiny_models["a"]), ("int8", int8_dir)):
        camera = tmp_path / f"camera-{name}"
        shutil.copytree(tmp_path / "camera", camera)
        config = tmp_path / f"device-{name}.json"
        config.write_text(json.dumps({
            "deviceId": "line-1", "modelDir": str(model_dir), "source": str(camera),
            "stateDir": str(tmp_path / f"state-{name}"), "folderSettleSeconds": 0.0, "healthIntervalSeconds": 0.3}))
        collector = MqttCollector(mosquitto.port, ["tagqa/line-1/detections", "tagqa/line-1/health"])
        runtime = EdgeRuntime(config_source=FileConfigSource(config), overrides={}, seed=1, max_frames=7,
                              publisher_factory=lambda c: MqttPublisher("127.0.0.1", mosquitto.port, "edge-line-1"))
        thread = threading.Thread(target=runtime.run, daemon=True)
        thread.start()
        try:
            records[name] = collector.wait_for("tagqa/line-1/detections", lambda m: len(m) >= 7)
            healths[name] = collector.wait_for("tagqa/line-1/health", lambda m: m and m[-1]["frames"] >= 6)[-1]
        finally:
            thread.join(60)
            runtime.request_stop()
            collector.close()
        assert not thread.is_alive()
    for name in ("fp32", "int8"):
        results = [r for r in records[name] if r["schema"] == "tagqa.detection/1"]
        errors = [r for r in records[name] if r["schema"] == "tagqa.frame_error/1"]
        assert len(results) == 6 and len(errors) == 1
        assert {r["precision"] for r in results} == {name} and errors[0]["precision"] == name
        assert {r["provider"] for r in records[name]} == {"CPUExecutionProvider"}
        assert healths[name]["model"]["precision"] == name
    assert "precision" not in json.loads((tiny_models["a"] / "model_card.json").read_text()), \
        "the fp32 card names no precision: fp32 is what a card without one means"
    # The results store keeps it as a column, not in ``extra``.
    received = datetime.now(timezone.utc)
    result = next(r for r in records["int8"] if r["schema"] == "tagqa.detection/1")
    row = decode_result("tagqa/line-1/detections", json.dumps(result).encode(), received).row
    assert row["precision"] == "int8" and row["extra"] is None
