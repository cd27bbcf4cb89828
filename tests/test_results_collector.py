"""The results collector: message validation, and a real Mosquitto with a collector killed by SIGKILL mid-stream."""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edge_fixtures import mosquitto  # noqa: F401
from polling import wait_until
from results_fixtures import (
    SimulatedDevices,
    malformed_messages,
    mqtt_client,
    result_message,
    start_collector,
    stored_frames,
    stored_rejects,
    topic_of,
    wait_subscribed,
)
from tagqa_assets.contracts.results import RejectedResult, decode_result
from tagqa_assets.monitoring.collector import CollectorSettings, ResultsCollector
from tagqa_assets.storage import LocalObjectStore

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def test_a_valid_result_becomes_one_row_and_unknown_fields_are_kept():
    payload = result_message("line-1", 7, NOW).replace(b'"captured"', b'"error":null,"future_field":[1,2],"captured"')
    frame = decode_result("tagqa/line-1/detections", payload, NOW)
    assert (frame.device, frame.image_id, frame.timestamp) == ("line-1", "line-1-00000007", NOW)
    assert frame.row["model_version"] == "3" and frame.row["dataset_version"] == "v0001-abcd1234"
    assert frame.row["extra"] == '{"error":null,"future_field":[1,2]}'


@pytest.mark.parametrize("topic, payload, reason", malformed_messages("line-1", NOW),
                         ids=lambda value: value if isinstance(value, str) and " " not in value else None)
def test_malformed_messages_are_rejected_with_their_reason(topic, payload, reason, tmp_path: Path):
    # The clock check needs the collector's memory of the device: run each through one.
    collector = ResultsCollector(LocalObjectStore(tmp_path / "store"), CollectorSettings(), now=lambda: NOW)
    collector.accept(topic_of("line-1"), result_message("line-1", 1, NOW))
    collector.accept(topic, payload)
    assert collector.stats.rejected == {reason: 1}


@pytest.mark.parametrize("cut", [1, 10, 57, 120, -2])
def test_a_message_cut_anywhere_is_truncated(cut):
    payload = result_message("line-1", 1, NOW)
    with pytest.raises(RejectedResult) as caught:
        decode_result("tagqa/line-1/detections", payload[:cut], NOW)
    assert caught.value.reason == "truncated"


def test_a_device_error_record_is_kept_as_a_frame_error_reject():
    # The device could not inspect the frame (edge_runtime.contracts.FrameError): accounted for, not a row.
    payload = json.dumps({"schema": "tagqa.frame_error/1", "device": "line-1", "image_id": "tag-7-0123456789",
                          "timestamp": "2026-12-03T12:00:00Z", "source_name": "tag-7.jpg", "reason": "corrupt",
                          "detail": "cannot identify image file", "model_id": "m1", "model_version": "3",
                          "kept": "quarantine"}).encode()
    with pytest.raises(RejectedResult) as caught:
        decode_result("tagqa/line-1/detections", payload, NOW)
    assert caught.value.reason == "frame_error"
    assert "line-1/tag-7-0123456789 (tag-7.jpg): corrupt" in caught.value.detail


def test_device_in_topic_and_payload_must_agree():
    with pytest.raises(RejectedResult) as caught:
        decode_result("tagqa/line-2/detections", result_message("line-1", 1, NOW), NOW)
    assert caught.value.reason == "device_mismatch"


