"""deploy/dagster/production: the production Dagster instance against a real PostgreSQL server.

A PostgreSQL server (Debian's ``postgresql``, installed by ``make system-deps``) runs on
127.0.0.1 for this module. The instance is built from deploy/dagster/production/dagster.yaml
with only the run launcher swapped for the default one, so storage, run queue, run
monitoring and the S3 compute log manager (on the moto server) are the production ones.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import dagster as dg
import psycopg2
import pytest
import yaml
from conftest import REPO, free_port
from polling import wait_until
from dagster._core.workspace.context import WorkspaceProcessContext  # no public API loads a workspace file
from dagster._core.workspace.load_target import WorkspaceFileTarget
from dagster._grpc.client import DagsterGrpcClient
from dagster_aws.ecs import EcsRunLauncher
from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from tagqa_assets.contracts.labels import LabelRecord
from tagqa_assets.datasets.assets import dataset_version
from tagqa_assets.datasets.sensors import dataset_version_sensor
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.ingestion.writers import write_demo_set
from tagqa_assets.labeling.label_store import LocalLabelStore
from tagqa_assets.labeling.resources import LabelStoreResource
from tagqa_assets.partitions import dataset_versions
from tagqa_assets.storage import LocalObjectStore, StoreResource

pytestmark = pytest.mark.slow  # a PostgreSQL cluster and a code server

PRODUCTION = REPO / "deploy" / "dagster" / "production"
DEFAULT_LAUNCHER = {"module": "dagster.core.launcher", "class": "DefaultRunLauncher"}


@dataclass(frozen=True)
class Postgres:
    """A running server and the database the Dagster instance uses."""

    port: int
    user: str
    password: str
    database: str
    host: str = "127.0.0.1"

    def connect(self):
        return psycopg2.connect(host=self.host, port=self.port, user=self.user, password=self.password, dbname=self.database)


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[-3]))
    which = shutil.which("pg_ctl")
    if not found and not which:
        pytest.fail("PostgreSQL server binaries not found (pg_ctl): run `make system-deps` (Debian package `postgresql`)")
    return Path(found[-1] if found else which).parent


@pytest.fixture(scope="module")
def postgres() -> Iterator[Postgres]:
    """A fresh PostgreSQL cluster on a free loopback port, password-authenticated over TCP."""
    bindir = _postgres_bin()
    # Not pytest's tmp_path: PostgreSQL refuses to run as root, and the `postgres` user
    # it runs as must be able to reach the data directory (pytest-of-root is mode 0700).
    root = Path(tempfile.mkdtemp(prefix="tagqa-pg-"))
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        try:
            shutil.chown(root, "postgres", "postgres")
        except LookupError:
            shutil.rmtree(root)
            pytest.fail("running as root needs the `postgres` system user (created by the Debian `postgresql` package)")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    server = Postgres(port=free_port(), user="tagqa", password="pg-secret-for-tests", database="dagster_production")
    password_file = root / "password"
    password_file.write_text(server.password + "\n")
    if as_postgres:
        shutil.chown(password_file, "postgres", "postgres")
    data, log = root / "data", root / "server.log"

    def run(*command: str) -> None:
        result = subprocess.run([*as_postgres, *command], capture_output=True, text=True, timeout=180)
        if result.returncode:
            server_log = log.read_text() if log.exists() else ""
            pytest.fail(f"{' '.join(command[:2])} failed ({result.returncode}): {result.stderr}\n{server_log[-3000:]}")

    try:
        run(str(bindir / "initdb"), "-D", str(data), "-U", server.user, f"--pwfile={password_file}",
            "--auth-host=scram-sha-256", "--auth-local=peer", "-E", "UTF8", "--locale=C.UTF-8")
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    try:
        # Generous: a busy 2-core machine may take a while; pg_ctl names what it waited for.
        run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "120", "-o", options, "start")
        admin = psycopg2.connect(host=server.host, port=server.port, user=server.user, password=server.password, dbname="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{server.database}"')
        admin.close()
        yield server
    finally:
        # Also after a failed start: a half-started server must not outlive the fixture.
        subprocess.run([*as_postgres, str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"],
                       capture_output=True, text=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def production_env(postgres: Postgres, moto_endpoint: str, s3_bucket: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The environment the production dagster.yaml reads; S3 calls go to the moto server. Returns the log bucket."""
    monkeypatch.setenv("DAGSTER_PG_HOST", postgres.host)
    monkeypatch.setenv("DAGSTER_PG_PORT", str(postgres.port))
    monkeypatch.setenv("DAGSTER_PG_USERNAME", postgres.user)
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", postgres.password)
    monkeypatch.setenv("DAGSTER_PG_DB", postgres.database)
    monkeypatch.setenv("TAGQA_DAGSTER_LOG_BUCKET", s3_bucket)
    monkeypatch.setenv("TAGQA_AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", moto_endpoint)
    return s3_bucket


