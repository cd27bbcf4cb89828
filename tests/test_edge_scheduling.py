"""The runtime's threads run under SCHED_BATCH: the context manager, and a real `tagqa-edge run` process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edge_fixtures import REPO, MqttCollector, mosquitto, sample_images, tiny_models  # noqa: F401
from edge_runtime.scheduling import batch_scheduling

pytestmark = pytest.mark.skipif(not hasattr(os, "SCHED_BATCH"), reason="SCHED_BATCH is Linux's")


def _in_thread(body) -> dict:
    """Run ``body(out)`` on a fresh thread (its policy changes never touch the test's own thread)."""
    out: dict = {}

    def run() -> None:
        try:
            body(out)
        except BaseException as exc:  # re-raised on the test's thread below
            out["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    if "error" in out:
        raise out["error"]
    return out


def test_the_caller_and_the_threads_it_starts_run_batch_and_the_caller_is_restored() -> None:
    def body(out: dict) -> None:
        out["before"] = os.sched_getscheduler(0)
        with batch_scheduling() as applied:
            out["applied"], out["inside"] = applied, os.sched_getscheduler(0)
            child = _in_thread(lambda o: o.update(policy=os.sched_getscheduler(0)))
            out["child"] = child["policy"]
        out["after"] = os.sched_getscheduler(0)

    out = _in_thread(body)
    assert out["before"] == os.SCHED_OTHER
    assert out["applied"] is True and out["inside"] == os.SCHED_BATCH
    assert out["child"] == os.SCHED_BATCH, "a thread started meanwhile inherits the policy"
    assert out["after"] == os.SCHED_OTHER


def test_a_policy_someone_chose_is_kept() -> None:
    def body(out: dict) -> None:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        with batch_scheduling() as applied:
            out["applied"], out["inside"] = applied, os.sched_getscheduler(0)
        out["after"] = os.sched_getscheduler(0)

    out = _in_thread(body)
    assert out == {"applied": False, "inside": os.SCHED_IDLE, "after": os.SCHED_IDLE}


def _policies(pid: int) -> dict[str, int]:
    """Thread name -> scheduling policy (field 41 of /proc/<pid>/task/<tid>/stat) of every thread of ``pid``."""
    policies = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": field 3 onwards
        policies[f"{Path(f'/proc/{pid}/task/{tid}/comm').read_text().strip()}-{tid}"] = int(fields[41 - 3])
    return policies


def test_every_thread_of_a_running_tagqa_edge_runs_batch(mosquitto, tiny_models, tmp_path: Path) -> None:
    sample_images(tmp_path / "camera", 3)
    collector = MqttCollector(mosquitto.port, ["tagqa/line-1/detections"])
    process = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "run", "--model", str(tiny_models["a"]), "--source",
         f"loop:{tmp_path / 'camera'}", "--broker", mosquitto.address, "--device-id", "line-1", "--state-dir",
         str(tmp_path / "state")], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        collector.wait_for("tagqa/line-1/detections", lambda m: len(m) >= 10, timeout=60)
        policies = _policies(process.pid)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        collector.close()
    assert process.returncode == 0, output
    assert os.sched_getscheduler(0) == os.SCHED_OTHER, "the test itself runs under the default policy"
    assert len(policies) >= 6, f"workers, sink, outbox, captures, MQTT client: {sorted(policies)}"
    assert set(policies.values()) == {os.SCHED_BATCH}, json.dumps(policies)
