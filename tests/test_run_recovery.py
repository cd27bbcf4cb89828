"""Runs a hard-stopped stack left in progress are marked failed at the next start (tagqa_assets/run_recovery.py).

The slow test makes the fault for real: a ``dagster dev`` with make run's instance configuration runs a
cpu-heavy job, the whole process group is SIGKILLed mid-run (run.sh's last resort, or a power cut), and
the run is left STARTED, holding the cpu-heavy slot: on a restarted stack the next cpu-heavy run stays
queued. Then ``tagqa runs fail-orphaned`` (what run.sh runs before Dagster; here beside the live stack) marks
it failed, the queued run goes through, and the instance's run retries run the killed one again. The quick
tests pin the rules on a real instance with recorded events.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import dagster as dg
import pytest

from dagster_dev import DagsterDev
from polling import wait_until
from tagqa_assets.run_recovery import ORPHANED_TAG, fail_orphaned_runs, process_running, run_worker

TAGQA = Path(sys.executable).parent / "tagqa"

JOBS = '''
import time
import dagster as dg

@dg.op
def hold(context: dg.OpExecutionContext) -> None:
    if "dagster/retry_number" not in context.run.tags:  # the first attempt runs until it is killed
        time.sleep(600)

@dg.op
def finish() -> None:
    pass

@dg.job(tags={"tagqa/resource": "cpu-heavy"})
def long_training():
    hold()

@dg.job(tags={"tagqa/resource": "cpu-heavy"})
def next_training():
    finish()

defs = dg.Definitions(jobs=[long_training, next_training])
'''


def _started_run(instance: dg.DagsterInstance, job: str, pid: int | None) -> dg.DagsterRun:
    """A run of ``job`` in STARTED, with the launcher's "Started process for run (pid: N)" event when ``pid``."""
    from dagster._core.events import EngineEventData

    run = instance.create_run_for_job(dg.GraphDefinition(name=job).to_job(), run_config={})
    instance.report_dagster_event(dg.DagsterEvent(event_type_value=dg.DagsterEventType.RUN_START.value,
                                                  job_name=job, message="started"), run_id=run.run_id)
    if pid is not None:
        instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))
    assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
    return run


def test_only_runs_whose_process_is_gone_are_marked(tmp_path: Path) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        dead = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            gone = _started_run(instance, "gone", dead.pid)
            running = _started_run(instance, "running", alive.pid)
            unrecorded = _started_run(instance, "unrecorded", None)
            assert run_worker(instance, gone.run_id)[0] == dead.pid
            # Another Dagster may still be launching a run that has no process yet: left alone within the grace.
            marked = fail_orphaned_runs(instance, grace_seconds=3600)
            assert [(m.run_id, m.was, m.now, m.pid) for m in marked] == [(gone.run_id, "STARTED", "FAILURE", dead.pid)]
            assert instance.get_run_by_id(running.run_id).status == dg.DagsterRunStatus.STARTED
            assert instance.get_run_by_id(unrecorded.run_id).status == dg.DagsterRunStatus.STARTED
            marked = fail_orphaned_runs(instance, grace_seconds=0)
            assert [(m.run_id, m.pid) for m in marked] == [(unrecorded.run_id, None)]
            assert instance.get_run_by_id(running.run_id).status == dg.DagsterRunStatus.STARTED
            failed = instance.get_run_by_id(gone.run_id)
            assert failed.tags[ORPHANED_TAG] == "true"
            failure = instance.all_logs(gone.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)[-1]
            assert f"its run process (pid {dead.pid}) is gone" in failure.dagster_event.message
            assert fail_orphaned_runs(instance, grace_seconds=0) == []  # nothing twice
        finally:
            alive.kill()
            alive.wait()


def test_a_reused_pid_is_not_the_run_worker(tmp_path: Path) -> None:
    """A pid that a process born after the run's start now holds does not keep the run alive."""
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        run = _started_run(instance, "reused", os.getpid())  # this process is older than the event: alive
        assert fail_orphaned_runs(instance, grace_seconds=0) == []
        recorded_at = run_worker(instance, run.run_id)[1]
        # As if the event had been recorded an hour before this process was born: the pid is someone else's now.
        marked = fail_orphaned_runs(instance, grace_seconds=0,
                                    is_running=lambda pid, at: process_running(pid, recorded_at - 3600))
        assert [m.run_id for m in marked] == [run.run_id]


