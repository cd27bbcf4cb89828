"""Runs a stopped stack left "in progress": found at the next start and marked failed, freeing their slots.

On the embedded default (``make run``) Dagster's default run launcher executes each run in a
process under the code server. When the stack goes down hard (run.sh's SIGKILL after its grace
period, a power cut, a closed laptop lid), that process dies with nobody left to record it, and
the run stays STARTING, STARTED or CANCELING for good. The queued run coordinator counts such
runs against ``max_concurrent_runs`` and against the ``tagqa/resource: cpu-heavy`` limit of one
(deploy/dagster/local/dagster.yaml), so a single training run lost that way would keep every
later training run queued forever. Dagster's run monitoring does not catch it: it checks run
workers only through launchers that support health checks (ECS, Kubernetes), not the default one.

deploy/local/run.sh therefore runs ``tagqa runs fail-orphaned`` before it starts Dagster. A run
is orphaned when the process Dagster recorded for it ("Started process for run (pid: N)") is no
longer running, or, where no process was recorded, when the run has not changed for
``grace_seconds``. Live runs of another Dagster serving the same instance are left alone.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import dagster as dg
import psutil

log = logging.getLogger(__name__)

ORPHAN_STATUSES = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)
ORPHANED_TAG = "tagqa/orphaned"
# Where no run worker was recorded (the launch itself was cut short), a run younger than this may still be
# starting under another Dagster process on the same instance.
DEFAULT_GRACE_SECONDS = 120.0
_STARTED_PROCESS = "Started process for run"


@dataclass(frozen=True)
class OrphanedRun:
    """A run marked finished by ``fail_orphaned_runs``: what it was and what it is now."""

    run_id: str
    job_name: str
    was: str  # the status it was stuck in
    now: str  # FAILURE, or CANCELED for a run that was being canceled
    pid: int | None  # its run worker's recorded process, None where none was recorded


def run_worker(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The run worker Dagster's launcher recorded for ``run_id``: (pid, when it was recorded), or None."""
    found = None
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        event = entry.dagster_event
        if event is None or not (event.message or "").startswith(_STARTED_PROCESS):
            continue
        pid = event.engine_event_data.metadata.get("pid")
        if pid is not None and str(pid.value).isdigit():
            found = (int(pid.value), entry.timestamp)
    return found


def process_running(pid: int, recorded_at: float) -> bool:
    """Whether ``pid`` is a live process that already existed at ``recorded_at`` (a reused pid is not it)."""
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return process.create_time() <= recorded_at + 1.0
    except psutil.NoSuchProcess:
        return False


def fail_orphaned_runs(instance: dg.DagsterInstance, *, grace_seconds: float = DEFAULT_GRACE_SECONDS,
                       is_running: Callable[[int, float], bool] = process_running,
                       now: Callable[[], float] = time.time) -> list[OrphanedRun]:
    """Mark every orphaned run of ``instance`` finished and say which.

    Guarantees: it acts only on an instance with Dagster's default run launcher, whose run workers
    are processes on this machine (ValueError otherwise). A run whose recorded worker process is
    alive is untouched; a run without a recorded worker is touched only once it has not changed
    for ``grace_seconds``. Each marked run gets a failure (or, if it was being canceled, a
    cancellation) event whose message says why, and the tag ``tagqa/orphaned=true``; it then no
    longer counts against concurrency limits.
    """
    launcher = instance.run_launcher
    if not isinstance(launcher, dg.DefaultRunLauncher):
        raise ValueError(f"this instance launches runs with {type(launcher).__name__}, not Dagster's default "
                         "launcher: its runs are not processes on this machine (run monitoring checks them)")
    marked: list[OrphanedRun] = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=list(ORPHAN_STATUSES))):
        run = record.dagster_run
        worker = run_worker(instance, run.run_id)
        if worker is not None:
            pid, recorded_at = worker
            if is_running(pid, recorded_at):
                continue
            why = f"its run process (pid {pid}) is gone"
        else:
            pid = None
            idle = now() - record.update_timestamp.timestamp()
            if idle < grace_seconds:
                continue
            why = f"no run process was recorded for it and it has not changed for {idle:.0f} s"
        message = (f"tagqa marked this run finished when the stack started: {why}. The stack was stopped "
                   f"(make run's SIGKILL after its grace period, a power cut) while the run was "
                   f"{run.status.value}. Nothing else will end it, and it held a concurrency slot; "
                   "re-execute it to run its steps again.")
        instance.add_run_tags(run.run_id, {ORPHANED_TAG: "true"})
        if run.status == dg.DagsterRunStatus.CANCELING:
            instance.report_run_canceled(run, message)
        else:
            instance.report_run_failed(run, message)
        now_status = instance.get_run_by_id(run.run_id).status.value
        log.debug("run %s (%s) was %s: %s; now %s", run.run_id, run.job_name, run.status.value, why, now_status)
        marked.append(OrphanedRun(run.run_id, run.job_name, run.status.value, now_status, pid))
    return marked
