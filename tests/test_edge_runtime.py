"""The whole runtime in-process against a real Mosquitto (and moto's S3): results, capture and
feedback uploads, health, verified hot swap without dropped frames, corrupt model refused."""

from __future__ import annotations

import json
import shutil
import threading
import time
from pathlib import Path

import boto3
import pytest

from edge_fixtures import MqttCollector, copy_model, mosquitto, sample_images, tiny_models  # noqa: F401
from edge_runtime.config_sources import FileConfigSource
from edge_runtime.contracts import validate_frame_error
from edge_runtime.detector import Detector, Thresholds
from edge_runtime.imaging import decode_image
from edge_runtime.models import load_verified_model
from edge_runtime.publishers import MqttPublisher
from edge_runtime.service import EdgeRuntime

DETECTIONS, HEALTH, FEEDBACK = "tagqa/line-1/detections", "tagqa/line-1/health", "tagqa/line-1/feedback"


def _write_config(path: Path, **config) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(config))
    tmp.replace(path)  # atomic, as the local edge deployment does it


class Running:
    """An EdgeRuntime on a thread, configured from a JSON file like `tagqa-edge run --config`."""

    def __init__(self, config_file: Path, broker, max_frames: int | None = None) -> None:
        def publisher(config):
            return MqttPublisher("127.0.0.1", broker.port, f"edge-{config.device_id}")

        self.runtime = EdgeRuntime(config_source=FileConfigSource(config_file), overrides={},
                                   publisher_factory=publisher, max_frames=max_frames, seed=1)
        self.thread = threading.Thread(target=self.runtime.run, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.runtime.request_stop()
        self.thread.join(30)
        assert not self.thread.is_alive()

    def join(self, timeout: float = 60) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "runtime did not finish"


def _base_config(tmp_path: Path, model_dir: Path, source: str, **extra) -> dict:
    return {"deviceId": "line-1", "modelDir": str(model_dir), "source": source, "broker": "127.0.0.1:1",
            "stateDir": str(tmp_path / "state"), "confThreshold": 0.01, "decisionThreshold": 0.5,
            "emptySampleRate": 0.0, "randomSampleRate": 0.0, "captureBand": [0.0, 0.0],
            "folderSettleSeconds": 0.0, "healthIntervalSeconds": 0.5, **extra}


def _best_scores(model_dir: Path, images: list[Path]) -> dict[str, float]:
    model, detector = load_verified_model(model_dir), Detector()
    return {p.name: detector.detect(decode_image(p.read_bytes()), model, Thresholds(conf=0.01)).best_score
            for p in images}


def test_every_frame_gets_a_result_and_corrupt_frames_get_an_error_record(mosquitto, tiny_models,
                                                                          tmp_path: Path) -> None:
    images = sample_images(tmp_path / "camera", 6)
    (tmp_path / "camera" / "note.txt").write_text("not an image")
    (tmp_path / "camera" / "cut.jpg").write_bytes(images[0].read_bytes()[:1500])  # half-written by a camera
    shutil.copyfile(images[1], tmp_path / "camera" / "odd-name.jpg_0")
    scores = _best_scores(tiny_models["a"], images)
    config = tmp_path / "device.json"
    threshold = sorted(scores.values())[3]  # some frames will have nothing at or above it
    _write_config(config, **_base_config(tmp_path, tiny_models["a"], str(tmp_path / "camera"),
                                         confThreshold=threshold - 1e-6, decisionThreshold=threshold))
    collector = MqttCollector(mosquitto.port, [DETECTIONS, HEALTH])
    running = Running(config, mosquitto, max_frames=9)
    running.join()
    records = collector.wait_for(DETECTIONS, lambda m: len(m) >= 9)
    health = collector.wait_for(HEALTH, lambda m: m and m[-1]["frames"] == 7)[-1]
    collector.close()
    results = [r for r in records if r["schema"] == "tagqa.detection/1"]
    errors = {r["source_name"]: r for r in records if r["schema"] == "tagqa.frame_error/1"}
    assert len(records) == 9 and len(results) == 7 and len({r["image_id"] for r in results}) == 7
    assert set(errors) == {"note.txt", "cut.jpg"}, "every frame has a record: corrupt ones an error record"
    for error in errors.values():
        validate_frame_error(error)
        assert error["reason"] == "corrupt" and error["kept"] == "quarantine" and error["detail"]
        kept = tmp_path / "state" / "quarantine" / f"{error['image_id']}.json"
        assert json.loads(kept.read_text())["source_name"] == error["source_name"]
    assert {r["source_name"] for r in results} == {p.name for p in images} | {"odd-name.jpg_0"}
    empty = [r for r in results if not r["detections"]]
    assert empty and all(r["verdict"] == "ok" for r in empty), "frames with nothing found are published too"
    assert any(r["verdict"] == "defect" for r in results)
    for r in results:
        assert (r["model_version"], r["dataset_version"]) == ("1", "ds-edge-1")
        assert (r["image_width"], r["image_height"]) == (450, 300) and r["captured"] is None
        for det in r["detections"]:
            x1, y1, x2, y2 = det["box_xyxy"]
            assert 0 <= x1 <= x2 <= 450 and 0 <= y1 <= y2 <= 300 and det["class"] == "scratch"
    assert health["frames_corrupt"] == 2 and health["status"] == "ok" and health["results_buffered"] == 0
    assert health["latency_ms_p50"] > 0 and health["latency_ms_p95"] >= health["latency_ms_p50"]
    assert health["model"]["model_version"] == "1"


def test_auto_band_follows_the_model_cards_test_scores(mosquitto, tiny_models, tmp_path: Path) -> None:
    """``captureBand: "auto"``: the band is the card's test-split score ranks 0.4-0.6 around a threshold at the
    median, so exactly the frames ranked 5th and 6th of 10 are captured as uncertain; health says so."""
    import numpy as np

    from edge_runtime.capture import score_percentiles

    images = sample_images(tmp_path / "camera", 10)
    scores = _best_scores(tiny_models["a"], images)
    percentiles = score_percentiles(list(scores.values()))  # the line is its own "test split" here
    model_dir = copy_model(tiny_models["a"], tmp_path / "model")
    card = json.loads((model_dir / "model_card.json").read_text())
    card["evaluation"] = {"split": "test", "best_score_percentiles": percentiles}
    _write_config(model_dir / "model_card.json", **card)
    low, high = np.percentile(list(scores.values()), [40, 60])
    expected = {name for name, score in scores.items() if low - 1e-6 <= score < high - 1e-6}
    assert len(expected) == 2
    config = tmp_path / "device.json"
    _write_config(config, **_base_config(tmp_path, model_dir, str(tmp_path / "camera"), captureBand="auto",
                                         decisionThreshold=percentiles[10]))
    collector = MqttCollector(mosquitto.port, [DETECTIONS, HEALTH])
    running = Running(config, mosquitto)
    try:
        results = collector.wait_for(DETECTIONS, lambda m: len(m) >= 10)
        health = collector.wait_for(HEALTH, lambda m: m and m[-1]["frames"] >= 10, timeout=30)[-1]
    finally:
        running.stop()
        collector.close()
    assert {r["source_name"] for r in results if r["captured"]} == expected
    assert {r["captured"] for r in results if r["captured"]} == {"uncertain"}
    band = health["model"]["capture_band"]
    assert band["origin"].startswith("auto") and (band["low"], band["high"]) == pytest.approx((low, high), abs=2e-6)


def test_uncertain_and_flagged_frames_reach_the_s3_store(mosquitto, tiny_models, moto_endpoint: str,
                                                         tmp_path: Path) -> None:
    images = sample_images(tmp_path / "camera", 8)
    scores = sorted(_best_scores(tiny_models["a"], images).items(), key=lambda kv: kv[1])
    band = [scores[5][1] - 1e-6, scores[7][1]]  # exactly the 6th and 7th highest are "uncertain"
    bucket = f"tagqa-edge-{int(time.time() * 1000)}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    config = tmp_path / "device.json"
    _write_config(config, **_base_config(tmp_path, tiny_models["a"], str(tmp_path / "camera"), captureBand=band,
                                         uploadPrefix=f"s3://{bucket}/plant-7", s3EndpointUrl=moto_endpoint))
    collector = MqttCollector(mosquitto.port, [DETECTIONS, HEALTH])
    running = Running(config, mosquitto)
    try:
        results = collector.wait_for(DETECTIONS, lambda m: len(m) >= 8)
        captured = {r["source_name"]: r for r in results if r["captured"]}
        assert set(captured) == {scores[5][0], scores[6][0]}
        assert {r["captured"] for r in captured.values()} == {"uncertain"}
        flagged = next(r for r in results if r["source_name"] == scores[0][0])  # confident, never captured
        collector.publish(FEEDBACK, json.dumps({"image_id": flagged["image_id"], "reason": "missed scratch"}).encode())
        collector.publish(FEEDBACK, b"unknown-image-id")
        health = collector.wait_for(HEALTH, lambda m: m and m[-1]["captures_uploaded"] >= 3
                                    and m[-1]["feedback_unknown"] == 1, timeout=30)[-1]
    finally:
        running.stop()
        collector.close()
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"])
    image_keys = [k for k in keys if k.startswith("plant-7/raw/edge-feedback/line-1/")]
    sidecar_keys = [k for k in keys if k.startswith("plant-7/feedback/line-1/")]
    assert len(image_keys) == 3 and len(sidecar_keys) == 3 and len(keys) == 6
    by_source = {}
    for key in sidecar_keys:
        sidecar = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        image_key = "plant-7/" + sidecar["image_key"]
        assert image_key in image_keys and key == "plant-7/" + sidecar["sidecar_key"]
        assert image_key.endswith(f"Z-{sidecar['image_id']}.jpg") and sidecar["result"]["device"] == "line-1"
        by_source[sidecar["result"]["source_name"]] = (sidecar, s3.get_object(Bucket=bucket, Key=image_key))
    sidecar, image = by_source[scores[0][0]]
    assert sidecar["reasons"] == ["operator-feedback"] and sidecar["operator_reason"] == "missed scratch"
    assert image["Body"].read() == (tmp_path / "camera" / scores[0][0]).read_bytes(), "the bytes as captured"
    assert by_source[scores[5][0]][0]["reasons"] == ["uncertain"]
    assert health["feedback_received"] == 2 and health["capture_queue_depth"] == 0


@pytest.mark.slow  # seconds of waiting: in make test, not the quick tier
def test_hot_swap_through_the_config_file_drops_no_frame(mosquitto, tiny_models, tmp_path: Path) -> None:
    sample_images(tmp_path / "camera", 5)
    config = tmp_path / "device.json"
    settings = _base_config(tmp_path, copy_model(tiny_models["a"], tmp_path / "models/v1"),
                            f"loop:{tmp_path / 'camera'}", frameIntervalSeconds=0.02)
    _write_config(config, **settings)
    collector = MqttCollector(mosquitto.port, [DETECTIONS, HEALTH])
    running = Running(config, mosquitto, max_frames=150)
    collector.wait_for(DETECTIONS, lambda m: len(m) >= 30)
    new_dir = copy_model(tiny_models["b"], tmp_path / "models/v2")  # a new folder, then the config points at it
    _write_config(config, **{**settings, "modelDir": str(new_dir)})
    running.join()
    results = collector.wait_for(DETECTIONS, lambda m: len(m) >= 150)
    health = collector.wait_for(HEALTH, lambda m: m and m[-1]["frames"] == 150)[-1]
    collector.close()
    versions = [r["model_version"] for r in results]
    assert len(results) == 150 and len({r["image_id"] for r in results}) == 150, "no frame dropped or doubled"
    switch = versions.index("2")
    assert 30 <= switch < 150 and versions == ["1"] * switch + ["2"] * (150 - switch), "swapped between frames"
    assert {r["dataset_version"] for r in results[switch:]} == {"ds-edge-2"}
    assert health["model_swaps"] == 1 and health["model"]["model_version"] == "2" and health["status"] == "ok"


def test_a_corrupt_model_is_refused_and_reported_then_a_good_one_is_taken(mosquitto, tiny_models,
                                                                          tmp_path: Path) -> None:
    """The watched-model-directory path (`--model DIR`): files change in place."""
    sample_images(tmp_path / "camera", 4)
    model_dir = copy_model(tiny_models["a"], tmp_path / "model")
    config = tmp_path / "device.json"
    settings = _base_config(tmp_path, model_dir, f"loop:{tmp_path / 'camera'}", frameIntervalSeconds=0.03)
    _write_config(config, **settings)
    collector = MqttCollector(mosquitto.port, [DETECTIONS, HEALTH])
    running = Running(config, mosquitto)
    try:
        collector.wait_for(DETECTIONS, lambda m: len(m) >= 5)
        card = json.loads((model_dir / "model_card.json").read_text())
        (model_dir / "model.onnx").write_bytes(b"\x00" * 4096)  # a botched copy
        (model_dir / "model_card.json").write_text(json.dumps({**card, "model_version": "9"}))
        refused = collector.wait_for(HEALTH, lambda m: m and m[-1]["status"] == "error")[-1]
        assert "model refused" in refused["error"] and "sha256" in refused["error"]
        assert refused["model"]["model_version"] == "1" and refused["model_rejections"] == 1
        count = len(collector.json(DETECTIONS))
        served = collector.wait_for(DETECTIONS, lambda m: len(m) >= count + 10)[count:]
        assert {r["model_version"] for r in served} == {"1"}, "the old model keeps serving"
        _write_config(config, **{**settings, "captureBand": [0.9, 0.1]})  # an invalid update
        bad = collector.wait_for(HEALTH, lambda m: "captureBand" in (m[-1]["error"] or ""))[-1]
        assert bad["status"] == "error"
        _write_config(config, **settings)
        shutil.copyfile(tiny_models["b"] / "model.onnx", model_dir / "model.onnx")  # the fix: ONNX first,
        shutil.copyfile(tiny_models["b"] / "model_card.json", model_dir / "model_card.json")  # card last
        healed = collector.wait_for(HEALTH, lambda m: m and m[-1]["model"]["model_version"] == "2"
                                    and m[-1]["status"] == "ok")[-1]
        assert healed["model_swaps"] == 1
    finally:
        running.stop()
        collector.close()


def test_the_runtime_refuses_to_start_without_a_valid_model(tiny_models, tmp_path: Path) -> None:
    from edge_runtime.models import ModelRejected

    broken = copy_model(tiny_models["a"], tmp_path / "m")
    (broken / "model.onnx").write_bytes(b"garbage")
    config = tmp_path / "device.json"
    _write_config(config, **_base_config(tmp_path, broken, str(tmp_path)))
    with pytest.raises(ModelRejected, match="sha256"):
        EdgeRuntime(config_source=FileConfigSource(config), overrides={}, publisher_factory=lambda c: None)