def test_an_instance_whose_runs_are_not_local_processes_is_refused(tmp_path: Path) -> None:
    """Production's launcher runs each run elsewhere (ECS): a missing pid there says nothing, so no run is touched."""
    launcher = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}
    with dg.instance_for_test(temp_dir=str(tmp_path), overrides={"run_launcher": launcher}) as instance:
        run = _started_run(instance, "elsewhere", None)
        with pytest.raises(ValueError, match="launches runs with MockedRunLauncher, not Dagster's default launcher"):
            fail_orphaned_runs(instance, grace_seconds=0)
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED


def test_the_cli_needs_dagster_home(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    done = subprocess.run([str(TAGQA), "runs", "fail-orphaned"], env=env, capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 2 and "DAGSTER_HOME is not set" in done.stderr


@pytest.mark.slow  # two dagster dev starts
def test_a_run_killed_with_its_stack_stops_blocking_the_cpu_heavy_slot(tmp_path: Path) -> None:
    (tmp_path / "jobs.py").write_text(JOBS)
    (tmp_path / "workspace.yaml").write_text(textwrap.dedent("""\
        load_from:
          - python_file: {relative_path: jobs.py, location_name: jobs, working_directory: .}
    """))
    env = {**os.environ, "DAGSTER_DISABLE_TELEMETRY": "1"}
    launch = ("mutation($p: ExecutionParams!) { launchRun(executionParams: $p) { __typename "
              "... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }")

    def submit(dev: DagsterDev, job: str) -> str:
        answer = dev.graphql(launch, {"p": {"selector": {"repositoryLocationName": "jobs",
                                                         "repositoryName": "__repository__", "jobName": job}}})
        assert answer["launchRun"]["__typename"] == "LaunchRunSuccess", answer
        return answer["launchRun"]["run"]["runId"]

    def status(dev: DagsterDev, run_id: str) -> str:
        return next(r["status"] for r in dev.runs() if r["runId"] == run_id)

    first = DagsterDev(tmp_path, env, workspace=tmp_path / "workspace.yaml")
    try:
        first.start()
        long_run = submit(first, "long_training")
        wait_until(lambda: status(first, long_run) == "STARTED", "the long run to start", 120, poll=0.5,
                   diagnose=first.log_tail)
        home_env = {**env, "DAGSTER_HOME": str(first.home)}
        with dg.DagsterInstance.from_config(str(first.home)) as instance:
            wait_until(lambda: run_worker(instance, long_run), "its run process to be recorded", 60, poll=0.5)
            pid, _ = run_worker(instance, long_run)
        # While it runs, the command leaves it alone.
        live = subprocess.run([str(TAGQA), "runs", "fail-orphaned"], env=home_env, capture_output=True,
                              text=True, timeout=120, cwd=tmp_path)
        assert live.returncode == 0 and "no run was left in progress" in live.stdout, live.stdout + live.stderr
        # The hard stop: the whole group SIGKILLed, run worker included.
        os.killpg(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=30)
        wait_until(lambda: not process_running(pid, time.time()), "the run process to be gone", 30)
        first.process = None
    finally:
        first.stop()
    second = DagsterDev(tmp_path, env, workspace=tmp_path / "workspace.yaml")
    try:
        second.start()
        assert status(second, long_run) == "STARTED", "the fault did not happen: the killed run is not left STARTED"
        next_run = submit(second, "next_training")
        # The fault's cost: the dead run holds the one cpu-heavy slot, so the next run is not launched.
        time.sleep(20)
        assert status(second, next_run) == "QUEUED", second.runs()
        recovered = subprocess.run([str(TAGQA), "runs", "fail-orphaned"], env=home_env, capture_output=True,
                                   text=True, timeout=120, cwd=tmp_path)
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        assert f"run {long_run} (long_training) was left STARTED" in recovered.stdout
        assert f"its process {pid} is gone" in recovered.stdout and "now FAILURE" in recovered.stdout
        assert status(second, long_run) == "FAILURE"
        wait_until(lambda: status(second, next_run) == "SUCCESS", "the next cpu-heavy run to finish", 180,
                   poll=1.0, diagnose=lambda: f"{second.runs()}\n{second.log_tail()}")
        # make run's instance retries a run whose process died (run_retries, not for step failures): once.
        retries = wait_until(lambda: [r for r in second.runs({"dagster/parent_run_id": long_run})
                                      if r["status"] == "SUCCESS"], "the killed run's automatic retry", 180,
                             poll=1.0, diagnose=lambda: f"{second.runs()}\n{second.log_tail()}")
        assert len(retries) == 1 and {"key": "dagster/retry_number", "value": "1"} in retries[0]["tags"]
    finally:
        second.stop()