def test_restart_remembers_only_parts_written_shortly_before_the_newest(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    clock = [NOW]
    collector = ResultsCollector(store, CollectorSettings(restore_minutes=30), now=lambda: clock[0])
    collector.accept(topic_of("line-1"), result_message("line-1", 1, NOW))
    collector.flush(acknowledge=False)
    clock[0] = NOW + timedelta(hours=2)  # the next part is written two hours later
    collector.accept(topic_of("line-1"), result_message("line-1", 2, NOW + timedelta(hours=2)))
    collector.flush(acknowledge=False)
    restarted = ResultsCollector(store, CollectorSettings(restore_minutes=30), now=lambda: clock[0])
    assert restarted.restore_window() == 1  # image 2 only: image 1's part is older than the horizon


def test_duplicates_in_one_batch_and_across_flushes_are_dropped(tmp_path: Path):
    store = LocalObjectStore(tmp_path / "store")
    collector = ResultsCollector(store, CollectorSettings(), now=lambda: NOW)
    for index in (1, 2, 1):
        collector.accept(topic_of("line-1"), result_message("line-1", index, NOW))
    collector.flush(acknowledge=False)
    restarted = ResultsCollector(store, CollectorSettings(), now=lambda: NOW)
    assert restarted.restore_window() == 2
    restarted.accept(topic_of("line-1"), result_message("line-1", 2, NOW))
    restarted.accept(topic_of("line-1"), result_message("line-1", 3, NOW))
    restarted.flush(acknowledge=False)
    rows = stored_frames(store.root)
    assert sorted(rows["image_id"].to_list()) == ["line-1-00000001", "line-1-00000002", "line-1-00000003"]
    assert (collector.stats.duplicates, restarted.stats.duplicates) == (1, 1)
    parts = sorted(p.relative_to(store.root).as_posix() for p in store.root.rglob("*.parquet"))
    assert all(p.startswith("results/frames/2026/12/03/line-1/part-20261203T120000") for p in parts), parts


@pytest.mark.slow
def test_sigkill_mid_stream_loses_nothing_and_duplicates_are_dropped(mosquitto, tmp_path: Path):  # noqa: F811
    store = tmp_path / "store"
    store.mkdir()
    log = tmp_path / "collector.log"
    options = dict(client_id="results-under-test", batch_rows=200, batch_seconds=0.5, log=log)
    collector = start_collector(store, mosquitto.port, **options)
    try:
        wait_subscribed(log)
        devices = SimulatedDevices(mosquitto.port, devices=5, rate=40, seconds=6)
        devices.start()
        wait_until(lambda: len(stored_frames(store)) >= 200, "the first parts", 30, poll=0.2)
        collector.send_signal(signal.SIGKILL)
        collector.wait(10)
        time.sleep(1.0)  # results keep coming while the collector is dead: the broker queues them
        # A device replaying its outbox after a reconnect sends results the store already has.
        replay = mqtt_client(mosquitto.port, "replaying-device")
        first = stored_frames(store).row(0)
        index = int(first[1].rsplit("-", 1)[1])
        replay.publish(topic_of(first[0]), result_message(first[0], index, datetime.now(timezone.utc)), qos=1).wait_for_publish(10)
        for topic, payload, _ in malformed_messages("sim-000", datetime.now(timezone.utc) - timedelta(seconds=1))[:3]:
            replay.publish(topic, payload, qos=1).wait_for_publish(10)
        collector = start_collector(store, mosquitto.port, **options)
        devices.join()
        assert devices.published == devices.sent == 5 * 40 * 6
        expected = devices.expected()
        wait_until(lambda: len(stored_frames(store)) >= len(expected), f"{len(expected)} frames in the store", 60,
                   poll=0.2)
        time.sleep(1.5)  # anything still to come (a duplicate) would arrive within a flush or two
        rows = stored_frames(store)
        keys = list(zip(rows["device"].to_list(), rows["image_id"].to_list()))
        assert set(keys) == expected, f"lost: {len(expected - set(keys))}"
        assert len(keys) == len(expected), f"{len(keys) - len(expected)} duplicate rows"
        rejects = stored_rejects(store)
        assert rejects is not None and sorted(rejects["reason"].to_list()) == ["bad_device_id", "truncated",
                                                                                "unknown_schema"]
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(20)
    assert "collector stopped" in log.read_text()


@pytest.mark.slow
def test_a_store_that_refuses_writes_loses_nothing_once_it_recovers(mosquitto, tmp_path: Path):  # noqa: F811
    store = tmp_path / "store"
    (store / "results").mkdir(parents=True)
    (store / "results" / "frames").write_text("a file where the frames folder must be")  # every write fails
    log = tmp_path / "collector.log"
    collector = start_collector(store, mosquitto.port, client_id="refused-writes", batch_rows=20, batch_seconds=0.3,
                                log=log)
    try:
        wait_subscribed(log)
        client = mqtt_client(mosquitto.port, "line-9-device")
        now = datetime.now(timezone.utc)
        for index in range(30):
            client.publish(topic_of("line-9"), result_message("line-9", index, now), qos=1).wait_for_publish(10)
        wait_until(lambda: "writing results into" in log.read_text(errors="replace"), "the failed write", 30,
                   poll=0.2)
        (store / "results" / "frames").unlink()
        wait_until(lambda: len(stored_frames(store)) >= 30, "the redelivered results", 60, poll=0.2)
        time.sleep(1.0)
        rows = stored_frames(store)
        assert sorted(rows["image_id"].to_list()) == [f"line-9-{i:08d}" for i in range(30)]
        assert collector.poll() is None, "the collector must survive a failed write"
        client.loop_stop()
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(20)


def test_a_batch_of_qos0_messages_is_due_by_count_too(tmp_path: Path):
    # A device publishing with QoS 0 gets its results delivered with QoS 0: nothing to acknowledge, still written.
    collector = ResultsCollector(LocalObjectStore(tmp_path / "store"), CollectorSettings(batch_rows=3), now=lambda: NOW)
    for index in range(3):
        assert not collector.due()
        collector.accept(topic_of("line-1"), result_message("line-1", index, NOW), mid=0, qos=0)
    assert collector.due()


@pytest.mark.slow
def test_the_collector_reconnects_after_the_broker_restarts(mosquitto, tmp_path: Path):  # noqa: F811
    store = tmp_path / "store"
    store.mkdir()
    log = tmp_path / "collector.log"
    collector = start_collector(store, mosquitto.port, client_id="broker-restart", batch_rows=1000, batch_seconds=2.0,
                                log=log)
    try:
        wait_subscribed(log)
        now = datetime.now(timezone.utc)
        client = mqtt_client(mosquitto.port, "line-5-device")
        for index in range(100):
            client.publish(topic_of("line-5"), result_message("line-5", index, now), qos=1).wait_for_publish(10)
        client.loop_stop()
        client.disconnect()
        mosquitto.stop()  # the batch is not written yet (2 s): its acknowledgements die with the connection
        time.sleep(0.5)
        mosquitto.start()
        wait_until(lambda: log.read_text(errors="replace").count("session present: True") >= 1, "the reconnection",
                   60, poll=0.2)
        client = mqtt_client(mosquitto.port, "line-5-device")
        for index in range(100, 200):
            client.publish(topic_of("line-5"), result_message("line-5", index, now), qos=1).wait_for_publish(10)
        client.loop_stop()
        wait_until(lambda: len(stored_frames(store)) >= 200, "200 results", 60, poll=0.2)
        time.sleep(2.5)
        rows = stored_frames(store)
        assert sorted(rows["image_id"].to_list()) == [f"line-5-{i:08d}" for i in range(200)]
    finally:
        collector.send_signal(signal.SIGTERM)
        collector.wait(20)
