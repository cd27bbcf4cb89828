"""Edge contracts: model card, result JSON, feedback message, store keys, device configuration."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from edge_runtime.contracts import (
    RESULT_SCHEMA, ContractError, Detection, DetectionResult, ModelCard, capture_name, feedback_image_key,
    feedback_sidecar_key, parse_feedback, resolve_topic, validate_result, verdict_for)
from edge_runtime.device_config import DeviceConfig, DeviceConfigError, json_keys

CARD = {
    "schema": "tagqa.model_card/1", "model_version": "3", "model_id": "ds-2026-11-25-1a2b3c4d",
    "dataset_version": "ds-2026-11-25", "class_names": ["scratch"], "imgsz": 480, "onnx_file": "model.onnx",
    "onnx_sha256": "ab" * 32, "opset": 17,
}
MOMENT = datetime(2026, 11, 25, 16, 33, 25, 123456, tzinfo=timezone.utc)


def test_model_card_round_trips_and_keeps_extra_keys() -> None:
    card = ModelCard.from_dict({**CARD, "metrics": {"map50": 0.61}})
    assert card.imgsz == 480 and card.class_names == ("scratch",)
    assert ModelCard.from_dict(card.to_dict()) == card
    assert card.to_dict()["metrics"] == {"map50": 0.61}


def test_model_card_allows_an_unregistered_model() -> None:
    assert ModelCard.from_dict({**CARD, "model_version": None}).model_version is None


@pytest.mark.parametrize("change, message", [
    ({"schema": "tagqa.model_card/0"}, "'schema'"),  # a future/older card format must not be misread
    ({"imgsz": 500}, "multiple of 32"),  # YOLO strides need multiples of 32
    ({"imgsz": True}, "wrong type"),  # bool is an int in Python; still not a size
    ({"onnx_sha256": "xyz"}, "64 hex"),  # a checksum that can never match
    ({"class_names": []}, "class_names"),  # no classes: nothing to decode
    ({"onnx_file": "../model.onnx"}, "plain"),  # path traversal out of the model directory
    ({"model_id": "a b"}, "model_id"),  # ids end up in topics and keys
    ({"model_version": ""}, "model_version"),  # empty version is neither a version nor null
])
def test_model_card_rejects_bad_values(change: dict, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        ModelCard.from_dict({**CARD, **change})


def test_model_card_missing_key_is_named() -> None:
    data = dict(CARD)
    del data["dataset_version"]
    with pytest.raises(ContractError, match="missing key 'dataset_version'"):
        ModelCard.from_dict(data, source="models/x/model_card.json")


def _result(detections: tuple[Detection, ...], verdict: str) -> DetectionResult:
    return DetectionResult(
        device="line-1", image_id="tag-001-0a1b2c3d4e", timestamp=MOMENT, model_id="m1", model_version="3",
        dataset_version="ds-1", detections=detections, best_score=0.7, latency_ms=12.3456, verdict=verdict,
        image_width=450, image_height=300, source_name="tag-001.jpg", captured=None)


def test_result_json_has_the_contract_fields() -> None:
    det = Detection("scratch", 0, 0.91234567, (10.123, 20.0, 30.5, 40.25))
    data = json.loads(_result((det,), "defect").to_json())
    validate_result(data)
    assert data["schema"] == RESULT_SCHEMA
    assert data["timestamp"] == "2026-11-25T16:33:25.123456Z"
    assert data["detections"] == [{"class": "scratch", "class_id": 0, "score": 0.912346,
                                   "box_xyxy": [10.12, 20.0, 30.5, 40.25]}]
    assert data["captured"] is None and data["model_version"] == "3" and data["dataset_version"] == "ds-1"


def test_empty_result_is_still_a_valid_message() -> None:
    data = json.loads(_result((), "ok").to_json())
    assert validate_result(data)["detections"] == [] and data["verdict"] == "ok"


@pytest.mark.parametrize("scores, threshold, verdict", [
    ([], 0.5, "ok"),  # nothing found: ok, and still published
    ([0.49], 0.5, "ok"),  # below the decision threshold
    ([0.5], 0.5, "defect"),  # the threshold itself counts as a defect
    ([0.1, 0.8], 0.5, "defect"),  # any one box decides
])
def test_verdict(scores: list[float], threshold: float, verdict: str) -> None:
    dets = [Detection("scratch", 0, s, (0, 0, 1, 1)) for s in scores]
    assert verdict_for(dets, threshold) == verdict


def test_validate_result_rejects_a_result_without_model_version() -> None:
    data = json.loads(_result((), "ok").to_json())
    del data["model_version"]
    with pytest.raises(ContractError, match="model_version"):
        validate_result(data)


@pytest.mark.parametrize("payload, image_id, reason", [
    (b'{"image_id": "tag-1-abc", "reason": "missed scratch"}', "tag-1-abc", "missed scratch"),  # full message
    (b'{"image_id": "tag-1-abc"}', "tag-1-abc", "operator-flag"),  # reason is optional
    (b"tag-1-abc", "tag-1-abc", "operator-flag"),  # a PLC sends the bare id
    (b'  "tag-1-abc"\n', "tag-1-abc", "operator-flag"),  # or the id as a JSON string
])
def test_parse_feedback(payload: bytes, image_id: str, reason: str) -> None:
    request = parse_feedback(payload)
    assert (request.image_id, request.reason) == (image_id, reason)


@pytest.mark.parametrize("payload", [
    b"{not json",  # broken JSON
    b'{"reason": "x"}',  # no image id
    b"../../etc/passwd",  # an id that would escape store keys
    b"\xff\xfe",  # not UTF-8
    b"[1, 2]",  # wrong JSON type
])
def test_parse_feedback_rejects(payload: bytes) -> None:
    with pytest.raises(ContractError):
        parse_feedback(payload)


def test_feedback_keys_sort_by_capture_time_and_keep_sidecars_out_of_raw() -> None:
    name = capture_name(MOMENT, "tag-001-0a1b2c3d4e", "jpg")
    assert name == "20261125T163325123456Z-tag-001-0a1b2c3d4e.jpg"
    assert feedback_image_key("line-1", MOMENT, name) == f"raw/edge-feedback/line-1/2026/11/25/{name}"
    assert feedback_sidecar_key("line-1", MOMENT, name) == f"feedback/line-1/2026/11/25/{name}.json"
    later = capture_name(MOMENT.replace(microsecond=123457), "a", "jpg")
    assert sorted([later, name]) == [name, later]


def test_keys_use_utc_dates() -> None:
    from datetime import timedelta

    local = MOMENT.astimezone(timezone(timedelta(hours=10)))  # already the 26th in that zone
    assert feedback_image_key("d", local, "n").startswith("raw/edge-feedback/d/2026/11/25/")
    assert resolve_topic("tagqa/{device}/detections", "line-1") == "tagqa/line-1/detections"


# --------------------------------------------------------------------------- device configuration
def test_config_defaults_round_trip_through_json_keys() -> None:
    config = DeviceConfig.from_mapping({"modelDir": "/m", "deviceId": "line-1"}, source="t")
    assert DeviceConfig.from_mapping(config.to_json_dict(), source="t") == config
    assert set(config.to_json_dict()) == set(json_keys())


def test_config_accepts_snake_case_aliases_and_greengrass_floats() -> None:
    config = DeviceConfig.from_mapping(
        {"conf_threshold": 0.3, "healthIntervalSeconds": 5.0, "queueMaxBytes": 1048576.0,
         "captureBand": [0.2, 0.5], "accessControl": {"aws.greengrass.ipc.mqttproxy": {}}}, source="gg")
    assert config.conf_threshold == 0.3 and config.queue_max_bytes == 1048576
    assert config.capture_band == (0.2, 0.5)


@pytest.mark.parametrize("data, message", [
    ({"confThreshhold": 0.3}, "unknown key 'confThreshhold'"),  # typo must not silently use a default
    ({"confThreshold": 0.3, "conf_threshold": 0.3}, "given twice"),  # ambiguous spelling
    ({"captureBand": [0.7, 0.2]}, "captureBand"),  # inverted band
    ({"captureBand": [0.2]}, "two numbers"),  # malformed band
    ({"decisionThreshold": 1.5}, "between 0 and 1"),  # probability out of range
    ({"queueMaxBytes": 10.5}, "integer"),  # fractional bytes
    ({"topic": "tagqa/+/detections"}, "wildcards"),  # cannot publish to a wildcard
    ({"broker": "localhost"}, "HOST:PORT"),  # missing port
    ({"folderOnRead": "move"}, "'keep' or 'delete'"),  # unsupported mode
    ({"source": 3}, "string"),  # wrong type
    ({"uploadPrefix": "gs://bucket/x"}, "uploadPrefix"),  # a store the device cannot write to
    ({"uploadPrefix": "s3:///x"}, "no bucket"),  # S3 without a bucket
])
def test_config_errors_name_the_key(data: dict, message: str) -> None:
    with pytest.raises(DeviceConfigError, match=message):
        DeviceConfig.from_mapping(data, source="device.json")
