"""Time to first result: ``make run``'s stack from a fresh state folder to the first model's first result.

Runs deploy/local/run.sh (Mosquitto, the local device line-1, the results collector, the demo
camera, ``dagster dev``) in a fresh work folder standing in for a fresh clone (its state in
``<work>/.tagqa``, every setting at its default, free ports), after writing the demo set as
``make demo`` does; tests/local_stack.py drives it, the same code as tests/test_first_result.py.
Reports seconds from the start (before the demo set is written) to:

  ui_s            the UI answers with the tagqa code location loaded
  first_model_s   model version 1 is in the registry (trained, exported, evaluated, past the
                  gate), waiting for a person
  deployed_s      the local device confirmed it, after ``tagqa models approve 1`` (run by this
                  script the moment version 1 appears: the only step a person does by hand)
  first_result_s  the first result of version 1 arrived on tagqa/line-1/detections (paho subscriber)

Target: total under 15 minutes on 2 cores. The load average before and after is printed: on a
shared machine the figures are not the machine's best.

    python benchmarks/first_result.py [--keep] [--set NAME=VALUE ...]

Last line: ``RESULT ui_s=.. first_model_s=.. deployed_s=.. first_result_s=.. total_s=..``; when the
loop stops short (a failed training run, e.g. the promotion gate), the figures not reached are
``nan``, the line ends in ``failed=1`` and the reason is printed above it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from local_stack import FirstResult, LocalStack, run_to_first_result  # noqa: E402

TARGET_S = 15 * 60


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the work folder (state, logs) afterwards")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for this run only (default: none, every setting at its default)")
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    work = Path(tempfile.mkdtemp(prefix="tagqa-first-result-"))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"load average before {os.getloadavg()}; work folder {work}; settings {settings or 'defaults'}", flush=True)
    stack = LocalStack(work, settings)
    timeline = FirstResult()
    started = time.monotonic()
    failure = None
    try:
        run_to_first_result(stack, timeline, say=lambda line: print(f"[{time.monotonic() - started:7.1f} s] {line}",
                                                                     flush=True))
    except (AssertionError, TimeoutError, RuntimeError) as exc:  # report what was measured before it stopped
        failure = exc
        print(f"[{time.monotonic() - started:7.1f} s] the loop stopped: {exc}"[:3000], flush=True)
    finally:
        if timeline.listener is not None:
            timeline.listener.close()
        if stack.process is not None and stack.process.poll() is None:
            elapsed, leftovers = stack.stop(signal.SIGTERM)
            print(f"stack stopped in {elapsed:.1f} s{'; left running: ' + str(leftovers) if leftovers else ''}")
        stack.kill()
        print(f"load average after {os.getloadavg()}")
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    if failure is not None:
        print(timeline.result_line() + " failed=1")
        return 1
    model = timeline.model
    print(f"model version 1: {model.model_id}, test {model.metrics.get('test')}; first result: "
          f"{timeline.first_result['verdict']} ({len(timeline.first_result['detections'])} boxes)")
    verdict = "met" if timeline.first_result_s < TARGET_S else "MISSED"
    print(f"target: under {TARGET_S} s in all: {verdict}")
    print(timeline.result_line())
    return 0


if __name__ == "__main__":
    sys.exit(main())
