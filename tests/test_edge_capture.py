"""Active-learning capture: the policy, the frame ring, the durable disk-budgeted queue, operator feedback."""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from edge_runtime.capture import FIXED_BAND, CapturePolicy, FrameRing, RingEntry, effective_band, rank_band, score_percentiles
from edge_runtime.device_config import DeviceConfig, DeviceConfigError
from edge_runtime.capture_queue import PRIORITY_AUTOMATIC, PRIORITY_OPERATOR, CaptureQueue
from edge_runtime.feedback import FeedbackHandler, build_sidecar
from edge_runtime.metrics import RuntimeMetrics

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=timezone.utc)
JPEG = b"\xff\xd8\xff" + b"\x00" * 997  # 1000 bytes recognised as JPEG by content


@pytest.mark.parametrize("best, has_detections, empty_rate, random_rate, reason", [
    (0.40, True, 0.0, 0.0, "uncertain"),  # inside the band [0.25, 0.6)
    (0.25, True, 0.0, 0.0, "uncertain"),  # the band includes its low edge
    (0.60, True, 0.0, 0.0, None),  # ... but not its high edge: confident enough
    (0.10, False, 1.0, 0.0, "empty-sample"),  # nothing found, sampled
    (0.10, False, 0.0, 0.0, None),  # nothing found, sampling off
    (0.95, True, 1.0, 0.0, None),  # the empty-image rate never applies to images with boxes
    (0.95, True, 0.0, 1.0, "random-sample"),  # random sample of the confident rest
])
def test_capture_policy(best, has_detections, empty_rate, random_rate, reason) -> None:
    policy = CapturePolicy((0.25, 0.6), empty_rate, random_rate)
    assert policy.decide(best, has_detections, random.Random(0)) == reason


EVEN = [i / 20 for i in range(21)]  # a model whose test frames score evenly from 0 to 1


@pytest.mark.parametrize("percentiles, threshold, share, band", [
    (EVEN, 0.5, 0.2, (0.4, 0.6)),  # the threshold's rank is 0.5: ranks 0.4-0.6 around it
    (EVEN, 0.95, 0.2, (0.8, 1.0)),  # shifted inwards at the top; the top end takes every higher score
    (EVEN, 0.02, 0.2, (0.0, 0.2)),  # ... and at the bottom, from 0
    ([0.3 + 0.65 * i / 20 for i in range(21)], 0.5, 0.2, (0.435, 0.565)),  # threshold at rank 0.2/0.65
    ([0.01 + 0.12 * i / 20 for i in range(21)], 0.5, 0.2, (0.106, 1.0)),  # a young model: its top fifth
    ([0.0] * 10 + [0.9] * 11, 0.5, 0.2, (0.0, 0.9)),  # a step at the threshold: the window straddles it
])
def test_rank_band_centres_a_share_of_the_models_test_frames_on_the_threshold(percentiles, threshold, share,
                                                                              band) -> None:
    assert rank_band(percentiles, threshold, share) == pytest.approx(band)


def test_rank_band_holds_the_share_of_a_line_like_the_test_split() -> None:
    rng = random.Random(3)
    test = [rng.betavariate(0.6, 0.8) for _ in range(400)]
    line = [rng.betavariate(0.6, 0.8) for _ in range(20000)]
    for threshold in (0.1, 0.5, 0.9):
        low, high = rank_band(score_percentiles(test), threshold, 0.2)
        share = sum(low <= s < high for s in line) / len(line)
        assert 0.17 < share < 0.23, (threshold, low, high, share)


@pytest.mark.parametrize("percentiles, share", [([0.5], 0.2), ([0.6, 0.5], 0.2), (EVEN, 0.0), (EVEN, 1.5)])
def test_rank_band_refuses_what_is_not_a_score_profile(percentiles, share) -> None:
    with pytest.raises(ValueError):
        rank_band(percentiles, 0.5, share)


