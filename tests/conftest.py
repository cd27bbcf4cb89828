"""Shared fixtures: isolated state folders, a real S3 API endpoint, the real dataset."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from polling import wait_until

REPO = Path(__file__).resolve().parents[1]
REAL_DATASET = REPO.parent / "shared" / "data" / "metal-tags"


# Fixtures that train a model or start a heavy server: every test using one is `slow`
# (left out of `make test-quick`, run by `make test`). Tests that are slow by themselves
# carry `@pytest.mark.slow` (or a module-wide `pytestmark`).
SLOW_FIXTURES = {
    "chain", "chain_copy",  # the session's trained model chain (model_fixtures.trained_chain)
    "label_studio",  # a real Label Studio server
    "ui",  # dagster dev + headless Chromium
    "postgres",  # a PostgreSQL cluster
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses one of SLOW_FIXTURES as slow."""
    for item in items:
        if SLOW_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep every tool's state inside the test session: no ~/.config, no network downloads.

    tagqa's settings are the embedded defaults (tagqa_assets/settings.py) except the state
    folders; a developer's TAGQA_*/LABEL_STUDIO_* variables and ./tagqa.env are kept out.
    Tests that need another backend configure its resource directly or set the variable.
    """
    state = tmp_path_factory.mktemp("tagqa-state")
    (state / "settings.env").write_text("# the test session's settings file: empty, every setting at its default\n")
    values = {
        "TAGQA_SETTINGS_FILE": str(state / "settings.env"),
        "TAGQA_STORE": str(state / "store"),
        "TAGQA_DEVICES_ROOT": str(state / "devices"),
        "TAGQA_EDGE_WHEELS_DIR": str(state / "edge-wheels"),
        "TAGQA_AWS_REGION": "us-east-1",
        "TAGQA_RAW_EVENT_QUEUE_URL": "",
        "TAGQA_RAW_FALLBACK_EVERY_TICKS": "120",
        "TAGQA_EDGE_HTTP": "off",  # a device under test serves HTTP only where its test asks (never make run's 8081)
        "DAGSTER_HOME": str(state / "dagster"),
        "YOLO_CONFIG_DIR": str(state / "ultralytics"),
        "YOLO_OFFLINE": "1",
        "MPLCONFIGDIR": str(state / "matplotlib"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    (state / "dagster").mkdir()
    foreign = [key for key in os.environ if key.startswith(("TAGQA_", "LABEL_STUDIO_")) and key not in values]
    saved = {key: os.environ.get(key) for key in [*values, *foreign]}
    for key in foreign:
        del os.environ[key]
    os.environ.update(values)
    yield state
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(autouse=True)
def no_leaked_definitions_state() -> Iterator[None]:
    """Fail the test that leaves a Dagster instance's definitions-state storage installed.

    Invoking a schedule directly on a context built outside a ``with`` block installs its
    instance's storage process-wide; once that instance is garbage-collected every later
    ``dg.materialize`` fails with "undefined DagsterInstance weakref", far from the cause.
    """
    from dagster._core.storage.defs_state.base import DefsStateStorage

    yield
    leaked = DefsStateStorage.get()
    assert leaked is None, (f"this test left {leaked!r} installed as the current definitions-state storage; "
                            "build schedule/sensor contexts with `with dg.build_..._context(...) as context:`")


@pytest.fixture
def real_dataset() -> Path:
    """The real metal-tag dataset beside the repository; skips (saying why) when absent."""
    if not (REAL_DATASET / "labels.csv").is_file():
        pytest.skip(f"real dataset not found at {REAL_DATASET} (external data, not part of the repository)")
    return REAL_DATASET


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's standalone S3/SageMaker/IoT server on 127.0.0.1, spoken to over real HTTP."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        wait_for_http(endpoint + "/moto-api/", "moto's server", timeout=60)
        yield endpoint
    finally:
        server.stop()


def wait_for_http(url: str, what: str, *, timeout: float) -> None:
    """Wait until ``url`` answers HTTP at all (any status); fails naming ``what``, the URL, the wait and the last error."""
    import urllib.error
    import urllib.request

    def answers() -> bool:
        try:
            urllib.request.urlopen(url, timeout=5).close()
        except urllib.error.HTTPError:
            pass  # it answered
        return True

    wait_until(answers, f"{what} to answer {url}", timeout, poll=0.2,
               retry_on=(urllib.error.URLError, ConnectionError, TimeoutError))


@pytest.fixture
def s3_bucket(moto_endpoint: str) -> str:
    """A fresh, empty bucket on the moto server; returns its name."""
    name = f"tagqa-test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


@pytest.fixture
def local_store(tmp_path: Path):
    """A fresh local-folder store."""
    from tagqa_assets.storage import LocalObjectStore

    return LocalObjectStore(tmp_path / "store")


@pytest.fixture
def s3_store(moto_endpoint: str, s3_bucket: str):
    """A fresh S3 store (bucket + prefix) on the moto server."""
    from tagqa_assets.storage import S3ObjectStore

    return S3ObjectStore(f"s3://{s3_bucket}/tagqa", endpoint_url=moto_endpoint, region="us-east-1")


@pytest.fixture(params=["local", "s3"])
def any_store(request: pytest.FixtureRequest):
    """Each test using this runs once per store backend."""
    return request.getfixturevalue(f"{request.param}_store")