def write_instance_home(home: Path, *, run_launcher: dict | None = None) -> Path:
    """DAGSTER_HOME with the production dagster.yaml, optionally with another run launcher."""
    config = yaml.safe_load((PRODUCTION / "dagster.yaml").read_text())
    if run_launcher is not None:
        config["run_launcher"] = run_launcher
    home.mkdir(parents=True, exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return home


def seed_labeled_images(store: LocalObjectStore, count: int) -> None:
    """Synthetic tags in raw/, ingested into the inventory, with their exact labels approved in the label store."""
    keys, inbox_key = write_demo_set(store, count, seed=7)
    report = ingest_keys(store, keys, run_id="seed")
    assert len(report.accepted) == count, report
    rows = store.get_bytes(inbox_key).decode().splitlines()
    LocalLabelStore(store).append([LabelRecord.from_row(json.loads(row)) for row in rows])


def test_dataset_version_partition_run_and_events_are_stored_in_postgres(
    postgres: Postgres, production_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home = write_instance_home(tmp_path / "dagster-home", run_launcher=DEFAULT_LAUNCHER)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
    assert isinstance(instance.compute_log_manager, S3ComputeLogManager)

    store = LocalObjectStore(tmp_path / "store")
    seed_labeled_images(store, 6)
    resources = {"store": StoreResource(root=str(store.root)), "labels": LabelStoreResource()}
    # The partition is registered the way the daemon does it: from the sensor's request.
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        tick = dataset_version_sensor(context)
    assert isinstance(tick, dg.SensorResult) and tick.dynamic_partitions_requests, tick
    for request in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    (version,) = [request.partition_key for request in tick.run_requests]

    result = dg.materialize([dataset_version], partition_key=version, instance=instance, resources=resources)
    assert result.success
    assert DatasetVersionStore(store).is_committed(version)
    run_id = result.run_id

    # Read back with plain SQL: the partition, the run and its materialization are rows in Postgres.
    with postgres.connect() as connection, connection.cursor() as cursor:
        cursor.execute("SELECT partition FROM dynamic_partitions WHERE partitions_def_name = %s", (dataset_versions.name,))
        assert [row[0] for row in cursor.fetchall()] == [version]
        cursor.execute("SELECT status, partition FROM runs WHERE run_id = %s", (run_id,))
        assert cursor.fetchall() == [("SUCCESS", version)]
        cursor.execute(
            "SELECT asset_key, partition, event FROM event_logs WHERE run_id = %s AND dagster_event_type = 'ASSET_MATERIALIZATION'",
            (run_id,),
        )
        rows = cursor.fetchall()
        cursor.execute("SELECT DISTINCT dagster_event_type FROM event_logs WHERE run_id = %s", (run_id,))
        event_types = {row[0] for row in cursor.fetchall()}
    assert [(asset_key, partition) for asset_key, partition, _ in rows] == [('["dataset_version"]', version)]
    assert '"already_committed"' in rows[0][2], "the materialization's metadata is stored with the event"
    assert {"PIPELINE_START", "STEP_SUCCESS", "PIPELINE_SUCCESS"} <= event_types

    # Read back through the instance API, from a new instance object (nothing held in memory).
    instance.dispose()
    reader = dg.DagsterInstance.get()
    run = reader.get_run_by_id(run_id)
    assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == version
    assert reader.get_dynamic_partitions(dataset_versions.name) == [version]
    assert reader.get_materialized_partitions(dg.AssetKey("dataset_version")) == {version}
    records = reader.fetch_materializations(dg.AssetKey("dataset_version"), limit=10).records
    assert [(r.run_id, r.partition_key) for r in records] == [(run_id, version)]
    assert records[0].asset_materialization.metadata["already_committed"].value is False
    assert any(e.dagster_event_type == dg.DagsterEventType.STEP_SUCCESS for e in reader.all_logs(run_id))
    reader.dispose()

    # The run's captured stdout/stderr went to S3, where ephemeral run tasks leave them.
    listing = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=production_env, Prefix="dagster/compute-logs/")
    assert any(run_id in obj["Key"] for obj in listing.get("Contents", [])), listing.get("Contents")


def test_production_config_as_shipped_builds_the_ecs_launcher_queue_and_monitoring(production_env: str, tmp_path: Path):
    # Every key is checked against the schemas of Dagster and dagster-aws when the instance
    # builds them; the ECS launcher makes no AWS call until a run is launched.
    instance = dg.DagsterInstance.from_config(str(write_instance_home(tmp_path / "home")))
    try:
        launcher = instance.run_launcher
        assert isinstance(launcher, EcsRunLauncher)
        assert launcher.use_current_ecs_task_config and not launcher.include_sidecars
        assert launcher.secrets_tags == [], "a secrets tag would replace the secrets runs inherit from the daemon"
        assert {"cpu": "1024", "memory": "4096"}.items() <= dict(launcher.run_resources).items()
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs == 20
        assert {"key": "tagqa/resource", "value": "cpu-heavy", "limit": 2} in queue.tag_concurrency_limits
        assert instance.run_monitoring_enabled and launcher.supports_check_run_worker_health
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 1
        assert not instance.telemetry_enabled
    finally:
        instance.dispose()


def test_code_server_serves_the_location_the_production_workspace_names(
    postgres: Postgres, production_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    home = write_instance_home(tmp_path / "dagster-home", run_launcher=DEFAULT_LAUNCHER)
    port = free_port()
    image = "123456789012.dkr.ecr.eu-central-1.amazonaws.com/tagqa:3f2a1b0"
    context = {"ecs": {"task_role_arn": "arn:aws:iam::123456789012:role/tagqa-orchestrator"}}
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DAGSTER_CONTAINER_IMAGE": image,
        "DAGSTER_CONTAINER_CONTEXT": json.dumps(context),
        "TAGQA_STORE": str(tmp_path / "store"),
    }
    command = [str(Path(sys.executable).parent / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port),
               "-m", "tagqa_assets.definitions", "--location-name", "tagqa"]
    server = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        client = DagsterGrpcClient(port=port, host="127.0.0.1")

        def pings() -> bool:
            if server.poll() is not None:
                pytest.fail(f"code server on 127.0.0.1:{port} exited with {server.returncode} before answering a gRPC "
                            f"ping: {server.communicate()[0][-3000:]}")
            client.ping("ready?")
            return True
        try:  # any Exception from the ping: the server is still importing the code location
            wait_until(pings, f"the code server on 127.0.0.1:{port} to answer a gRPC ping", 180, poll=0.3,
                       retry_on=(Exception,))
        except AssertionError as exc:
            server.kill()
            raise AssertionError(f"{exc}; its output: {server.communicate()[0][-3000:]}") from exc
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        monkeypatch.setenv("TAGQA_CODE_SERVER_HOST", "127.0.0.1")
        monkeypatch.setenv("TAGQA_CODE_SERVER_PORT", str(port))
        instance = dg.DagsterInstance.get()
        target = WorkspaceFileTarget([str(PRODUCTION / "workspace.yaml")])
        with WorkspaceProcessContext(instance, target) as workspace:
            request = workspace.create_request_context()
            assert request.code_location_names == ["tagqa"]
            assert request.get_code_location_error("tagqa") is None
            location = request.get_code_location("tagqa")
            # What the ECS run launcher starts each run task with.
            assert location.container_image == image
            assert location.container_context == context
            assets = {node.asset_key for repo in location.get_repositories().values() for node in repo.get_asset_node_snaps()}
        instance.dispose()
        assert dg.AssetKey("dataset_version") in assets
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