def test_effective_band_uses_the_cards_percentiles_or_says_why_not() -> None:
    card = {"evaluation": {"split": "test", "best_score_percentiles": EVEN}}
    assert effective_band("auto", card, 0.5, 0.2)[0] == pytest.approx((0.4, 0.6))
    assert effective_band("auto", card, 0.5, 0.2)[1].startswith("auto")
    assert effective_band((0.1, 0.3), card, 0.5, 0.2) == ((0.1, 0.3), "configured")
    band, origin = effective_band("auto", {}, 0.5, 0.2)
    assert band == FIXED_BAND and "no test-split score percentiles" in origin
    band, origin = effective_band("auto", {"evaluation": {"best_score_percentiles": [0.9, 0.1]}}, 0.5, 0.2)
    assert band == FIXED_BAND and "unusable" in origin


def test_score_percentiles_are_numpys() -> None:
    import numpy as np

    scores = [random.Random(1).random() for _ in range(37)]
    assert score_percentiles(scores) == pytest.approx(np.percentile(scores, np.linspace(0, 100, 21)), abs=1e-6)


@pytest.mark.parametrize("raw, error", [("autos", "captureBand"), ([0.2], "two numbers"), (0.3, "two numbers")])
def test_capture_band_is_auto_or_two_numbers(raw, error) -> None:
    assert DeviceConfig().capture_band == "auto" and DeviceConfig().capture_share == 0.2
    assert DeviceConfig.from_mapping({"captureBand": "auto", "captureShare": 0.3}, source="d").capture_share == 0.3
    with pytest.raises(DeviceConfigError, match=error):
        DeviceConfig.from_mapping({"captureBand": raw}, source="d")
    with pytest.raises(DeviceConfigError, match="captureShare"):
        DeviceConfig.from_mapping({"captureShare": 1.5}, source="d")


def test_sample_rates_are_respected_statistically() -> None:
    policy, rng = CapturePolicy((0.0, 0.0), 0.2, 0.0), random.Random(7)
    taken = sum(policy.decide(0.1, False, rng) is not None for _ in range(5000))
    assert 900 < taken < 1100  # 20 % of 5000, well outside chance of failing


def test_ring_keeps_only_the_last_frames() -> None:
    ring = FrameRing(3)
    for i in range(5):
        ring.add(RingEntry(f"img-{i}", T0, JPEG, {}))
    assert ring.get("img-1") is None and ring.get("img-4") is not None and len(ring) == 3
    ring.resize(1)
    assert ring.get("img-3") is None and ring.get("img-4") is not None


def _entry(i: int, captured: str | None = "uncertain") -> RingEntry:
    return RingEntry(f"img-{i}", T0 + timedelta(seconds=i), JPEG, {"image_id": f"img-{i}", "captured": captured})


def _put(queue: CaptureQueue, i: int, priority: int = PRIORITY_AUTOMATIC) -> str:
    name, data, sidecar = build_sidecar("line-1", _entry(i), ["uncertain"], None)
    assert queue.put(name, data, sidecar, priority=priority)
    return name


def test_sidecar_names_keys_and_reasons() -> None:
    name, data, sidecar = build_sidecar("line-1", _entry(3), ["uncertain", "operator-feedback"], "missed it")
    assert name == "20261125T080003000000Z-img-3.jpg" and data == JPEG
    assert sidecar["image_key"] == f"raw/edge-feedback/line-1/2026/11/25/{name}"
    assert sidecar["sidecar_key"] == f"feedback/line-1/2026/11/25/{name}.json"
    assert sidecar["reason"] == "operator-feedback" and sidecar["operator_reason"] == "missed it"
    assert sidecar["content_type"] == "image/jpeg" and sidecar["result"]["image_id"] == "img-3"


def test_queue_serves_operator_items_first_then_oldest(tmp_path: Path) -> None:
    queue = CaptureQueue(tmp_path, 10**6)
    names = [_put(queue, i) for i in (2, 0, 1)]
    flagged = _put(queue, 5, PRIORITY_OPERATOR)
    order = []
    while (item := queue.peek()) is not None:
        order.append(item.name)
        queue.remove(item)
    assert order == [flagged, names[1], names[2], names[0]]


