"""`dagster dev` (webserver + daemon): today's result parts become a line_results partition by themselves,
with plotted metadata and the drift check, as `make run` shows them."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dagster_dev import DagsterDev
from results_fixtures import result_message, topic_of
from tagqa_assets.monitoring.collector import CollectorSettings, ResultsCollector
from tagqa_assets.storage import LocalObjectStore


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, isolated_environment: Path) -> Iterator[DagsterDev]:
    work = tmp_path_factory.mktemp("monitoring-ui")
    store = LocalObjectStore(work / "store")
    now = datetime.now(timezone.utc)
    collector = ResultsCollector(store, CollectorSettings(), now=lambda: now)
    for index in range(60):
        collector.accept(topic_of("line-1"), result_message("line-1", index, now - timedelta(seconds=60 - index)))
    collector.flush(acknowledge=False)
    ui = DagsterDev(work, {**os.environ, "TAGQA_STORE": str(store.root), "TAGQA_DEVICES_ROOT": str(work / "devices")})
    try:
        ui.start(timeout=120)
        yield ui
    finally:
        ui.stop()


@pytest.mark.slow
def test_the_sensor_materializes_today_with_metrics_and_the_drift_check(server: DagsterDev) -> None:
    server.wait_for_sensor_run("line_results_sensor", 240, poll=2)
    today = datetime.now(timezone.utc).date().isoformat()
    data = server.graphql(
        '{ assetOrError(assetKey: {path: ["line_results"]}) { ... on Asset { '
        'assetMaterializations(partitions: ["' + today + '"]) { partition metadataEntries { label '
        '... on FloatMetadataEntry { floatValue } ... on IntMetadataEntry { intValue } } } '
        'definition { assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization { '
        'status evaluation { severity } } } } } } } } }')["assetOrError"]
    [materialization] = data["assetMaterializations"]
    values = {e["label"]: e.get("floatValue", e.get("intValue")) for e in materialization["metadataEntries"]}
    assert values["frames"] == 60 and values["defect_rate/line-1"] is not None
    assert {"latency_p50_ms", "latency_p95_ms", "frames_per_second", "capture_rate", "defect_rate"} <= values.keys()
    [check] = data["definition"]["assetChecksOrError"]["checks"]
    assert check["name"] == "line_results_drift"
    assert check["executionForLatestMaterialization"]["status"] == "SUCCEEDED"  # no baseline for this model: passes
