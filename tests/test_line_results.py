"""line_results and its drift check: daily metrics from real parts, and a drift scenario on the real tags.

The scenario: the serving model's baseline is its test split's best scores (as model_evaluation
records them); day 1 serves other real tags, day 2 the same tags darkened. Every frame goes
through the edge runtime's detector and capture policy, is published over a real Mosquitto
and written by a real collector process. The check passes day 1, flags day 2, and a
labeling job opens for day 2's captured images.
"""

from __future__ import annotations

import io
import json
import random
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
from PIL import Image

from edge_fixtures import mosquitto, tiny_models  # noqa: F401
from edge_runtime.capture import CapturePolicy
from edge_runtime.contracts import DetectionResult, capture_name, feedback_image_key, verdict_for
from edge_runtime.detector import Detector, Thresholds
from polling import wait_until
from results_fixtures import mqtt_client, result_message, start_collector, stored_frames, topic_of, wait_subscribed
from tagqa_assets.contracts.models import METRICS_FILE, MODEL_CARD_FILE, model_key
from tagqa_assets.labeling.jobs import JobBook
from tagqa_assets.labeling.resources import LabelingResource, LabelStoreResource
from tagqa_assets.monitoring.assets import line_results
from tagqa_assets.monitoring.checks import line_results_drift
from tagqa_assets.monitoring.collector import CollectorSettings, ResultsCollector
from tagqa_assets.monitoring.drift import DriftThresholds, compare, psi
from tagqa_assets.monitoring.resources import MonitoringResource
from tagqa_assets.monitoring.sensors import line_results_sensor
from tagqa_assets.storage import LocalObjectStore, StoreResource
from tagqa_assets.training.detections import OnnxModel
from tagqa_assets.training.evaluation import best_scores

DEVICE = "line-7"


def _resources(store: Path) -> dict:
    return {"store": StoreResource(root=str(store)), "monitoring": MonitoringResource(),
            "labels": LabelStoreResource(), "labeling": LabelingResource(backend="inbox")}


def _materialize(store: Path, day: str) -> dg.ExecuteInProcessResult:
    return dg.materialize([line_results, line_results_drift], partition_key=day, resources=_resources(store))


def test_psi_is_small_for_the_same_distribution_and_large_for_a_shifted_one():
    rng = np.random.default_rng(0)
    baseline = rng.beta(2, 5, 80)
    assert psi(baseline, rng.beta(2, 5, 500)) < 0.1  # same population, other sample
    assert psi(baseline, rng.beta(5, 2, 500)) > 1.0  # scores moved up


def test_too_few_frames_are_not_judged():
    # A quiet day (one frame) must not open labeling jobs however odd its score.
    result = compare("d", "m", np.array([0.99]), np.linspace(0, 0.3, 40), DriftThresholds())
    assert not result.drifted and result.psi > 0.25


def test_capture_share_is_judged_against_the_band_the_devices_use():
    """Unset (the devices' "auto"): the band is the rank band of the baseline itself, 0.4-0.6 for evenly spread
    scores and a threshold at 0.5, so a fifth of the baseline is in it; a fixed band is taken as configured."""
    baseline = np.linspace(0, 1, 401)
    auto = DriftThresholds(min_frames=10)
    assert auto.band_for(baseline) == pytest.approx((0.4, 0.6))
    inside = compare("d", "m", np.full(50, 0.5), baseline, auto)
    assert inside.baseline_capture_share == pytest.approx(0.2, abs=0.01) and inside.capture_share == 1.0
    assert any(reason.startswith("capture-band share") for reason in inside.reasons)
    fixed = DriftThresholds(min_frames=10, capture_band=(0.25, 0.6))
    assert compare("d", "m", np.full(50, 0.5), baseline, fixed).baseline_capture_share == pytest.approx(0.35, abs=0.01)


