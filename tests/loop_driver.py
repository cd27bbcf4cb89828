"""Drive the code location the way the Dagster daemon does, inside a test.

One ``tick()`` evaluates every running sensor (with its persisted cursor, against the
instance and the repository's resources), applies its dynamic-partition requests, launches
each run request whose ``run_key`` was not launched before, then evaluates the declarative
automation conditions and launches what they request. Runs execute in process against the
same instance, so materializations, partitions and run history are real.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import dagster as dg


def _outcome(raw: object, context: dg.SensorEvaluationContext) -> tuple[list[dg.RunRequest], list, str | None]:
    """(run requests, dynamic-partition requests, new cursor) of whatever a sensor function returned."""
    if raw is None or isinstance(raw, dg.SkipReason):
        return [], [], context.cursor
    if isinstance(raw, dg.SensorResult):
        cursor = raw.cursor if raw.cursor is not None else context.cursor
        return list(raw.run_requests or []), list(raw.dynamic_partitions_requests or []), cursor
    if isinstance(raw, dg.RunRequest):
        return [raw], [], context.cursor
    return [item for item in raw if isinstance(item, dg.RunRequest)], [], context.cursor


@dataclass
class LaunchedRun:
    """One run the driver launched: who asked for it, and its outcome."""

    origin: str
    run_key: str | None
    partition_key: str | None
    assets: list[str]
    success: bool
    run_id: str


@dataclass
class LoopDriver:
    """Sensors, automation conditions and runs of ``defs`` on ``instance``."""

    defs: dg.Definitions
    instance: dg.DagsterInstance
    cursors: dict[str, str | None] = field(default_factory=dict)
    run_keys: set[str] = field(default_factory=set)
    runs: list[LaunchedRun] = field(default_factory=list)
    automation_cursor: object = None

    @property
    def repository(self) -> dg.RepositoryDefinition:
        return self.defs.get_repository_def()

    def tick(self, *, automation: bool = True) -> list[LaunchedRun]:
        """One daemon pass over all sensors (and automation conditions); returns the runs it launched."""
        launched: list[LaunchedRun] = []
        for sensor in self.repository.sensor_defs:
            if sensor.default_status != dg.DefaultSensorStatus.RUNNING:
                continue
            if isinstance(sensor, dg.AutomationConditionSensorDefinition):
                continue  # evaluated below, as the daemon's asset daemon does
            launched += self.tick_sensor(sensor.name)
        if automation:
            launched += self._automation()
        return launched

    def tick_sensor(self, name: str) -> list[LaunchedRun]:
        """Evaluate one sensor once and launch its new run requests."""
        sensor = self.repository.get_sensor_def(name)
        # Entered as a context manager, as the daemon does: nested resources need it.
        with dg.build_sensor_context(
            instance=self.instance, cursor=self.cursors.get(name), repository_def=self.repository, sensor_name=name,
            resources=self.repository.get_top_level_resources(),
        ) as context:
            requests, partition_requests, cursor = _outcome(sensor(context), context)
        # Partitions first, as the daemon does: the run requests may name the new ones.
        for request in partition_requests:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        self.cursors[name] = cursor
        launched = []
        for request in requests:
            if request.run_key and request.run_key in self.run_keys:
                continue
            job = self.repository.get_job(request.job_name or sensor.job_name)
            launched.append(self._execute(name, job, request))
        return launched

    def _execute(self, origin: str, job: dg.JobDefinition, request: dg.RunRequest) -> LaunchedRun:
        tags = dict(request.tags or {})
        if request.run_key:
            tags["dagster/run_key"] = request.run_key
            self.run_keys.add(request.run_key)
        result = job.execute_in_process(
            run_config=request.run_config or None,
            instance=self.instance,
            partition_key=request.partition_key,
            tags=tags,
            asset_selection=list(request.asset_selection) if request.asset_selection else None,
            raise_on_error=False,
        )
        assets = sorted({event.asset_key.to_user_string() for event in result.get_asset_materialization_events() if event.asset_key})
        run = LaunchedRun(origin, request.run_key, request.partition_key, assets, result.success, result.run_id)
        self.runs.append(run)
        return run

    def _automation(self) -> list[LaunchedRun]:
        result = dg.evaluate_automation_conditions(defs=self.defs, instance=self.instance, cursor=self.automation_cursor)
        self.automation_cursor = result.cursor
        launched = []
        for key in sorted(self.defs.resolve_asset_graph().get_all_asset_keys(), key=lambda k: k.to_user_string()):
            partitions = result.get_requested_partitions(key)
            for partition in sorted(partitions, key=str):
                job = self.repository.get_implicit_global_asset_job_def()
                request = dg.RunRequest(asset_selection=[key], partition_key=partition, tags={"tagqa/trigger": "automation condition"})
                launched.append(self._execute("automation", job, request))
        return launched

    def run_until_quiet(self, *, max_ticks: int = 12) -> list[LaunchedRun]:
        """Tick until a tick launches nothing (what the daemon reaches between external events)."""
        launched: list[LaunchedRun] = []
        for _ in range(max_ticks):
            new = self.tick()
            launched += new
            if not new:
                return launched
        raise AssertionError(f"the loop did not settle in {max_ticks} ticks: {[(r.origin, r.assets) for r in launched[-8:]]}")

    def failures(self) -> list[LaunchedRun]:
        """Launched runs that failed."""
        return [run for run in self.runs if not run.success]
