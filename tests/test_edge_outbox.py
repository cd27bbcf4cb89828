"""The result outbox against a real Mosquitto: order, broker outages, the disk bound, restarts."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge_fixtures import MqttCollector, mosquitto  # noqa: F401
from edge_runtime.outbox import ResultOutbox
from edge_runtime.publishers import MqttPublisher

TOPIC = "tagqa/line-1/detections"


def _payload(i: int) -> bytes:
    return json.dumps({"image_id": f"img-{i:05d}", "pad": "x" * 200}).encode()


def _ids(collector: MqttCollector) -> list[int]:
    return [int(m["image_id"][4:]) for m in collector.json(TOPIC)]


def _wait(predicate, timeout: float = 30.0, what=lambda: "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out {what()}"
        time.sleep(0.05)


def _publisher(broker, name: str = "edge-test") -> MqttPublisher:
    publisher = MqttPublisher("127.0.0.1", broker.port, name)
    publisher.start()
    assert publisher.wait_connected(10)
    return publisher


def test_results_arrive_in_order_while_connected(mosquitto, tmp_path: Path) -> None:
    collector = MqttCollector(mosquitto.port, [TOPIC])
    publisher = _publisher(mosquitto)
    outbox = ResultOutbox(tmp_path / "out", publisher, max_bytes=10**7)
    outbox.start()
    for i in range(300):
        outbox.put(TOPIC, _payload(i))
    _wait(lambda: len(_ids(collector)) >= 300)
    outbox.stop()
    publisher.close()
    collector.close()
    assert _ids(collector) == list(range(300))
    assert outbox.published == 300 and list((tmp_path / "out").iterdir()) == []


def test_broker_outage_buffers_on_disk_and_flushes_in_order(mosquitto, tmp_path: Path) -> None:
    collector = MqttCollector(mosquitto.port, [TOPIC])
    publisher = _publisher(mosquitto)
    outbox = ResultOutbox(tmp_path / "out", publisher, max_bytes=10**7)
    outbox.start()
    for i in range(100):
        outbox.put(TOPIC, _payload(i))
    mosquitto.stop()
    _wait(lambda: not publisher.is_connected(), 10)
    for i in range(100, 600):  # the line keeps running while the broker is down
        outbox.put(TOPIC, _payload(i))
    assert list((tmp_path / "out").glob("seg-*.jsonl")), "results beyond memory must be on disk"
    assert outbox.backlog() >= 450
    mosquitto.start()
    _wait(lambda: len(set(_ids(collector))) >= 600, 60)
    outbox.stop()
    publisher.close()
    collector.close()
    ids = _ids(collector)
    assert sorted(set(ids)) == list(range(600)), "nothing lost"
    first_seen = list(dict.fromkeys(ids))
    assert first_seen == list(range(600)), "delivered in order (a re-sent duplicate may follow a reconnect)"
    assert outbox.evicted == 0 and not list((tmp_path / "out").glob("seg-*.jsonl"))


def test_disk_budget_evicts_the_oldest_results_and_counts_them(mosquitto, tmp_path: Path) -> None:
    collector = MqttCollector(mosquitto.port, [TOPIC], "budget-collector")  # its session queues what comes later
    collector.close()
    mosquitto.wait_for_client_gone("budget-collector")  # its session is in the broker before the broker stops
    mosquitto.stop()
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, "edge-budget")
    publisher.start()
    outbox = ResultOutbox(tmp_path / "out", publisher, max_bytes=40_000)
    outbox.start()
    for i in range(1000):  # ~250 bytes each: far beyond 40 kB
        outbox.put(TOPIC, _payload(i))
    assert outbox.evicted > 0 and outbox.disk_bytes <= 40_000
    mosquitto.start()
    collector = MqttCollector(mosquitto.port, [TOPIC], "budget-collector")
    _wait(lambda: outbox.backlog() == 0, 60)
    _wait(lambda: len(set(_ids(collector))) >= 1000 - outbox.evicted, 30,
          lambda: (collector.session_present, len(_ids(collector)), outbox.evicted, outbox.published,
                   sorted(set(range(1000)) - set(_ids(collector)))[:30]))
    outbox.stop()
    publisher.close()
    collector.close()
    received = sorted(set(_ids(collector)))
    assert 999 in received and 10 not in received  # newest kept, oldest on disk evicted
    assert len(received) + outbox.evicted == 1000  # counts add up: every result delivered or counted
    assert outbox.published == len(received)


def test_unsent_results_survive_a_restart_and_go_first(mosquitto, tmp_path: Path) -> None:
    mosquitto.stop()
    publisher = MqttPublisher("127.0.0.1", mosquitto.port, "edge-restart")
    publisher.start()
    outbox = ResultOutbox(tmp_path / "out", publisher, max_bytes=10**7)
    outbox.start()
    for i in range(40):
        outbox.put(TOPIC, _payload(i))
    outbox.stop(flush_timeout=0.5)  # process exits while offline
    publisher.close()
    assert list((tmp_path / "out").glob("seg-*.jsonl"))
    mosquitto.start()
    collector = MqttCollector(mosquitto.port, [TOPIC])
    publisher = _publisher(mosquitto, "edge-restart")
    outbox = ResultOutbox(tmp_path / "out", publisher, max_bytes=10**7)
    assert outbox.backlog() == 40
    outbox.start()
    for i in range(40, 60):
        outbox.put(TOPIC, _payload(i))
    _wait(lambda: len(_ids(collector)) >= 60)
    outbox.stop()
    publisher.close()
    collector.close()
    assert _ids(collector) == list(range(60))
