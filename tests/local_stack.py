"""``make run``'s stack (deploy/local/run.sh) started for real from a fresh state folder, and driven.

Used by tests/test_local_stack.py (clean stop on signals), tests/test_first_result.py (the
first model from a fresh start to a result on MQTT) and benchmarks/first_result.py (the
same path, timed). The stack runs in a work folder that stands in for the repository root:
its state folder is ``<work>/.tagqa`` and every path setting keeps its default (relative to
that folder), so nothing but the ports differs from ``make run`` on a fresh clone. A
developer's or the test session's TAGQA_*/LABEL_STUDIO_* variables are left out; ``settings``
adds the ones a caller chooses.

The demo set is written as ``make demo`` writes it: the arguments are read from the
Makefile's ``demo`` recipe, so a change there reaches these runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from dagster_dev import DagsterApi
from polling import wait_until

REPO = Path(__file__).resolve().parents[1]
RUN_SH = REPO / "deploy" / "local" / "run.sh"
MAKEFILE = REPO / "Makefile"
INSTANCE_CONFIG = REPO / "deploy" / "dagster" / "local" / "dagster.yaml"
DEVICE = "line-1"
OWN_PREFIXES = ("TAGQA_", "LABEL_STUDIO_")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def make_demo_command() -> tuple[list[str], dict[str, str]]:
    """``make demo``'s ``tagqa demo`` arguments and the taxonomy ``make demo`` and ``make run`` export, read
    from the Makefile."""
    text = MAKEFILE.read_text()
    command = re.search(r"^\t\$\(BIN\)/tagqa (demo\b.*)$", text, re.MULTILINE)
    classes = re.search(r"^DEMO_DEFECT_CLASSES\s*:=\s*(\S+)\s*$", text, re.MULTILINE)
    if command is None or classes is None:
        raise RuntimeError(f"{MAKEFILE}: no `$(BIN)/tagqa demo ...` recipe line or DEMO_DEFECT_CLASSES found")
    return command.group(1).split(), {"TAGQA_DEFECT_CLASSES": classes.group(1)}


def _default_stop_signals() -> None:
    """In the child before exec: SIGTERM, SIGINT and SIGHUP at their default disposition, as a terminal or a
    process manager starts run.sh. A signal ignored on entry cannot be trapped by bash, and the test process
    may have inherited or set SIG_IGN for them (a full ``make test`` ran with SIGTERM ignored by the time
    these tests started, so run.sh ignored the very signal the tests send)."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


