"""Nothing lost when the device dies: real `python -m edge_runtime run` processes and a real Mosquitto,
both killed with SIGKILL; every frame still gets a record, under one image id, and inputs are
deleted only once their result is safe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_fixtures import REPO, Mosquitto, MqttCollector, mosquitto, sample_images, tiny_models  # noqa: F401
from polling import wait_until

DETECTIONS = "tagqa/line-1/detections"


def _start(tmp_path: Path, model: Path, broker: str, *extra: str, on_read: str = "delete",
           log_name: str = "runtime.log") -> subprocess.Popen:
    config = tmp_path / "device.json"
    config.write_text(json.dumps({"folderOnRead": on_read, "folderSettleSeconds": 0.0, "confThreshold": 0.01,
                                  "emptySampleRate": 0.0, "randomSampleRate": 0.0, "captureBand": [0, 0]}))
    log = (tmp_path / log_name).open("ab")
    return subprocess.Popen([sys.executable, "-m", "edge_runtime", "run", "--config", str(config), "--model",
                             str(model), "--source", f"folder:{tmp_path / 'in'}", "--broker", broker,
                             "--device-id", "line-1", "--state-dir", str(tmp_path / "state"), *extra],
                            cwd=REPO, stdout=log, stderr=subprocess.STDOUT)


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait(30)


def _ids_by_name(collector: MqttCollector) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for message in collector.json(DETECTIONS):
        out.setdefault(message["source_name"], set()).add(message["image_id"])
    return out


def test_kill9_after_an_outage_loses_no_result(mosquitto, tiny_models, tmp_path: Path) -> None:
    """Issue 15.1/15.2: results of an outage were in RAM and their inputs already deleted."""
    names = {p.name for p in sample_images(tmp_path / "in", 40)}
    mosquitto.kill()  # the broker dies (SIGKILL) and stays down
    process = _start(tmp_path, tiny_models["a"], mosquitto.address)
    try:
        # An input disappears only once its result is safe: wait until all are gone, then pull the plug.
        wait_until(lambda: not list((tmp_path / "in").iterdir()), "the runtime to process and release every input", 120,
                   poll=0.1)
        _kill(process)
    finally:
        if process.poll() is None:
            _kill(process)
    on_disk = sum(len(p.read_bytes().splitlines()) for p in (tmp_path / "state/results").glob("seg-*.jsonl"))
    assert on_disk == 40, "every released input's result is in the result log"
    mosquitto.start()
    collector = MqttCollector(mosquitto.port, [DETECTIONS])
    process = _start(tmp_path, tiny_models["a"], mosquitto.address)
    try:
        wait_until(lambda: set(_ids_by_name(collector)) >= names, "all 40 results after the restart", 120, poll=0.1)
    finally:
        _kill(process)
        collector.close()
    assert all(len(ids) == 1 for ids in _ids_by_name(collector).values())


@pytest.mark.slow  # seconds of waiting: in make test, not the quick tier
def test_kill9_at_any_moment_every_frame_gets_one_record_under_one_id(tiny_models, tmp_path: Path) -> None:
    """SIGKILL twice mid-stream while the broker is also killed once: every frame has a record, one id each."""
    mosquitto = Mosquitto(tmp_path / "mosquitto", autosave_seconds=1)  # the collector's session survives SIGKILL
    mosquitto.start()
    collector = MqttCollector(mosquitto.port, [DETECTIONS], client_id="crash-collector")
    time.sleep(1.5)  # one autosave with the subscription in it
    names = {p.name for p in sample_images(tmp_path / "in", 60)}
    process = _start(tmp_path, tiny_models["a"], mosquitto.address)
    try:
        wait_until(lambda: len(_ids_by_name(collector)) >= 10, "the first 10 results", 120, poll=0.1)
        _kill(process)
        process = _start(tmp_path, tiny_models["a"], mosquitto.address)
        wait_until(lambda: len(_ids_by_name(collector)) >= 25, "25 results after the first kill", 120, poll=0.1)
        mosquitto.kill()
        time.sleep(0.5)
        _kill(process)
        mosquitto.start()
        process = _start(tmp_path, tiny_models["a"], mosquitto.address)
        wait_until(lambda: set(_ids_by_name(collector)) >= names, "a record of every frame", 180, poll=0.1)
        wait_until(lambda: not list((tmp_path / "in").iterdir()), "every input to be released", 60, poll=0.1)
    finally:
        if process.poll() is None:
            _kill(process)
        collector.close()
        mosquitto.kill()
    by_name = _ids_by_name(collector)
    assert set(by_name) == names
    assert all(len(ids) == 1 for ids in by_name.values()), "a frame read again keeps its image id"


def test_keep_mode_restart_reads_files_again_under_the_same_ids(mosquitto, tiny_models, tmp_path: Path) -> None:
    """Issue 15.2: in keep mode a restart re-read files under new ids; now consumers can de-duplicate."""
    collector = MqttCollector(mosquitto.port, [DETECTIONS])
    names = {p.name for p in sample_images(tmp_path / "in", 8)}
    process = _start(tmp_path, tiny_models["a"], mosquitto.address, on_read="keep")
    try:
        wait_until(lambda: set(_ids_by_name(collector)) >= names, "the first pass", 120, poll=0.1)
        _kill(process)
        first = len(collector.json(DETECTIONS))
        process = _start(tmp_path, tiny_models["a"], mosquitto.address, on_read="keep")
        wait_until(lambda: len(collector.json(DETECTIONS)) >= first + 8, "the second pass after the restart", 120,
                   poll=0.1)
    finally:
        _kill(process)
        collector.close()
    by_name = _ids_by_name(collector)
    assert set(by_name) == names and all(len(ids) == 1 for ids in by_name.values())
    assert sorted((tmp_path / "in").iterdir()) and len(list((tmp_path / "in").iterdir())) == 8, "keep mode keeps"


def test_oversized_frame_is_refused_before_decoding_with_an_error_record(mosquitto, tiny_models,
                                                                         tmp_path: Path) -> None:
    """Issue 15.7/15.8: a 12000x12000 PNG took RSS to 2.9 GB; now it is refused from its header and recorded."""
    import numpy as np
    from PIL import Image

    (tmp_path / "in").mkdir()
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((12000, 12000), dtype=np.uint8)).save(big, compress_level=1)
    os.replace(big, tmp_path / "in" / "huge.png")
    sample_images(tmp_path / "in", 2)
    collector = MqttCollector(mosquitto.port, [DETECTIONS])
    process = _start(tmp_path, tiny_models["a"], mosquitto.address)
    try:
        records = collector.wait_for(DETECTIONS, lambda m: len({r["source_name"] for r in m}) >= 3, timeout=120)
        wait_until(lambda: not list((tmp_path / "in").iterdir()), "the inputs to be released", 60, poll=0.1)
        status = Path(f"/proc/{process.pid}/status").read_text()
        peak_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM")))
    finally:
        _kill(process)
        collector.close()
    error = next(r for r in records if r["source_name"] == "huge.png")
    assert error["schema"] == "tagqa.frame_error/1" and error["reason"] == "too-large"
    assert "12000x12000" in error["detail"] and error["kept"] == "quarantine"
    # Decoding it would have needed 432 MB for the RGB pixels alone: the process never got near that.
    assert peak_kb < 400 * 1024, f"peak RSS {peak_kb / 1024:.0f} MB: the frame was decoded"
    assert (tmp_path / "state/quarantine" / f"{error['image_id']}.png").exists()
