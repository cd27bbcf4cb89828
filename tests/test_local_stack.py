"""``make run``'s stack (deploy/local/run.sh) stops cleanly on the signals people and process managers send.

The stack is started for real (Mosquitto, a local edge device waiting for its first
deployment, the results collector, the demo camera, ``dagster dev`` with its webserver,
daemon and code server) from a scratch folder (tests/local_stack.py); once the UI answers,
every descendant process is recorded, the signal is sent to the script alone (as ``kill`` or
a process manager does; Ctrl-C in a terminal also reaches the script), and every recorded
process must be gone within 15 s.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from local_stack import LocalStack
from polling import wait_until

STOP_LIMIT_S = 15.0
START_LIMIT_S = 240.0


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP],
                         ids=["sigterm-process-manager", "sigint-ctrl-c", "sighup-terminal-closed"])
def test_stack_stops_every_process_on_signal(tmp_path: Path, signum: int) -> None:
    stack = LocalStack(tmp_path)
    stack.start(timeout=START_LIMIT_S)
    try:
        # The code server and the device come up a little after the webserver: record the tree once it is whole.
        services = ("mosquitto", "dagster_webserver", "dagster._daemon", "edge up", "edge demo-camera")
        names: set[str] = set()

        def whole() -> bool:
            names.clear()
            names.update(" ".join(p.cmdline()[:4]) for p in stack.descendants() if p.is_running())
            return all(any(service in n for n in names) for service in services)
        wait_until(whole, "every service to start", 60, poll=0.5,
                   diagnose=lambda: f"running: {sorted(names)}\n{stack.log_tail()}")
        assert len(stack.descendants()) >= 5

        elapsed, leftovers = stack.stop(signum, timeout=STOP_LIMIT_S)
        assert not leftovers, f"still running {elapsed:.1f} s after {signal.Signals(signum).name}: {leftovers}\n" \
                              f"{stack.log_tail(3000)}"
        assert "stopped" in stack.log.read_text(errors="replace")
        # The demo camera stopped cleanly too: no half-written frame left in the device's folder.
        incoming = stack.state / "devices" / "line-1" / "incoming"
        assert not [p.name for p in incoming.iterdir() if p.name.endswith(".part")]
        assert "demo camera stopped" in (stack.state / "logs" / "demo-camera.log").read_text()
    finally:
        stack.kill()
