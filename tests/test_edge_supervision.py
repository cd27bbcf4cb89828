"""Every long-lived thread of the runtime is supervised: an exception injected into each one (through the
runtime's seams) is logged with its item, shows as `degraded` in health with the reason, the thread is
restarted and health returns to `ok`; every frame still gets its record (the line never stalls)."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from edge_fixtures import MqttCollector, mosquitto, sample_images, tiny_models  # noqa: F401
from edge_runtime.config_sources import NoConfigSource
from edge_runtime.detector import Detector
from edge_runtime.imaging import encode_jpeg
from edge_runtime.publishers import MqttPublisher
from edge_runtime.service import EdgeRuntime
from edge_runtime.sources import FolderSource
from edge_runtime.stores import LocalFolderStore

DETECTIONS = "tagqa/line-1/detections"
FRAMES = 10


class InjectedFault(RuntimeError):
    pass


def once(function, name: str):
    """``function``, except that its first call raises InjectedFault."""
    state = {"armed": True}

    def wrapper(*args, **kwargs):
        if state["armed"]:
            state["armed"] = False
            raise InjectedFault(f"injected into {name}")
        return function(*args, **kwargs)

    return wrapper


class CrashingFolderSource(FolderSource):
    """A folder source whose first opening raises after its second frame."""

    crashed = False

    def frames(self, stop):
        for count, frame in enumerate(super().frames(stop), 1):
            yield frame
            if count == 2 and not CrashingFolderSource.crashed:
                CrashingFolderSource.crashed = True
                raise InjectedFault("injected into frame-source")


class FaultyDetector(Detector):
    """Raises on the third frame (inside a worker)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def detect(self, image, model, thresholds):
        self.calls += 1
        if self.calls == 3:
            raise InjectedFault("injected into frame-workers")
        return super().detect(image, model, thresholds)


class FaultyPublisher(MqttPublisher):
    """A real MQTT publisher whose third publish raises (on the result sender's thread)."""

    calls = 0

    def publish(self, topic, payload, *, qos=1):
        if topic == DETECTIONS:
            FaultyPublisher.calls += 1
            if FaultyPublisher.calls == 3:
                raise InjectedFault("injected into result-sender")
        return super().publish(topic, payload, qos=qos)


class PixelFolderSource(FolderSource):
    """Frames as decoded pixels (as a camera delivers them), so the worker encodes them for capture."""

    def frames(self, stop):
        from edge_runtime.imaging import decode_image

        for frame in super().frames(stop):
            frame.pixels, frame.data = decode_image(frame.data), None
            yield frame


THREADS = ["frame-source", "frame-workers", "frame-encode", "frame-sink", "result-sender", "result-committer", "capture-writer",
           "capture-uploader"]


@pytest.mark.slow  # seconds of waiting: in make test, not the quick tier
@pytest.mark.parametrize("thread", THREADS)
def test_a_crashed_thread_is_logged_restarted_and_reported_until_it_recovers(
        thread: str, mosquitto, tiny_models, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    CrashingFolderSource.crashed, FaultyPublisher.calls = False, 0
    folder = tmp_path / "in"
    folder.mkdir()
    publisher_class = FaultyPublisher if thread == "result-sender" else MqttPublisher
    runtime = EdgeRuntime(
        config_source=NoConfigSource(),
        overrides={"deviceId": "line-1", "modelDir": str(tiny_models["a"]), "source": f"folder:{folder}",
                   "stateDir": str(tmp_path / "state"), "folderOnRead": "delete", "folderSettleSeconds": 0.0,
                   "randomSampleRate": 1.0, "captureBand": [0.0, 0.0], "uploadPrefix": str(tmp_path / "store"),
                   "healthIntervalSeconds": 0.5},
        publisher_factory=lambda c: publisher_class("127.0.0.1", mosquitto.port, "edge-line-1"),
        store_factory=lambda c: LocalFolderStore(tmp_path / "store"),
        source_factory={"frame-source": lambda c: CrashingFolderSource(folder, on_read="delete", settle_seconds=0.0),
                        "frame-encode": lambda c: PixelFolderSource(folder, on_read="delete", settle_seconds=0.0),
                        }.get(thread),
        detector=FaultyDetector() if thread == "frame-workers" else None,
        frame_encoder=once(encode_jpeg, "frame-workers") if thread == "frame-encode" else None)
    if thread == "frame-sink":
        runtime.ring.add = once(runtime.ring.add, thread)
    elif thread == "result-committer":
        runtime.outbox._fsync = once(os.fsync, thread)
    elif thread == "capture-writer":
        runtime.captures.put = once(runtime.captures.put, thread)
    elif thread == "capture-uploader":
        runtime.captures.read = once(runtime.captures.read, thread)
    collector = MqttCollector(mosquitto.port, [DETECTIONS])
    seen: list[tuple[str, str | None]] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            health = runtime.health()
            seen.append((health["status"], health["error"]))
            time.sleep(0.01)

    caplog.set_level(logging.INFO)
    runner = threading.Thread(target=runtime.run, daemon=True)
    runner.start()
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    names = set()
    try:
        for image in sample_images(tmp_path / "images", FRAMES):  # a frame every 0.25 s
            os.replace(image, folder / image.name)
            names.add(image.name)
            time.sleep(0.25)
        collector.wait_for(DETECTIONS, lambda m: {r["source_name"] for r in m} >= names, timeout=60)
        deadline = time.monotonic() + 30
        while (runtime.captures.depth or runtime.faults.reasons()) and time.monotonic() < deadline:
            time.sleep(0.05)
        final = runtime.health()
    finally:
        watching.set()
        runtime.request_stop()
        runner.join(60)
        collector.close()
    assert not runner.is_alive()
    part = "frame-workers" if thread == "frame-encode" else thread  # encoding runs on the workers
    degraded = [error for status, error in seen if status == "degraded" and error and part in error]
    assert degraded, f"health never showed {part} degraded: {sorted(set(seen), key=str)[:5]}"
    assert "InjectedFault" in degraded[0] and f"injected into {part}" in degraded[0]
    assert final["status"] == "ok" and final["error"] is None, final
    logged = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and part in r.getMessage()
              or "injected into" in r.getMessage() or (r.exc_info and "injected into" in str(r.exc_info[1]))]
    assert logged, "the crash was logged"
    if thread != "result-committer":  # the committer's unit of work is a group of results, not one item
        assert any((" on " in m) for m in logged), f"logged with the item it concerned: {logged}"
    records = collector.json(DETECTIONS)
    assert {r["source_name"] for r in records} == names, "every frame got a record: the line never stalled"
    if thread == "frame-workers":
        failed = [r for r in records if r["schema"] == "tagqa.frame_error/1"]
        assert len(failed) == 1 and failed[0]["reason"] == "inference" and "InjectedFault" in failed[0]["detail"]
    uploaded = {p.name for p in (tmp_path / "store").rglob("*.json")}
    assert len(uploaded) >= FRAMES - 1, "captures were written and uploaded despite the fault"
    assert runtime.faults.restarts >= (0 if thread in ("frame-workers", "frame-encode") else 1)
