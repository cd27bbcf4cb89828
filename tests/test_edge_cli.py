"""`python -m edge_runtime run` as a real subprocess: a broker restart loses nothing, SIGTERM is clean,
bad configuration and bad models fail fast with their exit codes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_fixtures import REPO, MqttCollector, mosquitto, sample_images, tiny_models  # noqa: F401

DETECTIONS, HEALTH = "tagqa/line-1/detections", "tagqa/line-1/health"


def _run(args: list[str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge_runtime", "--log-level", "INFO", "run", *args],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)


@pytest.mark.slow
def test_broker_restart_loses_no_result(mosquitto, tiny_models, tmp_path: Path) -> None:
    sample_images(tmp_path / "camera", 6)
    config = tmp_path / "device.json"
    config.write_text(json.dumps({"frameIntervalSeconds": 0.02, "confThreshold": 0.01, "emptySampleRate": 0.0,
                                  "randomSampleRate": 0.0, "captureBand": [0, 0]}))
    collector = MqttCollector(mosquitto.port, [DETECTIONS, HEALTH])
    process = _run(["--config", str(config), "--model", str(tiny_models["a"]), "--source",
                    f"loop:{tmp_path / 'camera'}", "--broker", mosquitto.address, "--device-id", "line-1",
                    "--state-dir", str(tmp_path / "state"), "--store", str(tmp_path / "store"),
                    "--max-frames", "200", "--health-interval", "0.5"])
    try:
        collector.wait_for(DETECTIONS, lambda m: len(m) >= 20, timeout=60)
        mosquitto.stop()  # the line keeps inspecting while the broker is away
        time.sleep(1.5)
        mosquitto.start()
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
    assert "disconnected from mqtt://" in output
    results = collector.wait_for(DETECTIONS, lambda m: len({r["image_id"] for r in m}) >= 200, timeout=30)
    collector.close()
    first_seen = list(dict.fromkeys(r["image_id"] for r in results))
    assert len(first_seen) == 200, "every frame's result arrived"
    stamps = [next(r["timestamp"] for r in results if r["image_id"] == i) for i in first_seen]
    assert stamps == sorted(stamps), "and in capture order"


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_keeps_unsent_results(mosquitto, tiny_models, tmp_path: Path) -> None:
    sample_images(tmp_path / "camera", 3)
    mosquitto.stop()  # offline from the start: every result stays buffered
    process = _run(["--model", str(tiny_models["a"]), "--source", f"loop:{tmp_path / 'camera'}", "--broker",
                    mosquitto.address, "--device-id", "line-1", "--state-dir", str(tmp_path / "state"),
                    "--flush-timeout", "1"])
    time.sleep(6)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "stopped after" in output
    buffered = sum(len(p.read_text().splitlines()) for p in (tmp_path / "state/results").glob("seg-*.jsonl"))
    frames = int(output.rsplit("stopped after ", 1)[1].split()[0])
    assert frames > 0 and buffered == frames, "every result of the offline run is on disk for the next start"


def test_bad_configuration_exits_2_and_names_the_key(tiny_models, tmp_path: Path) -> None:
    config = tmp_path / "device.json"
    config.write_text(json.dumps({"confTreshold": 0.3}))
    process = _run(["--config", str(config), "--model", str(tiny_models["a"]), "--device-id", "line-1"])
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 2 and "unknown key 'confTreshold'" in output and str(config) in output


def test_missing_model_exits_3(tmp_path: Path) -> None:
    process = _run(["--model", str(tmp_path / "no-model"), "--source", str(tmp_path), "--device-id", "line-1",
                    "--state-dir", str(tmp_path / "state")])
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 3 and "model card not found" in output
