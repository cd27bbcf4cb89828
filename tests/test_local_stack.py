"""``make run``'s stack (deploy/local/run.sh) stops cleanly on the signals people and process managers send.

The stack is started for real (Mosquitto, a local edge device waiting for its first
deployment, ``dagster dev`` with its webserver, daemon and code server) from a scratch
folder; once the UI answers, every descendant process is recorded, the signal is sent to
the script alone (as ``kill`` or a process manager does; Ctrl-C in a terminal also reaches
the script), and every recorded process must be gone within 15 s.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.conftest import REPO, free_port

RUN_SH = REPO / "deploy" / "local" / "run.sh"
STOP_LIMIT_S = 15.0
START_LIMIT_S = 240.0


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _start_stack(tmp_path: Path) -> tuple[subprocess.Popen, int, Path]:
    state = tmp_path / "state"
    home = state / "dagster"
    home.mkdir(parents=True)
    shutil.copyfile(REPO / "deploy" / "dagster" / "local" / "dagster.yaml", home / "dagster.yaml")
    port, broker_port = free_port(), free_port()
    env = {
        **os.environ,
        "BIN": str(Path(sys.executable).parent),
        "PORT": str(port),
        "STATE": str(state),
        "TAGQA_BROKER_PORT": str(broker_port),
        "TAGQA_MQTT_BROKER": f"127.0.0.1:{broker_port}",
        "TAGQA_STORE": str(state / "store"),
        "TAGQA_DEVICES_ROOT": str(state / "devices"),
        "DAGSTER_HOME": str(home),
    }
    log = tmp_path / "run.log"
    # A scratch working folder: dagster dev loads the .env of its working folder.
    workdir = tmp_path / "work"
    workdir.mkdir()
    process = subprocess.Popen(["bash", str(RUN_SH)], cwd=workdir, env=env, stdout=open(log, "wb"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + START_LIMIT_S
    while not _answers(f"http://127.0.0.1:{port}/server_info"):
        if process.poll() is not None or time.monotonic() > deadline:
            _kill_tree(process.pid)
            raise AssertionError(f"the stack did not serve the UI on port {port} within {START_LIMIT_S:.0f} s "
                                 f"(exit code {process.poll()}):\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)
    return process, port, log


def _kill_tree(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for child in psutil.Process().children(recursive=True):
        try:
            if child.pid != os.getpid():
                child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["sigterm-process-manager", "sigint-ctrl-c", "sighup-terminal-closed"])
def test_stack_stops_every_process_on_signal(tmp_path: Path, signum: int) -> None:
    process, _, log = _start_stack(tmp_path)
    try:
        # The code server and the device come up a little after the webserver: record the tree once it is whole.
        deadline = time.monotonic() + 60
        names: set[str] = set()
        while time.monotonic() < deadline:
            descendants = psutil.Process(process.pid).children(recursive=True)
            names = {" ".join(p.cmdline()[:4]) for p in descendants if p.is_running()}
            if any("mosquitto" in n for n in names) and any("dagster_webserver" in n for n in names) \
                    and any("dagster._daemon" in n for n in names) and any("edge up" in n for n in names):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"not every service started; running: {sorted(names)}\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")
        assert len(descendants) >= 4

        sent = time.monotonic()
        os.kill(process.pid, signum)
        gone, alive = psutil.wait_procs([psutil.Process(process.pid), *descendants],
                                        timeout=STOP_LIMIT_S)
        elapsed = time.monotonic() - sent
        leftovers = [f"{p.pid} {' '.join(p.cmdline()[:4])}" for p in alive if p.is_running()]
        assert not leftovers, f"still running {elapsed:.1f} s after {signal.Signals(signum).name}: {leftovers}\n" \
                              f"{log.read_text(errors='replace')[-3000:]}"
        assert "stopped" in log.read_text(errors="replace")
    finally:
        _kill_tree(process.pid)
