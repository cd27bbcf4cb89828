"""The Dagster UI as ``make run`` serves it: a real ``dagster dev`` (webserver + daemon) on loopback.

The server runs the repository's workspace.yaml with the embedded default of every backend,
a fresh DAGSTER_HOME holding deploy/dagster/local/dagster.yaml, and a store into which a
camera uploaded a few images before start. Its GraphQL API must show the asset graph of
DESIGN.md (every asset in its stage group, every edge, the dataset-version partitions), the
sensors and schedules on by default, and the daemon moving the loop (the raw-image sensor
ingests the uploaded images). Headless Chromium then renders the expanded asset graph and the
``raw_images`` page: the pictures are checked (rendered DOM names every asset, pixels are not
blank); `make screenshots` copies them into docs/img/ for the README (SCREENSHOTS_DIR), a
plain test run never touches a tracked file.
"""

import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dagster_dev import DagsterDev
from tagqa_assets.ingestion.synthetic import generate_tags
from tagqa_assets.ingestion.writers import upload_folder
from tagqa_assets.storage import open_store

IMAGES = 6
# `make screenshots` sets this to docs/img; otherwise the pictures stay in the test's temporary folder.
SCREENSHOTS_DIR = os.environ.get("SCREENSHOTS_DIR", "")
pytestmark = pytest.mark.slow  # dagster dev (webserver + daemon) and headless Chromium
GROUPS = {
    "raw_images": "ingestion",
    "unlabeled_images": "labeling", "label_store": "labeling",
    "dataset_version": "datasets", "hard_examples": "datasets",
    "trained_model": "training", "onnx_model": "training", "model_evaluation": "training",
    "registered_model": "registry",
    "edge_component": "deployment", "edge_deployment": "deployment",
    "line_results": "monitoring",
}
EDGES = {
    ("raw_images", "label_store"), ("raw_images", "unlabeled_images"), ("label_store", "unlabeled_images"),
    ("label_store", "dataset_version"), ("label_store", "hard_examples"), ("dataset_version", "trained_model"),
    ("trained_model", "onnx_model"), ("onnx_model", "model_evaluation"), ("hard_examples", "model_evaluation"),
    ("model_evaluation", "registered_model"), ("registered_model", "edge_component"),
    ("edge_component", "edge_deployment"), ("edge_deployment", "line_results"),
}
PARTITIONED = {"dataset_version", "trained_model", "onnx_model", "model_evaluation", "registered_model"}
SENSORS = {"raw_image_sensor", "labeling_job_sensor", "dataset_version_sensor", "model_training_sensor",
           "model_approval_sensor", "line_results_sensor"}
SCHEDULES = {"raw_reconcile_schedule", "retraining_schedule"}
STAGES = ("ingestion", "labeling", "datasets", "training", "registry", "deployment", "monitoring")
# Every stage group opened (group ids are "<repository>@<location>:<group>" as the lineage page spells them).
GRAPH_PATH = "/asset-groups?expanded=" + ",".join(f"global@global:{group}" for group in STAGES)
# The graph layout is computed asynchronously in a web worker: give the page a long virtual-time budget.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--virtual-time-budget=60000", "--run-all-compositor-stages-before-draw"]


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory, isolated_environment: Path) -> Iterator[DagsterDev]:
    """``dagster dev`` on a free loopback port, with IMAGES camera images waiting in raw/."""
    work = tmp_path_factory.mktemp("ui")
    upload = work / "upload"
    upload.mkdir()
    for tag in generate_tags(IMAGES, seed=8, prefix="ui"):
        (upload / tag.name).write_bytes(tag.jpeg)
    store = work / "store"
    assert len(upload_folder(open_store(str(store)), upload, source="camera-1").keys) == IMAGES
    env = {**os.environ, "TAGQA_STORE": str(store), "TAGQA_DEVICES_ROOT": str(work / "devices")}
    server = DagsterDev(work, env)
    try:
        server.start(timeout=240)  # generous: a busy 2-core machine takes minutes to start dagster dev
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ingestion_run(ui: DagsterDev) -> dict:
    """The run the daemon's raw_image_sensor launched for the uploaded images, once it succeeded."""
    return ui.wait_for_sensor_run("raw_image_sensor", 150, poll=1)


def _repository(ui: DagsterDev) -> dict:
    data = ui.graphql(
        "{ repositoriesOrError { __typename ... on RepositoryConnection { nodes { name location { name } "
        "sensors { name sensorType minIntervalSeconds sensorState { status } assetSelection { assetKeys { path } } } "
        "schedules { name cronSchedule scheduleState { status } } } } } }")["repositoriesOrError"]
    assert data["__typename"] == "RepositoryConnection", data
    [repository] = data["nodes"]
    assert repository["location"]["name"] == "tagqa"
    return repository


def _asset_nodes(ui: DagsterDev) -> dict[str, dict]:
    nodes = ui.graphql("{ assetNodes { assetKey { path } groupName dependencyKeys { path } "
                       "partitionDefinition { type name } automationCondition { label } } }")["assetNodes"]
    return {"/".join(node["assetKey"]["path"]): node for node in nodes}


def test_asset_graph_has_every_stage_and_edge(ui: DagsterDev) -> None:
    nodes = _asset_nodes(ui)
    assert {key: node["groupName"] for key, node in nodes.items()} == GROUPS
    edges = {("/".join(dep["path"]), key) for key, node in nodes.items() for dep in node["dependencyKeys"]}
    assert edges == EDGES
    partitions = {key: node["partitionDefinition"] for key, node in nodes.items()}
    assert {k for k, p in partitions.items() if p} == PARTITIONED | {"line_results"}
    assert all(partitions[k] == {"type": "DYNAMIC", "name": "dataset_versions"} for k in PARTITIONED)
    assert partitions["line_results"]["type"] == "TIME_WINDOW"