class ResultListener:
    """A paho MQTT 5 subscriber to ``tagqa/+/detections``: every result with its arrival time (epoch s)."""

    def __init__(self, port: int, device: str = DEVICE) -> None:
        import paho.mqtt.client as mqtt

        self.topic = f"tagqa/{device}/detections"
        self.results: list[tuple[float, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"first-result-{os.getpid()}",
                                  protocol=mqtt.MQTTv5)
        self.client.on_connect = lambda client, *_: client.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, message: Any) -> None:
        record = json.loads(message.payload)
        with self._lock:
            self.results.append((time.time(), record))

    def wait_subscribed(self, timeout: float = 60.0) -> None:
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"no subscription to {self.topic} within {timeout:.0f} s")

    def of_version(self, version: int) -> list[tuple[float, dict[str, Any]]]:
        """Results (arrival time, record) of registry model version ``version``, in arrival order."""
        with self._lock:
            return [(t, r) for t, r in self.results if r.get("model_version") == str(version)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class LocalStack:
    """deploy/local/run.sh in ``work`` (its state folder ``work/.tagqa``), on free ports."""

    def __init__(self, work: Path, settings: dict[str, str] | None = None) -> None:
        self.work = Path(work)
        self.work.mkdir(parents=True, exist_ok=True)
        self.state = self.work / ".tagqa"
        self.store_root = self.state / "store"
        self.port, self.broker_port = _free_port(), _free_port()
        self.api = DagsterApi(f"http://127.0.0.1:{self.port}")
        self.log = self.work / "run.log"
        self.process: subprocess.Popen | None = None
        base = {k: v for k, v in os.environ.items() if not k.startswith(OWN_PREFIXES)}
        self.env = {
            **base,
            # What the Makefile exports for make run.
            "BIN": str(Path(sys.executable).parent), "PORT": str(self.port), "STATE": str(self.state),
            "DAGSTER_HOME": str(self.state / "dagster"), "YOLO_CONFIG_DIR": str(self.state / "ultralytics"),
            "YOLO_OFFLINE": "1", "MPLCONFIGDIR": str(self.state / "matplotlib"),
            # Free ports instead of 1883 / 8081, so several stacks (and a developer's make run) coexist.
            "TAGQA_BROKER_PORT": str(self.broker_port), "TAGQA_EDGE_HTTP": f"127.0.0.1:{_free_port()}",
            # make demo and make run export the demo's taxonomy (Makefile: `demo run: export TAGQA_DEFECT_CLASSES`).
            **make_demo_command()[1],
            **(settings or {}),
        }

    # ------------------------------------------------------------------ start and stop
    def seed_demo(self) -> None:
        """Write the demo set into the fresh store as ``make demo`` does."""
        self.tagqa(*make_demo_command()[0], timeout=600)

    def start(self, timeout: float = 600.0) -> None:
        """Install the Dagster instance config (as ``make setup``), start run.sh, and wait until the UI
        answers with the tagqa code location loaded. Stops what it started when that fails."""
        home = self.state / "dagster"
        home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(INSTANCE_CONFIG, home / "dagster.yaml")
        self.process = subprocess.Popen(["bash", str(RUN_SH)], cwd=self.work, env=self.env, stdout=open(self.log, "wb"),
                                        stderr=subprocess.STDOUT, start_new_session=True,
                                        preexec_fn=_default_stop_signals)
        try:
            wait_until(lambda: self.answers_loaded(), f"the UI on port {self.port}", timeout, poll=0.5,
                       error=TimeoutError, diagnose=self.log_tail)
        except BaseException:
            self.kill()
            raise

    def answers_loaded(self) -> bool:
        """Whether the webserver answers and the tagqa code location is loaded; raises when run.sh exited."""
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"run.sh exited with {self.process.returncode}:\n{self.log_tail()}")
        return self.api.answers("/server_info") and self.api.location_loaded()

    def descendants(self) -> list[psutil.Process]:
        """Every process run.sh started, directly or not."""
        if self.process is None:
            return []
        try:
            return psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15.0) -> tuple[float, list[str]]:
        """Send ``signum`` to run.sh alone (as ``kill`` or a process manager does); returns the seconds
        until it and every process it had started were gone (at most ``timeout``) and what is left."""
        if self.process is None:
            return 0.0, []
        processes = [psutil.Process(self.process.pid), *self.descendants()]
        sent = time.monotonic()
        os.kill(self.process.pid, signum)
        _, alive = psutil.wait_procs(processes, timeout=timeout)
        leftovers = [f"{p.pid} {' '.join(p.cmdline()[:4])}" for p in alive if p.is_running()]
        return time.monotonic() - sent, leftovers

    def kill(self) -> None:
        """SIGKILL run.sh's process group and every process it started (cleanup after a failure)."""
        if self.process is None:
            return
        for process in self.descendants():
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(timeout=30)

    def log_tail(self, chars: int = 4000) -> str:
        logs = [self.log, *sorted((self.state / "logs").glob("*.log"))]
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-chars:]}" for p in logs if p.is_file())

    # ------------------------------------------------------------------ the loop
    def tagqa(self, *arguments: str, extra_env: dict[str, str] | None = None, timeout: float = 120.0) -> str:
        """Run ``tagqa ARGUMENTS`` in the work folder with the stack's settings; returns its output."""
        done = subprocess.run([str(Path(sys.executable).parent / "tagqa"), *arguments], cwd=self.work,
                              env={**self.env, **(extra_env or {})}, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"tagqa {' '.join(arguments)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def registry(self):
        from tagqa_assets.model_catalog.registry import LocalModelRegistry
        from tagqa_assets.storage import open_store

        return LocalModelRegistry(open_store(str(self.store_root)))

    def failed_runs(self, sensor: str) -> list[str]:
        """Why each failed run a sensor launched failed (run id and the failed steps' messages)."""
        reasons = []
        for run in self.api.runs({"dagster/sensor_name": sensor}):
            if run["status"] != "FAILURE":
                continue
            events = self.api.graphql(
                "query E($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { __typename "
                "... on ExecutionStepFailureEvent { stepKey error { message } } } } } }",
                {"id": run["runId"]})["logsForRun"].get("events", [])
            steps = [f"{e['stepKey']}: {(e.get('error') or {}).get('message', '').strip()[:600]}"
                     for e in events if e["__typename"] == "ExecutionStepFailureEvent"]
            reasons.append(f"run {run['runId']}: {'; '.join(steps) or 'failed'}")
        return reasons

    def wait_for_model(self, version: int, timeout: float) -> Any:
        """Registry entry ``version`` once registered; raises at once when a training run failed."""
        def registered() -> Any:
            failures = self.failed_runs("model_training_sensor")
            if failures:
                raise AssertionError("model_training_sensor's run failed:\n" + "\n".join(failures))
            return next((e for e in self.registry().list_versions() if e.version == version), None)
        return wait_until(registered, f"registry version {version}", timeout, poll=5, error=TimeoutError,
                          diagnose=self.log_tail)

    def deployment_of(self, version: int) -> Any:
        """The local target's DEPLOYED record of model version ``version``, if any."""
        from tagqa_assets.contracts.edge import DEPLOYED
        from tagqa_assets.deployment.history import DeploymentHistory
        from tagqa_assets.storage import open_store

        records = DeploymentHistory(open_store(str(self.store_root))).records("local")
        return next((r for r in records if r.status == DEPLOYED and r.release and r.release.model_version == version),
                    None)

    def wait_deployed(self, version: int, timeout: float) -> Any:
        def deployed() -> Any:
            failures = self.failed_runs("model_approval_sensor")
            if failures:
                raise AssertionError("model_approval_sensor's run failed:\n" + "\n".join(failures))
            return self.deployment_of(version)
        return wait_until(deployed, f"a deployment of model version {version} to the local device", timeout, poll=2,
                          error=TimeoutError, diagnose=self.log_tail)

    def feedback_keys(self, device: str = DEVICE) -> list[str]:
        """Images the device sent back into ``raw/edge-feedback/<device>/``."""
        from tagqa_assets.storage import open_store

        return [info.key for info in open_store(str(self.store_root)).list_objects(f"raw/edge-feedback/{device}/")]


@dataclass
class FirstResult:
    """Seconds from the start (before the demo set is written, as ``make run`` does) to each milestone."""

    ui_s: float = float("nan")
    first_model_s: float = float("nan")
    approved_s: float = float("nan")
    deployed_s: float = float("nan")
    first_result_s: float = float("nan")
    model: Any = None
    first_result: dict[str, Any] = field(default_factory=dict)
    listener: ResultListener | None = None

    def result_line(self) -> str:
        return (f"RESULT ui_s={self.ui_s:.1f} first_model_s={self.first_model_s:.1f} deployed_s={self.deployed_s:.1f} "
                f"first_result_s={self.first_result_s:.1f} total_s={self.first_result_s:.1f}")


def run_to_first_result(stack: LocalStack, timeline: FirstResult, *, model_timeout: float = 2700.0, deploy_timeout: float = 900.0,
                        result_timeout: float = 300.0, before_approval: Callable[[FirstResult], None] = lambda _: None,
                        say: Callable[[str], None] = lambda _: None) -> FirstResult:
    """From nothing to the first model's first result on MQTT, the newcomer's path through ``make run``:
    demo set, stack up, sensors ingest / import labels / cut the version / train, the first model waits
    for a person, ``tagqa models approve 1``, the deployment, a result of version 1 on the device's
    topic. Fills ``timeline`` as it goes; ``before_approval`` runs while version 1 waits (a test looks
    at the UI there). The caller stops the stack and closes ``timeline.listener``."""
    started, started_wall = time.monotonic(), time.time()
    stack.seed_demo()
    stack.start()
    timeline.ui_s = time.monotonic() - started
    say(f"UI up after {timeline.ui_s:.0f} s: {stack.api.url}")
    timeline.listener = ResultListener(stack.broker_port)
    timeline.listener.wait_subscribed()
    timeline.model = stack.wait_for_model(1, model_timeout)
    timeline.first_model_s = time.monotonic() - started
    say(f"model version 1 registered after {timeline.first_model_s:.0f} s: {timeline.model.status} "
        f"(test {timeline.model.metrics.get('test')})")
    before_approval(timeline)
    stack.tagqa("models", "approve", "1")
    timeline.approved_s = time.monotonic() - started
    stack.wait_deployed(1, deploy_timeout)
    timeline.deployed_s = time.monotonic() - started
    say(f"deployed after {timeline.deployed_s:.0f} s")
    arrived, timeline.first_result = wait_until(lambda: next(iter(timeline.listener.of_version(1)), None),
                                                "a result of model version 1 on MQTT", result_timeout, poll=0.2,
                                                error=TimeoutError, diagnose=stack.log_tail)
    timeline.first_result_s = arrived - started_wall
    say(f"first result after {timeline.first_result_s:.0f} s: {timeline.first_result['verdict']}")
    return timeline
