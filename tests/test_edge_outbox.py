"""The result outbox against a real Mosquitto: order, broker outages, the disk bound, restarts."""

from __future__ import annotations

import json
from pathlib import Path

from edge_fixtures import MqttCollector, mosquitto  # noqa: F401
from edge_runtime.outbox import ResultOutbox
from edge_runtime.publishers import MqttPublisher
from polling import wait_until

TOPIC = "tagqa/line-1/detections"


def _payload(i: int) -> bytes:
    return json.dumps({"image_id": f"img-{i:05d}", "pad": "x" * 200}).encode()


def _ids(collector: MqttCollector) -> list[int]:
    return [int(m["image_id"][4:]) for m in collector.json(TOPIC)]


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
    wait_until(lambda: len(_ids(collector)) >= 300, "300 results", 30, poll=0.05,
               diagnose=lambda: f"{len(_ids(collector))} delivered")
    outbox.stop()
    publisher.close()
    collector.close()
    assert _ids(collector) == list(range(300))
    assert outbox.published == 300 and list((tmp_path / "out").glob("seg-*")) == []


def test_broker_outage_buffers_on_disk_and_flushes_in_order(mosquitto, tmp_path: Path) -> None:
    collector = MqttCollector(mosquitto.port, [TOPIC])
    publisher = _publisher(mosquitto)
    outbox = ResultOutbox(tmp_path / "out", publisher, max_bytes=10**7)
    outbox.start()
    for i in range(100):
        outbox.put(TOPIC, _payload(i))
    mosquitto.stop()
    wait_until(lambda: not publisher.is_connected(), "the publisher to see the broker gone", 10, poll=0.05)
    for i in range(100, 600):  # the line keeps running while the broker is down
        outbox.put(TOPIC, _payload(i))
    assert list((tmp_path / "out").glob("seg-*.jsonl")), "results beyond memory must be on disk"
    assert outbox.backlog() >= 450
    mosquitto.start()
    wait_until(lambda: len(set(_ids(collector))) >= 600, "600 results", 60, poll=0.05,
               diagnose=lambda: f"{len(set(_ids(collector)))} delivered")
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
    wait_until(lambda: outbox.backlog() == 0, "an empty backlog", 60, poll=0.05,
               diagnose=lambda: f"backlog {outbox.backlog()}")
    wait_until(lambda: len(set(_ids(collector))) >= 1000 - outbox.evicted, "every result not evicted", 30, poll=0.05,
               diagnose=lambda: str((collector.session_present, len(_ids(collector)), outbox.evicted, outbox.published,
                                     sorted(set(range(1000)) - set(_ids(collector)))[:30])))
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
    wait_until(lambda: len(_ids(collector)) >= 60, "60 results", 30, poll=0.05,
               diagnose=lambda: f"{len(_ids(collector))} delivered")
    outbox.stop()
    publisher.close()
    collector.close()
    assert _ids(collector) == list(range(60))


def test_crash_leftovers_do_not_kill_the_sender(mosquitto, tmp_path: Path) -> None:
    """Issue 15.3: a 0-byte segment made the next one reuse its name (deleted while written: the sender died);
    a cut-off last line was counted as buffered forever. Both as a crash leaves them."""
    out = tmp_path / "out"
    out.mkdir()
    lines = [json.dumps({"seq": i, "topic": TOPIC, "payload": _payload(i - 1).decode()}) for i in (1, 2, 3)]
    (out / "seg-0000000000000001.jsonl").write_text("\n".join(lines) + "\n" + '{"seq": 4, "topic": "tag')
    (out / "seg-0000000000000004.jsonl").write_bytes(b"")
    collector = MqttCollector(mosquitto.port, [TOPIC])
    publisher = _publisher(mosquitto)
    outbox = ResultOutbox(out, publisher, max_bytes=100_000)  # 12.5 kB segments
    assert outbox.backlog() == 3 and outbox.corrupt_lines == 1
    outbox.start()
    for i in range(3, 200):  # several segments' worth, the first one under the leftover's name
        outbox.put(TOPIC, _payload(i))
    wait_until(lambda: len(set(_ids(collector))) >= 200, "200 results", 60, poll=0.05,
               diagnose=lambda: f"{len(set(_ids(collector)))} of 200 delivered")
    wait_until(lambda: outbox.backlog() == 0, "an empty backlog", 30, poll=0.05,
               diagnose=lambda: f"backlog {outbox.backlog()}")
    assert not outbox.faults.reasons(), "the sender and committer never crashed"
    outbox.stop(flush_timeout=30)
    publisher.close()
    collector.close()
    assert sorted(set(_ids(collector))) == list(range(200))
    assert list(out.glob("seg-*.jsonl")) == [], "every acknowledged segment deleted"