def test_queue_survives_a_restart_and_drops_half_written_items(tmp_path: Path) -> None:
    queue = CaptureQueue(tmp_path, 10**6)
    kept = _put(queue, 1)
    (tmp_path / "1-20261125T090000000000Z-img-9.jpg").write_bytes(JPEG)  # crash before its sidecar
    (tmp_path / "1-x.jpg.json.tmp").write_bytes(b"{")  # crash while writing a sidecar
    reopened = CaptureQueue(tmp_path, 10**6)
    assert reopened.depth == 1 and reopened.peek().name == kept
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"1-{kept}", f"1-{kept}.json"]
    image, sidecar = reopened.read(reopened.peek())
    assert image == JPEG and json.loads(sidecar)["image_id"] == "img-1"


def test_budget_evicts_oldest_automatic_items_first_and_counts_them(tmp_path: Path) -> None:
    one = len(JPEG) + len(json.dumps(build_sidecar("line-1", _entry(0), ["uncertain"], None)[2], indent=1))
    queue = CaptureQueue(tmp_path, int(one * 3.5))  # room for three items
    flagged = _put(queue, 0, PRIORITY_OPERATOR)
    names = [_put(queue, i) for i in range(1, 6)]
    assert queue.evicted == 3 and queue.depth == 3
    remaining = set()
    while (item := queue.peek()) is not None:
        remaining.add(item.name)
        queue.remove(item)
    assert remaining == {flagged, names[3], names[4]}  # the flagged frame outlives newer automatic ones
    assert queue.bytes == 0 and list(tmp_path.iterdir()) == []


def test_an_item_larger_than_the_budget_is_counted_not_stored(tmp_path: Path) -> None:
    queue = CaptureQueue(tmp_path, 100)
    name, data, sidecar = build_sidecar("line-1", _entry(1), ["uncertain"], None)
    assert not queue.put(name, data, sidecar, priority=PRIORITY_AUTOMATIC)
    assert queue.evicted == 1 and queue.depth == 0


def test_feedback_requeues_a_captured_frame_with_priority_and_both_reasons(tmp_path: Path) -> None:
    queue, ring, metrics = CaptureQueue(tmp_path, 10**6), FrameRing(8), RuntimeMetrics()
    entry = _entry(4)
    ring.add(entry)
    name = _put(queue, 4)
    handler = FeedbackHandler(ring=ring, captures=queue, metrics=metrics, device=lambda: "line-1")
    assert handler.handle(b'{"image_id": "img-4", "reason": "false alarm"}')
    item = queue.peek()
    assert (item.name, item.priority, queue.depth) == (name, PRIORITY_OPERATOR, 1)
    sidecar = json.loads(queue.read(item)[1])
    assert sidecar["reasons"] == ["uncertain", "operator-feedback"] and sidecar["operator_reason"] == "false alarm"


@pytest.mark.parametrize("payload, counter", [
    (b"img-99", "feedback_unknown"),  # older than the ring (or never seen)
    (b'{"image_id": ', "feedback_invalid"),  # malformed message
])
def test_feedback_that_cannot_be_served_is_counted(tmp_path: Path, payload: bytes, counter: str) -> None:
    metrics = RuntimeMetrics()
    handler = FeedbackHandler(ring=FrameRing(4), captures=CaptureQueue(tmp_path, 10**6), metrics=metrics,
                              device=lambda: "line-1")
    assert not handler.handle(payload)
    assert getattr(metrics, counter) == 1 and metrics.feedback_received == 1


def test_ring_is_bounded_by_bytes_as_well_as_by_count() -> None:
    """Large frames: the ring keeps as many as fit its byte budget (the newest one always)."""
    from datetime import datetime, timezone

    from edge_runtime.capture import FrameRing, RingEntry

    ring = FrameRing(64, max_bytes=3_000_000)
    now = datetime.now(timezone.utc)
    for i in range(10):
        ring.add(RingEntry(f"big-{i}", now, b"x" * 1_000_000, {}))
    assert len(ring) == 3 and ring.get("big-9") and not ring.get("big-6") and ring.bytes == 3_000_000
    ring.add(RingEntry("huge", now, b"x" * 5_000_000, {}))
    assert len(ring) == 1 and ring.get("huge")