def test_sensors_and_schedules_are_on_by_default(ui: DagsterDev) -> None:
    repository = _repository(ui)
    sensors = {s["name"]: s["sensorState"]["status"] for s in repository["sensors"]}
    schedules = {s["name"]: s["scheduleState"]["status"] for s in repository["schedules"]}
    assert {name: sensors.get(name) for name in SENSORS} == dict.fromkeys(SENSORS, "RUNNING")
    assert {name: schedules.get(name) for name in SCHEDULES} == dict.fromkeys(SCHEDULES, "RUNNING")


def test_automation_conditions_are_evaluated_by_default(ui: DagsterDev) -> None:
    # Assets with an automation condition (hard_examples is eager) only move if a RUNNING
    # automation-condition sensor covers them; Dagster's implicit default sensor starts STOPPED.
    automated = {key for key, node in _asset_nodes(ui).items() if node["automationCondition"]}
    assert "hard_examples" in automated
    covered = {
        "/".join(key["path"]): sensor["sensorState"]["status"]
        for sensor in _repository(ui)["sensors"] if sensor["sensorType"] in ("AUTOMATION", "AUTO_MATERIALIZE")
        for key in (sensor["assetSelection"] or {}).get("assetKeys", [])
    }
    assert {key: covered.get(key) for key in automated} == dict.fromkeys(automated, "RUNNING"), \
        "assets with an automation condition need a RUNNING automation-condition sensor in the embedded default"


def test_daemon_ingests_uploaded_images(ui: DagsterDev, ingestion_run: dict) -> None:
    tags = {t["key"]: t["value"] for t in ingestion_run["tags"]}
    assert tags["tagqa/new_images"] == str(IMAGES)
    asset = ui.graphql(
        '{ assetOrError(assetKey: {path: ["raw_images"]}) { ... on Asset { assetMaterializations(limit: 1) { runId '
        "metadataEntries { label ... on IntMetadataEntry { intValue } ... on TextMetadataEntry { text } } } } } }")
    [materialization] = asset["assetOrError"]["assetMaterializations"]
    assert materialization["runId"] == ingestion_run["runId"]
    metadata = {e["label"]: e.get("intValue", e.get("text")) for e in materialization["metadataEntries"]}
    assert (metadata["files_seen"], metadata["accepted"], metadata["quarantined"]) == (IMAGES, IMAGES, 0)
    assert metadata["store"] == ui.env["TAGQA_STORE"]


def _chromium(url: str, window: str, *, screenshot: Path | None, profile: Path) -> str:
    """Render ``url`` headless; writes ``screenshot`` when given, returns the rendered DOM otherwise."""
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run `make system-deps` (Debian package chromium)")
    output = [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    process = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--window-size={window}", f"--user-data-dir={profile}", *output, url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        out, err = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise AssertionError(f"chromium did not finish rendering {url} in 120 s")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"chromium failed on {url}: {err.decode(errors='replace')[-2000:]}"
    return out.decode(errors="replace")


def _publish(png: Path) -> None:
    if SCREENSHOTS_DIR:
        shutil.copyfile(png, Path(SCREENSHOTS_DIR) / png.name)


def _assert_not_blank(png: Path, size: tuple[int, int], region: tuple[float, float]) -> None:
    """The picture has ``size`` and its ``region`` (left, top fractions to the bottom right) shows drawn content."""
    with Image.open(png) as image:
        assert image.size == size, f"{png}: {image.size}"
        gray = np.asarray(image.convert("L"), dtype=np.float32)
    height, width = gray.shape
    area = gray[int(height * region[1]):, int(width * region[0]):]
    background = np.bincount(area.astype(np.uint8).ravel()).argmax()
    drawn = np.abs(area - background) > 40
    assert area.std() > 5 and drawn.mean() > 0.003, f"{png}: region looks blank (std {area.std():.1f}, drawn {drawn.mean():.4f})"


def test_asset_graph_screenshot(ui: DagsterDev, ingestion_run: dict, tmp_path: Path) -> None:
    assert ui.graphql("mutation { setNuxSeen }") == {"setNuxSeen": True}  # the community dialog covers the page until then
    url = ui.url + GRAPH_PATH
    dom = _chromium(url, "1800,1100", screenshot=None, profile=tmp_path / "profile")
    missing = [name for name in [*GROUPS, *STAGES] if name not in dom]
    assert not missing, f"rendered asset graph lacks {missing}"
    drawn_edges = len(re.findall(r'<path [^>]*stroke="var\(--color-lineage-edge\)"[^>]*marker-end=', dom))
    assert drawn_edges == len(EDGES), f"the rendered graph draws {drawn_edges} edges, the code location has {len(EDGES)}"
    png = tmp_path / "asset-graph.png"
    _chromium(url, "1800,1100", screenshot=png, profile=tmp_path / "profile")
    _assert_not_blank(png, (1800, 1100), region=(0.3, 0.1))
    _publish(png)


def test_raw_images_page_shows_ingestion_metadata(ui: DagsterDev, ingestion_run: dict, tmp_path: Path) -> None:
    ui.graphql("mutation { setNuxSeen }")
    url = ui.url + "/assets/raw_images"
    dom = _chromium(url, "1600,1500", screenshot=None, profile=tmp_path / "profile")
    for text in ("files_seen", "accepted", "quarantined", "images_by_source", "camera-1", "raw_image_sensor", "ingestion"):
        assert text in dom, f"the raw_images page does not show {text!r}"
    png = tmp_path / "asset-raw-images.png"
    _chromium(url, "1600,1500", screenshot=png, profile=tmp_path / "profile")
    _assert_not_blank(png, (1600, 1500), region=(0.15, 0.1))
    _publish(png)