_WRITER = """
import sys, json
from edge_runtime.outbox import ResultOutbox
from edge_runtime.publishers import MqttPublisher
publisher = MqttPublisher("127.0.0.1", int(sys.argv[2]), "edge-writer")  # a dead port: the broker is down
outbox = ResultOutbox(sys.argv[1], publisher, max_bytes=10**6)  # 125 kB segments
outbox.start()
i = int(sys.argv[3])
while True:
    outbox.put("tagqa/line-1/detections", json.dumps({"image_id": f"img-{i:05d}", "pad": "x" * 200}).encode())
    print(i, flush=True)  # only after put returned
    i += 1
"""


def test_results_survive_sigkill_at_any_moment_of_writing(mosquitto, tmp_path: Path) -> None:
    """A writer process killed with SIGKILL three times at arbitrary moments: every result whose put returned
    is delivered afterwards (cut-off lines and fresh segments left by the kills are repaired)."""
    import random
    import signal
    import subprocess
    import sys

    from edge_fixtures import REPO, free_port

    out, dead_port, confirmed, start = tmp_path / "out", free_port(), [], 0
    for round_ in range(3):
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(out), str(dead_port), str(start)],
                                  cwd=REPO, stdout=subprocess.PIPE, text=True)
        target = random.Random(round_).randint(150, 400)
        for line in writer.stdout:
            confirmed.append(int(line))
            if len(confirmed) - start >= target:
                break
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
        confirmed.extend(int(line) for line in writer.stdout.read().split())
        start = confirmed[-1] + 1
    collector = MqttCollector(mosquitto.port, [TOPIC])
    publisher = _publisher(mosquitto)
    outbox = ResultOutbox(out, publisher, max_bytes=10**8)
    outbox.start()
    wait_until(lambda: outbox.backlog() == 0, "an empty backlog", 120, poll=0.05,
               diagnose=lambda: f"backlog {outbox.backlog()}")
    wait_until(lambda: set(confirmed) <= set(_ids(collector)), "every confirmed result", 60, poll=0.05,
               diagnose=lambda: f"missing {sorted(set(confirmed) - set(_ids(collector)))[:10]}")
    outbox.stop()
    publisher.close()
    collector.close()
    first_seen = list(dict.fromkeys(_ids(collector)))
    assert first_seen == sorted(first_seen), "in order"


_ACKED_WRITER = """
import sys, json, time
from edge_runtime.outbox import ResultOutbox
from edge_runtime.publishers import MqttPublisher
publisher = MqttPublisher("127.0.0.1", int(sys.argv[2]), "edge-acked-writer")
publisher.start()
publisher.wait_connected(30)
outbox = ResultOutbox(sys.argv[1], publisher, max_bytes=10**7)
outbox.start()
for i in range(300):
    outbox.put("tagqa/line-1/detections", json.dumps({"image_id": f"img-{i:05d}", "pad": "x" * 200}).encode())
while outbox.backlog():
    time.sleep(0.05)
time.sleep(1.5)  # a few commit rounds: the acknowledgement watermark is on disk
print("acked", flush=True)
time.sleep(3600)
"""


def test_a_restart_resends_only_what_was_not_acknowledged(mosquitto, tmp_path: Path) -> None:
    """Killed with everything acknowledged, a restarted outbox must not publish its open segment again."""
    import signal
    import subprocess
    import sys

    from edge_fixtures import REPO

    out = tmp_path / "out"
    first = MqttCollector(mosquitto.port, [TOPIC])
    writer = subprocess.Popen([sys.executable, "-c", _ACKED_WRITER, str(out), str(mosquitto.port)], cwd=REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "acked"
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(30)
    assert sorted(set(_ids(first))) == list(range(300))
    first.close()
    assert list(out.glob("seg-*.jsonl")), "the open segment is still on disk after the kill"
    collector = MqttCollector(mosquitto.port, [TOPIC])
    publisher = _publisher(mosquitto, "edge-acked-writer")
    outbox = ResultOutbox(out, publisher, max_bytes=10**7)
    outbox.start()
    outbox.put(TOPIC, _payload(300))
    wait_until(lambda: 300 in _ids(collector), "result 300", 30, poll=0.05)
    outbox.stop()
    publisher.close()
    collector.close()
    assert _ids(collector) == [300], "nothing acknowledged before the kill was sent again"
