"""Shared fixtures: isolated state folders, a real S3 API endpoint, the real dataset."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_DATASET = REPO.parent / "shared" / "data" / "metal-tags"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep every tool's state inside the test session: no ~/.config, no network downloads."""
    state = tmp_path_factory.mktemp("tagqa-state")
    values = {
        "TAGQA_STORE": str(state / "store"),
        "TAGQA_S3_ENDPOINT_URL": "",
        "TAGQA_AWS_REGION": "us-east-1",
        "DAGSTER_HOME": str(state / "dagster"),
        "YOLO_CONFIG_DIR": str(state / "ultralytics"),
        "YOLO_OFFLINE": "1",
        "MPLCONFIGDIR": str(state / "matplotlib"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        # The embedded default of every backend (.env.example); tests that need another
        # backend configure its resource directly.
        "TAGQA_LABELING_BACKEND": "inbox",
        "TAGQA_LABEL_STORE": "local",
        "TAGQA_FEATURE_GROUP": "tagqa-labels",
        "LABEL_STUDIO_URL": "http://127.0.0.1:8080",
        "LABEL_STUDIO_API_TOKEN": "",
        "TAGQA_GROUNDTRUTH_ROLE_ARN": "",
        "TAGQA_GROUNDTRUTH_WORKTEAM_ARN": "",
        "TAGQA_FEATURE_STORE_ROLE_ARN": "",
        "TAGQA_FEATURE_STORE_OFFLINE_URI": "",
        "TAGQA_TRAINING_BACKEND": "local",
        "TAGQA_REGISTRY_BACKEND": "local",
        "TAGQA_SAGEMAKER_ROLE_ARN": "",
        "TAGQA_SAGEMAKER_TRAINING_IMAGE": "",
        "TAGQA_SAGEMAKER_INSTANCE_TYPE": "",
        "TAGQA_SAGEMAKER_ENDPOINT_URL": "",
        "TAGQA_SAGEMAKER_MODEL_PACKAGE_GROUP": "tagqa-scratch-detector",
        "TAGQA_GATE_METRIC": "map50_95",
        "TAGQA_GATE_SPLIT": "test",
        "TAGQA_GATE_THRESHOLD": "0.40",
        "TAGQA_CHAMPION_MARGIN": "0.01",
        "TAGQA_HARD_EXAMPLE_MARGIN": "0.05",
        "TAGQA_APPROVE_WITHOUT_CHAMPION": "false",
        "TAGQA_TRAIN_EPOCHS": "0",
        "TAGQA_TRAIN_IMGSZ": "0",
        "TAGQA_TRAIN_BATCH": "0",
        "TAGQA_RETRAIN_EVERY_DAYS": "7",
        "TAGQA_DEPLOY_TARGET": "local",
        "TAGQA_DEVICE_ID": "line-1",
        "TAGQA_DEVICES_ROOT": str(state / "devices"),
        "TAGQA_MQTT_BROKER": "127.0.0.1:1883",
        "TAGQA_GREENGRASS_TARGET_ARN": "",
        "TAGQA_GREENGRASS_ROOT": "/greengrass/v2",
        "TAGQA_COMPONENT_PREFIX": "com.tagqa.",
        "TAGQA_DEPLOY_TIMEOUT_SECONDS": "600",
        "TAGQA_DEVICE_CONFIGURATION": "",
        "TAGQA_EDGE_WHEELS_DIR": str(state / "edge-wheels"),
        "TAGQA_EDGE_WHEEL_PLATFORM": "",
        "TAGQA_EDGE_PYTHON_VERSION": "",
        "TAGQA_EDGE_HTTP": "",  # a device under test serves HTTP only where its test asks (never make run's 8081)
    }
    (state / "dagster").mkdir()
    saved = {key: os.environ.get(key) for key in values}
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
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


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
