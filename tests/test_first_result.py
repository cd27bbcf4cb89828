"""The first fifteen minutes, for real: ``make run``'s stack from a fresh state to a result on MQTT.

deploy/local/run.sh runs in a fresh work folder (tests/local_stack.py) with the demo set
``make demo`` writes and every setting at its default: the documented gate, the demo's
training profile. The daemon's sensors ingest the images, import their labels, cut the
first dataset version and train, export, evaluate and register the first model, which waits
for a person: its ``registered_model`` metadata and ``model_approval_sensor``'s skip reason
say so and name the command. ``tagqa models approve 1`` (the command a person runs) is
followed by the deployment to the local device ``line-1``; the demo camera keeps the device
fed, so a result of model version 1 arrives on ``tagqa/line-1/detections`` (a paho
subscriber), the results collector writes it into ``results/`` in the store, every frame
the device says it captured comes back under ``raw/edge-feedback/line-1/``, and
``line_results_sensor`` materializes the day's ``line_results``. Finally SIGTERM stops every
process of the stack.

With SCREENSHOTS_DIR set (``make screenshots``) the pictures of the registered model page, the
deployment page and the line_results page are copied there for the README.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from local_stack import FirstResult, LocalStack, run_to_first_result
from polling import wait_until
from results_fixtures import stored_frames
from tagqa_assets.contracts.models import PENDING

pytestmark = [pytest.mark.slow, pytest.mark.timeout(4200)]
SCREENSHOTS_DIR = os.environ.get("SCREENSHOTS_DIR", "")


def _sensor_skip_reasons(stack: LocalStack, sensor: str) -> list[str]:
    data = stack.api.graphql(
        'query T($name: String!) { sensorOrError(sensorSelector: {repositoryName: "__repository__", '
        'repositoryLocationName: "tagqa", sensorName: $name}) { ... on Sensor { sensorState { '
        "ticks(limit: 10) { skipReason } } } } }", {"name": sensor})["sensorOrError"]
    return [t["skipReason"] or "" for t in data["sensorState"]["ticks"]]


def _latest_metadata(stack: LocalStack, asset: str) -> dict[str, str]:
    data = stack.api.graphql(
        'query M($key: AssetKeyInput!) { assetOrError(assetKey: $key) { ... on Asset { assetMaterializations(limit: 1) '
        "{ metadataEntries { label ... on TextMetadataEntry { text } ... on IntMetadataEntry { intValue } } } } } }",
        {"key": {"path": [asset]}})["assetOrError"]
    [materialization] = data["assetMaterializations"]
    return {e["label"]: e.get("text", e.get("intValue")) for e in materialization["metadataEntries"]}


def _screenshot(stack: LocalStack, path: str, name: str, tmp_path: Path, *, must_show: tuple[str, ...]) -> None:
    """Render ``path`` of the UI in headless Chromium; check its text, keep the PNG (and publish it for make screenshots)."""
    from headless_browser import Browser

    stack.api.graphql("mutation { setNuxSeen }")
    with Browser(1600, 1300) as browser:
        browser.goto(stack.api.url + path)
        browser.wait_for(f"document.body && {json.dumps(list(must_show))}.every(t => document.body.innerText.includes(t))",
                         timeout=120, what=f"{path} to show {must_show}")
        time.sleep(4)  # let the page finish drawing (status badges load after the text)
        png = tmp_path / name
        browser.screenshot(png)
    if SCREENSHOTS_DIR:
        shutil.copyfile(png, Path(SCREENSHOTS_DIR) / name)


def test_fresh_stack_trains_waits_for_approval_and_serves_the_first_model(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "work")
    progress: list[str] = []

    def waits_for_a_person(timeline) -> None:
        assert timeline.model.status == PENDING, timeline.model
        metadata = _latest_metadata(stack, "registered_model")
        assert "tagqa models approve 1" in metadata["next_step"], metadata
        wait_until(lambda: any("waits for a person: tagqa models approve 1" in r
                               for r in _sensor_skip_reasons(stack, "model_approval_sensor")),
                   "model_approval_sensor to say that version 1 waits for a person", 180, poll=5)
        _screenshot(stack, "/assets/registered_model", "registered-model-waits.png", tmp_path,
                    must_show=("next_step", "tagqa models approve 1"))

    timeline = FirstResult()
    try:
        run_to_first_result(stack, timeline, before_approval=waits_for_a_person, say=progress.append)
        progress.append(f"{timeline.result_line()} (approval delayed by the checks above)")
        result = timeline.first_result
        assert result["device"] == "line-1" and result["model_version"] == "1"
        assert result["source_name"].startswith("demo-camera-"), result  # the demo camera fed it
        assert result["dataset_version"] == timeline.model.dataset_version

        # The collector wrote it into results/ in the store.
        wait_until(lambda: result["image_id"] in set(stored_frames(stack.store_root)["image_id"].to_list()),
                   "the first result in results/ in the store", 120, poll=2)
        # Let the camera run a while: every frame the device says it captured comes back.
        time.sleep(30)
        captured = [r["image_id"] for _, r in timeline.listener.of_version(1) if r["captured"]]
        if captured:
            wait_until(lambda: all(any(i in key for key in stack.feedback_keys()) for i in captured),
                       f"the {len(captured)} captured frames under raw/edge-feedback/line-1/", 120, poll=2)
        progress.append(f"{len(timeline.listener.of_version(1))} results of version 1, {len(captured)} captured")
        _screenshot(stack, "/assets/edge_deployment", "edge-deployment.png", tmp_path,
                    must_show=("deployed", "line-1"))

        # line_results_sensor turns the collected results into the day's line_results partition.
        def line_results_materialized() -> bool:
            runs = stack.api.runs({"dagster/sensor_name": "line_results_sensor"})
            assert not [r for r in runs if r["status"] == "FAILURE"], runs
            return any(r["status"] == "SUCCESS" for r in runs)
        wait_until(line_results_materialized, "a line_results run", 300, poll=5, diagnose=stack.log_tail)
        metadata = _latest_metadata(stack, "line_results")
        assert metadata["devices"] == 1 and metadata["frames"] >= 1, metadata
        _screenshot(stack, "/assets/line_results", "line-results.png", tmp_path, must_show=("by_device", "line-1"))
    finally:
        if timeline.listener is not None:
            timeline.listener.close()
        elapsed, leftovers = stack.stop(signal.SIGTERM) if stack.process and stack.process.poll() is None else (0, [])
        stack.kill()
        print("\n".join(progress))
    assert not leftovers, f"still running {elapsed:.1f} s after SIGTERM: {leftovers}"
