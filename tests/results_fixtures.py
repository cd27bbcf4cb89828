"""Simulated devices for the results collector: valid results built with the edge contract, malformed ones,
a QoS 1 publisher, and a collector process to start and SIGKILL. Used by tests and benchmarks/results_collector.py."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge_runtime.contracts import Detection, DetectionResult  # noqa: E402
from polling import wait_until  # noqa: E402


def result_message(device: str, index: int, when: datetime, *, best: float | None = None,
                   model_version: str = "3", model_id: str = "v0001-abcd1234-0badc0de",
                   precision: str | None = None) -> bytes:
    """The payload a device would publish for its ``index``-th frame (the edge runtime's own class)."""
    score = best if best is not None else ((index * 37) % 100) / 100
    detections = (Detection("scratch", 0, score, (10.0, 20.0, 60.0, 45.0)),) if score >= 0.25 else ()
    return DetectionResult(
        device=device, image_id=f"{device}-{index:08d}", timestamp=when, model_id=model_id,
        model_version=model_version, dataset_version="v0001-abcd1234", detections=detections, best_score=score,
        latency_ms=20.0 + index % 7, verdict="defect" if score >= 0.5 else "ok", image_width=450, image_height=300,
        source_name=f"frame-{index}.jpg", captured="uncertain" if 0.25 <= score < 0.6 else None, precision=precision,
    ).to_json()


def topic_of(device: str) -> str:
    return f"tagqa/{device}/detections"


def malformed_messages(device: str, when: datetime) -> list[tuple[str, bytes, str]]:
    """(topic, payload, expected reject reason) for each kind of bad input the collector must keep."""
    good = result_message(device, 999_999, when)
    return [
        (topic_of(device), good[: len(good) // 2], "truncated"),
        (topic_of(device), good.replace(b"tagqa.detection/1", b"tagqa.detection/9"), "unknown_schema"),
        (topic_of("bad device!"), good.replace(device.encode(), b"bad device!"), "bad_device_id"),
        (topic_of(device), result_message(device, 999_998, when - timedelta(hours=2)), "clock_went_back"),
        (topic_of(device), b"\xff\xfe not json", "not_json"),
        (topic_of(device), result_message(device, 999_997, when + timedelta(hours=1)), "clock_ahead"),
        (topic_of(device), b'["a", "list"]', "not_an_object"),
        (topic_of(device), good.replace(b'"verdict":"', b'"verdict":"maybe-'), "invalid_result"),
    ]


def mqtt_client(port: int, client_id: str):
    """A connected paho MQTT 5 client (network loop in its own thread)."""
    import paho.mqtt.client as mqtt

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


class SimulatedDevices:
    """``devices`` devices, each publishing ``rate`` results per second for ``seconds`` s over one connection each.

    Every publish is QoS 1 and waits for nothing; ``published`` counts PUBACKs. Image ids are
    ``<device>-<index>``, so the expected set is known.
    """

    def __init__(self, port: int, devices: int, rate: float, seconds: float, *, prefix: str = "sim") -> None:
        self.names = [f"{prefix}-{i:03d}" for i in range(devices)]
        self.port, self.rate, self.seconds = port, rate, seconds
        self.published = 0
        self.sent = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._device, args=(n,), daemon=True) for n in self.names]

    def expected(self) -> set[tuple[str, str]]:
        per_device = int(self.rate * self.seconds)
        return {(n, f"{n}-{i:08d}") for n in self.names for i in range(per_device)}

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def _device(self, name: str) -> None:
        client = mqtt_client(self.port, f"{name}-publisher")
        infos = []
        start = time.monotonic()
        for index in range(int(self.rate * self.seconds)):
            delay = start + index / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            infos.append(client.publish(topic_of(name), result_message(name, index, datetime.now(timezone.utc)), qos=1))
            with self._lock:
                self.sent += 1
        for info in infos:
            info.wait_for_publish(120)
        with self._lock:
            self.published += sum(1 for info in infos if info.is_published())
        client.loop_stop()
        client.disconnect()


def start_collector(store: Path, port: int, *, client_id: str, batch_rows: int, batch_seconds: float,
                    log: Path) -> subprocess.Popen:
    """``tagqa results collect`` in its own process, writing into the local store ``store``."""
    env = {**os.environ, "TAGQA_STORE": str(store), "PYTHONPATH": str(REPO)}
    handle = open(log, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tagqa_assets.cli", "results", "collect", "--broker", f"127.0.0.1:{port}",
         "--client-id", client_id, "--batch-rows", str(batch_rows), "--batch-seconds", str(batch_seconds)],
        env=env, stdout=handle, stderr=subprocess.STDOUT, cwd=str(store.parent))


def wait_subscribed(log: Path, timeout: float = 60.0) -> None:
    """Wait until the collector logging to ``log`` has connected and subscribed (its first start has no session yet)."""
    wait_until(lambda: "session present" in (log.read_text(errors="replace") if log.exists() else ""),
               f"the collector logging to {log} to connect and subscribe", timeout, poll=0.1)


def stored_frames(store: Path):
    """Every frame row in the store's parts (no de-duplication) as a Polars frame."""
    import polars as pl

    parts = sorted((store / "results" / "frames").rglob("*.parquet"))
    if not parts:
        return pl.DataFrame({"device": [], "image_id": []}, schema={"device": pl.String, "image_id": pl.String})
    return pl.concat([pl.read_parquet(p, columns=["device", "image_id"]) for p in parts])


def stored_rejects(store: Path):
    """Every reject row in the store's reject parts."""
    import polars as pl

    parts = sorted((store / "results" / "rejects").rglob("*.parquet"))
    return pl.concat([pl.read_parquet(p) for p in parts]) if parts else None