def test_daily_metrics_per_device_and_model_version(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    day = datetime(2026, 11, 20, tzinfo=timezone.utc)
    collector = ResultsCollector(store, CollectorSettings(), now=lambda: day + timedelta(hours=23))
    for index in range(100):  # line-a: versions 3 then 4, one frame per second; line-b: 20 frames
        collector.accept(topic_of("line-a"), result_message("line-a", index, day + timedelta(seconds=index),
                                                             best=0.9 if index % 4 == 0 else 0.1,
                                                             model_version="3" if index < 50 else "4"))
    for index in range(20):
        collector.accept(topic_of("line-b"), result_message("line-b", index, day + timedelta(seconds=index), best=0.3))
        if index == 9:
            collector.flush(acknowledge=False)  # line-b gets two parts; the past day is compacted
    collector.accept(topic_of("line-a"), result_message("line-a", 5, day))  # a duplicate
    collector.accept(topic_of("line-a"), b'{"schema": "tagqa.detection/1", "dev')  # truncated
    collector.flush(acknowledge=False)
    result = _materialize(store.root, "2026-11-20")
    metadata = result.asset_materializations_for_node("line_results")[0].metadata
    assert metadata["frames"].value == 120 and metadata["devices"].value == 2
    assert metadata["parts_compacted"].value == 2 and metadata["parts"].value == 2  # line-b: 2 parts -> 1
    assert metadata["defect_rate/line-a"].value == 0.25 and metadata["defect_rate/line-b"].value == 0.0
    assert metadata["defect_rate"].value == pytest.approx(25 / 120)
    assert metadata["capture_rate"].value == pytest.approx(20 / 120)  # only line-b's 0.3 is in the band
    assert metadata["frames/line-a"].value == 100
    assert metadata["frames_per_second"].value == pytest.approx(120 / 99)  # frames over the day's active span
    assert metadata["latency_p95_ms"].value >= metadata["latency_p50_ms"].value > 0
    assert metadata["rejects"].value == 1 and metadata["rejects_by_reason"].value == {"truncated": 1}
    assert {r.data["model_version"] for r in metadata["models"].value.records} == {"3", "4"}
    assert len(metadata["device line-a"].value.records) == 2  # one row per model version
    # The model that served that day has no baseline here: the check says so and passes.
    check = result.get_asset_check_evaluations()[0]
    assert check.passed and "no evaluation baseline" in check.description


def test_today_merges_a_device_s_small_parts_once_there_are_many(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    now = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(minutes=1)
    collector = ResultsCollector(store, CollectorSettings(), now=lambda: now)
    for index in range(70):  # line-a: a part per flush, 70 flushes; line-b: 3 parts
        collector.accept(topic_of("line-a"), result_message("line-a", index, now))
        if index < 3:
            collector.accept(topic_of("line-b"), result_message("line-b", index, now))
        collector.flush(acknowledge=False)
    metadata = _materialize(store.root, now.date().isoformat()).asset_materializations_for_node("line_results")[0].metadata
    assert metadata["parts_compacted"].value == 70 and metadata["parts"].value == 1 + 3
    assert metadata["frames"].value == 73 and metadata["duplicate_rows"].value == 0


def test_sensor_requests_a_day_once_per_new_set_of_parts(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    now = datetime.now(timezone.utc)
    collector = ResultsCollector(store, CollectorSettings(), now=lambda: now)
    collector.accept(topic_of("line-a"), result_message("line-a", 1, now))
    collector.flush(acknowledge=False)
    resources = {"store": StoreResource(root=str(store.root))}
    with dg.build_sensor_context(resources=resources) as context:
        first = line_results_sensor(context)
    assert [r.partition_key for r in first.run_requests] == [now.date().isoformat()]
    with dg.build_sensor_context(resources=resources, cursor=first.cursor) as context:
        assert not line_results_sensor(context).run_requests  # nothing new
    collector.accept(topic_of("line-a"), result_message("line-a", 2, now))
    collector.flush(acknowledge=False)
    with dg.build_sensor_context(resources=resources, cursor=first.cursor) as context:
        assert len(line_results_sensor(context).run_requests) == 1


def _wait_stored(store_dir: Path, count: int) -> None:
    """Wait (60 s at most) until the collector has stored ``count`` results under ``store_dir``."""
    wait_until(lambda: len(stored_frames(store_dir)) >= count, f"{count} results stored under {store_dir}", 60,
               poll=0.2, diagnose=lambda: f"{len(stored_frames(store_dir))} stored")


def _jpeg(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _serve_day(store: LocalObjectStore, model: OnnxModel, images: list[np.ndarray], start: datetime, client) -> int:
    """What the device does per frame: detect, decide verdict and capture, upload captures, publish the result."""
    detector, policy, rng = Detector(), CapturePolicy(), random.Random(start.toordinal())
    card = model.loaded.card
    infos, captures = [], 0
    for index, pixels in enumerate(images):
        found = detector.detect(pixels, model.loaded, Thresholds())
        when = start + timedelta(seconds=10 * index)
        image_id = f"{start:%Y%m%d}-{index:05d}"
        reason = policy.decide(found.best_score, bool(found.detections), rng)
        if reason is not None:
            name = capture_name(when, image_id, "jpg")
            store.put_bytes(feedback_image_key(DEVICE, when, name), _jpeg(pixels))
            captures += 1
        result = DetectionResult(
            device=DEVICE, image_id=image_id, timestamp=when, model_id=card.model_id, model_version=card.model_version,
            dataset_version=card.dataset_version, detections=found.detections, best_score=found.best_score,
            latency_ms=25.0, verdict=verdict_for(found.detections, 0.5), image_width=found.image_width,
            image_height=found.image_height, source_name=f"tag-{index}.jpg", captured=reason)
        infos.append(client.publish(topic_of(DEVICE), result.to_json(), qos=1))
    for info in infos:
        info.wait_for_publish(30)
    return captures


@pytest.mark.slow
def test_drift_scenario_on_real_tags_flags_the_darkened_day_and_opens_a_labeling_job(
        real_dataset: Path, tiny_models, mosquitto, tmp_path: Path):  # noqa: F811
    store_dir = tmp_path / "store"
    store = LocalObjectStore(store_dir)
    model_dir = tiny_models["a"]
    model = OnnxModel(model_dir)
    card = json.loads((model_dir / MODEL_CARD_FILE).read_text())
    pixels = [np.asarray(Image.open(p).convert("RGB")) for p in sorted((real_dataset / "images").rglob("*.jpg"))]
    test_split, line = pixels[::3], [p for i, p in enumerate(pixels) if i % 3]
    # The serving model's evaluation record, with the baseline model_evaluation writes.
    store.put_bytes(model_key(card["model_id"], MODEL_CARD_FILE), (model_dir / MODEL_CARD_FILE).read_bytes())
    store.put_json(model_key(card["model_id"], METRICS_FILE),
                   {"model_id": card["model_id"], "best_scores": {"test": best_scores([model.predict(p) for p in test_split])}})

    collector = start_collector(store_dir, mosquitto.port, client_id="drift-collector", batch_rows=100,
                                batch_seconds=0.5, log=tmp_path / "collector.log")
    client = mqtt_client(mosquitto.port, f"{DEVICE}-device")
    try:
        wait_subscribed(tmp_path / "collector.log")
        day1, day2 = datetime(2026, 11, 30, 6, tzinfo=timezone.utc), datetime(2026, 12, 1, 6, tzinfo=timezone.utc)
        _serve_day(store, model, line, day1, client)
        dark_captures = _serve_day(store, model, [(p * 0.35).astype(np.uint8) for p in line], day2, client)
        _wait_stored(store_dir, 2 * len(line))
    finally:
        client.loop_stop()
        collector.send_signal(signal.SIGTERM)
        collector.wait(20)

    first = _materialize(store_dir, "2026-11-30")
    assert first.asset_materializations_for_node("line_results")[0].metadata["frames"].value == len(line)
    check = first.get_asset_check_evaluations()[0]
    assert check.passed, check.description
    assert JobBook(store).open_jobs() == []

    second = _materialize(store_dir, "2026-12-01")
    check = second.get_asset_check_evaluations()[0]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert DEVICE in check.description
    [job] = JobBook(store).open_jobs()
    assert dark_captures > 0 and len(job.images) == min(dark_captures, 25)
    assert all(image.key.startswith(f"raw/edge-feedback/{DEVICE}/2026/12/01/") for image in job.images)
    # Re-running the day's check does not open a second job.
    _materialize(store_dir, "2026-12-01")
    assert len(JobBook(store).open_jobs()) == 1


@pytest.mark.slow
def test_a_real_device_process_results_become_todays_partition(tiny_models, mosquitto, tmp_path: Path):  # noqa: F811
    """`tagqa-edge run` on tag images -> Mosquitto -> `tagqa results collect` -> today's line_results partition."""
    import subprocess
    import sys

    from edge_fixtures import sample_images

    store_dir = tmp_path / "store"
    store_dir.mkdir()
    images = sample_images(tmp_path / "incoming", 12)
    collector = start_collector(store_dir, mosquitto.port, client_id="device-collector", batch_rows=50,
                                batch_seconds=0.5, log=tmp_path / "collector.log")
    try:
        wait_subscribed(tmp_path / "collector.log")
        device = subprocess.run(
            [sys.executable, "-m", "edge_runtime", "run", "--model", str(tiny_models["a"]),
             "--source", f"folder:{images[0].parent}", "--broker", f"127.0.0.1:{mosquitto.port}",
             "--device-id", "line-1", "--store", str(store_dir), "--state-dir", str(tmp_path / "edge-state"),
             "--max-frames", str(len(images)), "--seed", "3"],
            capture_output=True, text=True, timeout=180)
        assert device.returncode == 0, device.stderr[-2000:]
        _wait_stored(store_dir, len(images))
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(20)
    today = datetime.now(timezone.utc).date().isoformat()
    result = _materialize(store_dir, today)
    metadata = result.asset_materializations_for_node("line_results")[0].metadata
    card = json.loads((tiny_models["a"] / MODEL_CARD_FILE).read_text())
    assert metadata["frames"].value == len(images) and metadata["devices"].value == 1
    assert metadata["serving_model_id"].value == card["model_id"]
    assert metadata["serving_dataset_version"].value == card["dataset_version"]
    assert metadata["serving_model_dir"].value.endswith(f"models/{card['model_id']}")
    assert metadata["latency_p50_ms"].value > 0 and metadata["rejects"].value == 0


@pytest.mark.slow
def test_two_device_processes_one_served_darkened_tags_only_that_one_is_flagged(
        real_dataset: Path, tiny_models, mosquitto, tmp_path: Path):  # noqa: F811
    """The same drift scenario through real `tagqa-edge` processes (both on today's partition): line-a serves
    real tags, line-b the same tags darkened; the check flags line-b only and labels line-b's captures."""
    import subprocess
    import sys

    store_dir = tmp_path / "store"
    store = LocalObjectStore(store_dir)
    model_dir = tiny_models["a"]
    model = OnnxModel(model_dir)
    card = json.loads((model_dir / MODEL_CARD_FILE).read_text())
    paths = sorted((real_dataset / "images").rglob("*.jpg"))
    test_split = [np.asarray(Image.open(p).convert("RGB")) for p in paths[::3]]
    store.put_json(model_key(card["model_id"], METRICS_FILE),
                   {"model_id": card["model_id"], "best_scores": {"test": best_scores([model.predict(p) for p in test_split])}})
    served = [p for i, p in enumerate(paths) if i % 3]
    folders = {"line-a": tmp_path / "line-a", "line-b": tmp_path / "line-b"}
    for index, path in enumerate(served):
        pixels = np.asarray(Image.open(path).convert("RGB"))
        for device, folder in folders.items():
            folder.mkdir(exist_ok=True)
            shown = pixels if device == "line-a" else (pixels * 0.35).astype(np.uint8)
            (folder / f"tag-{index:03d}.jpg").write_bytes(_jpeg(shown))
    collector = start_collector(store_dir, mosquitto.port, client_id="two-devices", batch_rows=100,
                                batch_seconds=0.5, log=tmp_path / "collector.log")
    try:
        wait_subscribed(tmp_path / "collector.log")
        devices = [subprocess.Popen(
            [sys.executable, "-m", "edge_runtime", "run", "--model", str(model_dir), "--source", f"folder:{folder}",
             "--broker", f"127.0.0.1:{mosquitto.port}", "--device-id", device, "--store", str(store_dir),
             "--state-dir", str(tmp_path / f"{device}-state"), "--max-frames", str(len(served)), "--seed", "5"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for device, folder in folders.items()]
        for device in devices:
            assert device.wait(300) == 0, device.stderr.read()[-2000:]
        _wait_stored(store_dir, 2 * len(served))
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(20)
    today = datetime.now(timezone.utc).date()
    result = _materialize(store_dir, today.isoformat())
    check = result.get_asset_check_evaluations()[0]
    assert not check.passed and check.description.startswith(f"drift on {today}: line-b"), check.description
    rows = {r.data["device"]: r.data for r in check.metadata["per_device"].value.records}
    assert rows["line-a"]["reasons"] == "-" and rows["line-b"]["reasons"] != "-"
    captured_b = [info.key for info in store.list_objects(f"raw/edge-feedback/line-b/{today:%Y/%m/%d}/")]
    # Dark frames have no detection: the device still samples ~5 % of them (emptySampleRate) and 1 % at random.
    assert captured_b, "line-b captured nothing (about 10 of 166 frames expected)"
    [job] = JobBook(store).open_jobs()
    assert {image.key for image in job.images} <= set(captured_b) and len(job.images) == min(len(captured_b), 25)
    assert rows["line-b"]["labeling_job"] == job.job_id
