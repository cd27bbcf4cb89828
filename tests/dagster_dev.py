"""A real ``dagster dev`` (webserver + daemon) of the repository's workspace.yaml on 127.0.0.1.

Used by the UI test and the loop-latency benchmark. The server runs in its own process
group (webserver, daemon, code servers and the run workers they launch), which ``stop``
ends as a whole.

It runs from a scratch folder, not from the repository root: ``dagster dev`` loads a
``.env`` of its working directory over the environment it was given (a developer may have
one). The code location is still the repository's (``-w <repo>/workspace.yaml``), and its
settings come from ``env`` (the test session names an empty TAGQA_SETTINGS_FILE, so a
developer's ``tagqa.env`` stays out).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from polling import wait_until

REPO = Path(__file__).resolve().parents[1]
WORKSPACE = REPO / "workspace.yaml"
INSTANCE_CONFIG = REPO / "deploy" / "dagster" / "local" / "dagster.yaml"


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class DagsterApi:
    """The GraphQL API of a running Dagster webserver at ``url`` (``dagster dev`` or ``make run``'s)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as response:
                return response.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def location_loaded(self) -> bool:
        data = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                            "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
        entries = data["workspaceOrError"]["locationEntries"]
        for entry in entries:
            if entry["locationOrLoadError"] and entry["locationOrLoadError"]["__typename"] == "PythonError":
                raise RuntimeError(f"code location {entry['name']} failed to load: {entry['locationOrLoadError']['message']}")
        return bool(entries) and all(e["loadStatus"] == "LOADED" and e["locationOrLoadError"] for e in entries)

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """POST ``query`` to ``/graphql``; returns ``data``, raises on transport or GraphQL errors."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(self.url + "/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors for {query[:80]!r}: {payload['errors']}")
        return payload["data"]

    def runs(self, tags: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Runs (newest first) carrying ``tags``: id, status, creation/start/end time (epoch seconds), tags."""
        data = self.graphql(
            "query Runs($filter: RunsFilter) { runsOrError(filter: $filter) { __typename "
            "... on Runs { results { runId status creationTime startTime endTime tags { key value } } } "
            "... on PythonError { message } } }",
            {"filter": {"tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}},
        )["runsOrError"]
        if data["__typename"] != "Runs":
            raise RuntimeError(f"runsOrError: {data}")
        return data["results"]


class DagsterDev(DagsterApi):
    """``dagster dev -h 127.0.0.1 -p <free port> -w workspace.yaml`` with DAGSTER_HOME = ``workdir/dagster-home``.

    ``env`` is the whole environment of the server (TAGQA_* settings included); DAGSTER_HOME
    is set here, to a home holding a copy of deploy/dagster/local/dagster.yaml (what ``make run``
    installs). ``workspace``: another workspace file in place of the repository's.
    """

    def __init__(self, workdir: Path, env: dict[str, str], workspace: Path = WORKSPACE) -> None:
        self.workdir = Path(workdir)
        self.workspace = Path(workspace)
        self.home = self.workdir / "dagster-home"
        self.home.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(INSTANCE_CONFIG, self.home / "dagster.yaml")
        self.env = {**env, "DAGSTER_HOME": str(self.home)}
        self.port = _free_port()
        super().__init__(f"http://127.0.0.1:{self.port}")
        self.log = self.workdir / "dagster-dev.log"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> float:
        """Start the server and wait until ``/server_info`` answers and the code location is loaded;
        returns the seconds that took. Raises (with the log's tail) if the server dies or times out,
        after stopping what it started."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> float:
        started = time.monotonic()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(self.port), "-w", str(self.workspace)],
            cwd=self.workdir, env=self.env, stdout=open(self.log, "wb"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = started + timeout
        for ready, what in ((lambda: self.answers("/server_info"), "/server_info"),
                            (self.location_loaded, "the tagqa code location")):
            wait_until(lambda: self._ready_or_dead(ready), f"dagster dev on port {self.port} to serve {what} "
                       f"({timeout:.0f} s in all)", deadline - time.monotonic(), poll=0.5, error=TimeoutError,
                       diagnose=self.log_tail)
        return time.monotonic() - started

    def _ready_or_dead(self, ready: Callable[[], bool]) -> bool:
        """``ready()``; RuntimeError with the log's tail once the server has exited instead."""
        if ready():
            return True
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"dagster dev exited with {self.process.returncode}:\n{self.log_tail()}")
        return False

    def wait_for_sensor_run(self, sensor: str, timeout: float, poll: float) -> dict[str, Any]:
        """The last finished run that ``sensor`` launched, polled every ``poll`` s; AssertionError (with the runs
        seen and the log's tail) when it did not succeed, or when none finished within ``timeout`` s."""
        runs: list[dict[str, Any]] = []

        def finished_run() -> dict[str, Any] | None:
            runs[:] = self.runs({"dagster/sensor_name": sensor})
            finished = [r for r in runs if r["status"] in ("SUCCESS", "FAILURE", "CANCELED")]
            if finished:
                assert finished[-1]["status"] == "SUCCESS", f"{sensor}'s run failed: {finished[-1]}\n{self.log_tail()}"
                return finished[-1]
            return None
        return wait_until(finished_run, f"a finished {sensor} run", timeout, poll=poll,
                          diagnose=lambda: f"runs: {runs}\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"

    def stop(self) -> None:
        """End the whole process group: SIGTERM, a few seconds' grace, then SIGKILL for what is left."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # stragglers: daemon threads, run workers
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> "DagsterDev":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
