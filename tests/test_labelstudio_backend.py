"""The labelstudio labeling backend against a real Label Studio server.

A session fixture starts Label Studio from its own venv (``make labelstudio-install``)
through ``deploy/labelstudio/start.sh`` on a free port with a temporary data folder, so the
start script, the token handling and the REST calls are all exercised for real. Box
conversions are also tested as pure functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
import requests

from tagqa_assets.contracts.labels import APPROVED, REJECTED, Annotation
from tagqa_assets.ingestion.synthetic import generate_tags
from tagqa_assets.labeling.backends.base import COMPLETED, FAILED, OPEN, ImageRef
from tagqa_assets.labeling.backends.labelstudio import LabelStudioBackend
from tagqa_assets.labeling.backends.labelstudio_api import LabelStudioClient, LabelStudioError, is_personal_access_token
from tagqa_assets.labeling.backends.labelstudio_boxes import to_annotations, to_prediction_result
from tagqa_assets.labeling.imports.format_labelstudio import is_rejected, rotated_box_bounds
from conftest import REPO, free_port
from polling import wait_until

pytestmark = pytest.mark.slow  # a real Label Studio server

LS_VENV = REPO / ".tagqa" / "labelstudio" / "venv"
LS_TEMPLATE_DB = REPO / ".tagqa" / "labelstudio" / "template" / "label_studio.sqlite3"
START_SCRIPT = REPO / "deploy" / "labelstudio" / "start.sh"
TOKEN = "tagqa-test-token-0123456789"


@dataclass(frozen=True)
class LabelStudioServer:
    url: str
    token: str
    log: Path


def _ensure_installed() -> None:
    """Run ``make labelstudio-install`` unless Label Studio and its migrated template database are there."""
    if (LS_VENV / "bin" / "label-studio").exists() and LS_TEMPLATE_DB.exists():
        return
    done = subprocess.run(["make", "-C", str(REPO), "labelstudio-install"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not (LS_VENV / "bin" / "label-studio").exists():
        pytest.fail(f"Label Studio could not be installed (make labelstudio-install failed): {(done.stdout + done.stderr)[-800:]}")


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """A Label Studio 1.23 server on 127.0.0.1 with a fresh data folder, admin and legacy API token."""
    _ensure_installed()
    folder = tmp_path_factory.mktemp("labelstudio")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("LABEL_STUDIO_")}
    env.update(
        LABEL_STUDIO_VENV=str(LS_VENV),
        LABEL_STUDIO_DATA_DIR=str(folder / "data"),
        LABEL_STUDIO_PORT=str(port),
        LABEL_STUDIO_USERNAME="admin@tagqa.test",
        LABEL_STUDIO_PASSWORD="tagqa-test-password",
        LABEL_STUDIO_API_TOKEN=TOKEN,
    )
    log = folder / "labelstudio.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([str(START_SCRIPT)], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        def healthy() -> bool:
            if process.poll() is not None:
                pytest.fail(f"Label Studio exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            return requests.get(f"{url}/health", timeout=2).status_code == 200
        wait_until(healthy, f"Label Studio to answer {url}/health", 180, poll=0.5, retry_on=(requests.ConnectionError,),
                   diagnose=lambda: log.read_text()[-3000:])
        yield LabelStudioServer(url, TOKEN, log)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _images(store, count: int, seed: int) -> tuple[list[ImageRef], list]:
    tags = generate_tags(count, seed=seed)
    images = []
    for tag in tags:
        key = f"raw/camera-1/2024/05/01/{tag.name}"
        store.put_bytes(key, tag.jpeg)
        images.append(ImageRef(key, hashlib.sha256(tag.jpeg).hexdigest(), tag.width, tag.height, store.uri_for(key)))
    return images, tags


def _box(left: float, top: float, width: float, height: float, *, w: int, h: int, label: str = "scratch") -> dict:
    """A rectangle as the Label Studio editor submits it: percentages of the image."""
    return {
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "original_width": w,
        "original_height": h,
        "image_rotation": 0,
        "value": {"x": left / w * 100, "y": top / h * 100, "width": width / w * 100, "height": height / h * 100, "rotation": 0, "rectanglelabels": [label]},
    }


def test_round_trip_with_pre_annotations_and_human_annotations(label_studio, local_store):
    backend = LabelStudioBackend(url=label_studio.url, api_token=label_studio.token, store=local_store, project_title="round trip")
    images, tags = _images(local_store, 3, seed=7)
    suggestions = {images[0].key: list(tags[0].annotations), images[1].key: []}

    job = backend.create_job(images, job_id="lj-roundtrip", pre_annotations=suggestions)

    client, project = backend.client, job.detail["project_id"]
    assert job.backend == "labelstudio" and job.external_id == str(project)
    tasks = client.request("GET", "/api/tasks", params={"project": project, "fields": "all", "page_size": 50})["tasks"]
    by_key = {task["data"]["source_ref"]: task for task in tasks}
    assert sorted(by_key) == sorted(image.key for image in images)
    assert {task["id"] for task in tasks} == set(job.detail["task_ids"].values())
    # The champion's boxes arrive as predictions and convert back to the same pixels.
    first = by_key[images[0].key]
    assert len(first["predictions"]) == 1 and first["predictions"][0]["model_version"] == "tagqa-champion"
    back = to_annotations(first["predictions"][0]["result"], 450, 300, where="prediction")
    assert back == tuple(Annotation(a.class_id, round(a.left, 3), round(a.top, 3), round(a.width, 3), round(a.height, 3)) for a in tags[0].annotations)
    assert by_key[images[1].key]["predictions"][0]["result"] == []  # the model saw no scratch
    assert by_key[images[2].key]["predictions"] == []  # no suggestion given
    # Label Studio serves the uploaded image bytes to the annotator.
    assert client.get_bytes(first["data"]["image"]) == local_store.get_bytes(images[0].key)
    assert backend.job_status(job).state == OPEN

    # A human: two boxes on image 0 (one with irregular pixels on the 450x300, non-square image),
    # 'reject' on image 1, skip then submit-without-boxes on image 2.
    ids = job.detail["task_ids"]
    first_annotation = client.request(
        "POST",
        f"/api/tasks/{ids[images[0].key]}/annotations",
        json={"result": [_box(90, 45, 135, 60, w=450, h=300), _box(123.4, 56.7, 78.9, 12.3, w=450, h=300)]},
    )
    client.request(
        "POST",
        f"/api/tasks/{ids[images[1].key]}/annotations",
        json={"result": [{"from_name": "verdict", "to_name": "image", "type": "choices", "value": {"choices": ["reject"]}}]},
    )
    client.request("POST", f"/api/tasks/{ids[images[2].key]}/annotations", json={"result": [], "was_cancelled": True})
    status = backend.job_status(job)
    assert (status.state, status.done, status.total) == (OPEN, 2, 3) and "1 skipped" in status.message
    client.request("POST", f"/api/tasks/{ids[images[2].key]}/annotations", json={"result": []})

    status = backend.job_status(job)
    assert (status.state, status.done, status.total) == (COMPLETED, 3, 3)
    records = {record.source_ref: record for record in backend.fetch_results(job)}
    assert sorted(records) == sorted(image.key for image in images)
    boxed = records[images[0].key]
    assert boxed.annotations == (Annotation(0, 90.0, 45.0, 135.0, 60.0), Annotation(0, 123.4, 56.7, 78.9, 12.3))
    assert (boxed.image_width, boxed.image_height, boxed.image_sha256) == (450, 300, images[0].sha256)
    assert boxed.labeling_job == f"labelstudio/{project}" and boxed.status == APPROVED
    assert boxed.event_time == datetime.fromisoformat(first_annotation["updated_at"]).timestamp()
    assert records[images[1].key].status == REJECTED
    assert records[images[2].key].status == APPROVED and records[images[2].key].annotations == ()
    assert backend.fetch_results(job) == list(records.values())  # safe to call again

    # The annotator corrects a box later: the newer annotation wins, with a newer event time.
    client.request("PATCH", f"/api/annotations/{first_annotation['id']}", json={"result": [_box(10, 20, 30, 40, w=450, h=300)]})
    corrected = {record.source_ref: record for record in backend.fetch_results(job)}[images[0].key]
    assert corrected.annotations == (Annotation(0, 10.0, 20.0, 30.0, 40.0),) and corrected.event_time > boxed.event_time

    # A retried run with the same job id reuses the tasks instead of importing them again.
    again = backend.create_job(images, job_id="lj-roundtrip")
    assert again.detail["task_ids"] == job.detail["task_ids"]
    assert client.request("GET", "/api/tasks", params={"project": project, "page_size": 50})["total"] == 3


def test_sensor_brings_label_studio_annotations_into_the_label_store(label_studio, local_store):
    """End to end: unlabeled_images opens the job, a human annotates, labeling_job_sensor imports and closes it."""
    import dagster as dg

    from tagqa_assets.ingestion.ingest import ingest_keys
    from tagqa_assets.labeling.assets import label_store, unlabeled_images
    from tagqa_assets.labeling.jobs import JobBook
    from tagqa_assets.labeling.label_store import LocalLabelStore
    from tagqa_assets.labeling.pre_annotations import PreAnnotationResource
    from tagqa_assets.labeling.resources import LabelingResource, LabelStoreResource
    from tagqa_assets.labeling.sensors import labeling_job_sensor
    from tagqa_assets.storage import StoreResource

    tags = generate_tags(2, seed=21)
    raw = {f"raw/camera-1/2024/05/03/{tag.name}": tag.jpeg for tag in tags}
    for key, data in raw.items():
        local_store.put_bytes(key, data)
    ingest_keys(local_store, list(raw), run_id="labelstudio-e2e")
    resources = {
        "store": StoreResource(root=str(local_store.root)),
        "labels": LabelStoreResource(),
        "labeling": LabelingResource(
            backend="labelstudio", label_studio_url=label_studio.url, label_studio_api_token=label_studio.token, label_studio_project_title="sensor e2e"
        ),
        "pre_annotation": PreAnnotationResource(),
    }
    assert dg.materialize([unlabeled_images], resources=resources).success
    [job] = JobBook(local_store).open_jobs()
    assert job.backend == "labelstudio" and {image.key for image in job.images} == set(raw)

    backend = LabelStudioBackend(url=label_studio.url, api_token=label_studio.token, store=local_store, project_title="sensor e2e")
    scratched, clean = sorted(raw)
    ids = job.detail["task_ids"]
    backend.client.request("POST", f"/api/tasks/{ids[scratched]}/annotations", json={"result": [_box(45, 30, 90, 15, w=450, h=300)]})
    backend.client.request("POST", f"/api/tasks/{ids[clean]}/annotations", json={"result": []})

    result = labeling_job_sensor(dg.build_sensor_context(cursor=None, resources=resources))
    [run] = result.run_requests
    assert label_store.key in run.asset_selection
    assert dg.materialize([label_store], run_config=run.run_config, resources=resources).success

    records = LocalLabelStore(local_store).records()
    assert sorted(records["source_ref"]) == sorted(raw)
    boxed = records[records["source_ref"] == scratched].iloc[0]
    assert boxed["annotations"] == '[{"class_id":0,"left":45.0,"top":30.0,"width":90.0,"height":15.0}]'
    assert boxed["status"] == APPROVED and boxed["labeling_job"] == f"labelstudio/{job.external_id}"
    assert records[records["source_ref"] == clean].iloc[0]["annotations"] == "[]"
    assert JobBook(local_store).open_jobs() == [] and JobBook(local_store).get(job.job_id).state == COMPLETED

    # The next tick has nothing to do, and importing the same job again adds nothing.
    later = labeling_job_sensor(dg.build_sensor_context(cursor=result.cursor, resources=resources))
    assert not later.run_requests
    assert dg.materialize([label_store], run_config=run.run_config, resources=resources).success
    assert len(LocalLabelStore(local_store).records()) == 2


def test_personal_access_token_is_exchanged_for_access_tokens(label_studio, local_store):
    legacy = LabelStudioClient(label_studio.url, label_studio.token)
    personal = legacy.request("POST", "/api/token/")["token"]
    assert is_personal_access_token(personal) and not is_personal_access_token(label_studio.token)

    by_legacy = LabelStudioBackend(url=label_studio.url, api_token=label_studio.token, store=local_store, project_title="pat")
    by_personal = LabelStudioBackend(url=label_studio.url, api_token=personal, store=local_store, project_title="pat")
    assert by_personal.project_id() == by_legacy.project_id()  # found, not created twice

    with pytest.raises(LabelStudioError, match="401") as refused:
        LabelStudioClient(label_studio.url, "not-a-valid-token").request("GET", "/api/projects")
    assert refused.value.status == 401


def test_deleted_tasks_fail_the_job(label_studio, local_store):
    backend = LabelStudioBackend(url=label_studio.url, api_token=label_studio.token, store=local_store, project_title="deleted")
    images, _ = _images(local_store, 2, seed=11)
    job = backend.create_job(images, job_id="lj-deleted")
    backend.client.request("DELETE", f"/api/tasks/{job.detail['task_ids'][images[1].key]}")

    status = backend.job_status(job)
    assert status.state == FAILED and images[1].key in status.message


def test_create_job_rejects_suggestions_for_foreign_images(label_studio, local_store):
    backend = LabelStudioBackend(url=label_studio.url, api_token=label_studio.token, store=local_store, project_title="foreign")
    images, _ = _images(local_store, 1, seed=12)
    with pytest.raises(ValueError, match="not in the job"):
        backend.create_job(images, job_id="lj-foreign", pre_annotations={"raw/other.jpg": []})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # Plain box on a non-square image: x scales with the width, y with the height.
        ({"x": 20, "y": 15, "width": 30, "height": 20, "rotation": 0}, Annotation(0, 90.0, 45.0, 135.0, 60.0)),
        # A box touching the right/bottom edges stays inside after float noise (100.0000001 %).
        ({"x": 80, "y": 90, "width": 20.0000001, "height": 10.0000001, "rotation": 0}, Annotation(0, 360.0, 270.0, 90.0, 30.0)),
        # Rotated 90° clockwise about its top-left corner: it swings to the left of that corner.
        ({"x": 50, "y": 10, "width": 20, "height": 10, "rotation": 90}, Annotation(0, 195.0, 30.0, 30.0, 90.0)),
    ],
)
def test_percent_boxes_become_pixels(value, expected):
    item = {"from_name": "label", "to_name": "image", "type": "rectanglelabels", "value": {**value, "rectanglelabels": ["scratch"]}}
    assert to_annotations([item], 450, 300, where="case") == (expected,)


def test_prediction_result_round_trips_on_a_non_square_image():
    box = Annotation(0, 12.5, 200.25, 333.0, 7.75)
    assert to_annotations([to_prediction_result(box, 450, 300)], 450, 300, where="round trip") == (box,)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        # A class the label store does not know must not become class 0 silently.
        ({"value": {"x": 1, "y": 1, "width": 1, "height": 1, "rectanglelabels": ["dent"]}}, "dent"),
        # Label Studio measured another image size: the task shows a different image.
        ({"original_width": 300, "original_height": 450, "value": {"x": 1, "y": 1, "width": 1, "height": 1, "rectanglelabels": ["scratch"]}}, "300x450"),
    ],
)
def test_bad_boxes_are_refused_with_the_task_named(item, message):
    with pytest.raises(ValueError, match=message) as error:
        to_annotations([{"from_name": "label", "type": "rectanglelabels", **item}], 450, 300, where="task 7")
    assert "task 7" in str(error.value)


def test_reject_choice_and_rotated_bounds():
    assert is_rejected([{"from_name": "verdict", "type": "choices", "value": {"choices": ["reject"]}}])
    assert not is_rejected([{"from_name": "label", "type": "rectanglelabels", "value": {"rectanglelabels": ["scratch"]}}])
    x1, y1, x2, y2 = rotated_box_bounds(0, 0, 10, 10, 45)
    assert (round(x1, 6), round(y1, 6), round(x2, 6), round(y2, 6)) == (round(-(10 / 2**0.5), 6), 0.0, round(10 / 2**0.5, 6), round(20 / 2**0.5, 6))


FOREIGN_CONFIG = """<View>
  <Image name="img" value="$image"/>
  <RectangleLabels name="bbox" toName="img">
    <Label value="scratch"/>
  </RectangleLabels>
</View>"""


def test_a_foreign_project_and_its_exports_read_like_the_backend(label_studio, real_dataset, local_store, tmp_path):
    """A project whose box control is not called 'label', real tag images, and Label Studio's own
    JSON and JSON-MIN exports of it imported as files: the same boxes as the live backend."""
    from tagqa_assets.ingestion.catalog import RawImageCatalog
    from tagqa_assets.ingestion.ingest import ingest_keys
    from tagqa_assets.labeling.imports.pipeline import import_parsed, records_as_rows
    from tagqa_assets.labeling.imports.sources import import_path
    from tagqa_assets.labeling.label_store import LocalLabelStore, latest_records

    files = sorted((real_dataset / "images" / "bad").glob("*.jpg"))[:3]
    keys = []
    for path in files:
        key = f"raw/camera-1/2024/05/04/{path.name}"
        local_store.put_bytes(key, path.read_bytes())
        keys.append(key)
    ingest_keys(local_store, keys, run_id="ls-foreign")
    images = [ImageRef(r.key, r.sha256, int(r.width), int(r.height), local_store.uri_for(r.key)) for r in RawImageCatalog(local_store).images().itertuples()]
    client = LabelStudioClient(label_studio.url, label_studio.token)
    project = client.request("POST", "/api/projects", json={"title": "foreign boxes", "label_config": FOREIGN_CONFIG})["id"]
    backend = LabelStudioBackend(url=label_studio.url, api_token=label_studio.token, store=local_store, project_title="foreign boxes")
    job = backend.create_job(images, job_id="lj-foreign-config", pre_annotations={images[0].key: [Annotation(0, 10, 20, 30, 40)]})
    assert job.detail["project_id"] == project
    task = client.request("GET", f"/api/tasks/{job.detail['task_ids'][images[0].key]}")
    assert task["predictions"][0]["result"][0]["from_name"] == "bbox"  # suggestions use the project's control

    boxes = {images[0].key: [(81.2, 123.4, 82.5, 97.25)], images[1].key: [(180, 119, 72, 70), (286, 79, 52, 82)], images[2].key: []}
    for image in images:
        result = []
        for left, top, width, height in boxes[image.key]:
            item = _box(left, top, width, height, w=image.width, h=image.height)
            result.append({**item, "from_name": "bbox", "to_name": "img"})
        client.request("POST", f"/api/tasks/{job.detail['task_ids'][image.key]}/annotations", json={"result": result})
    records = backend.fetch_results(job)
    assert {r.source_ref: [(a.left, a.top, a.width, a.height) for a in r.annotations] for r in records} == {
        key: [tuple(float(v) for v in box) for box in value] for key, value in boxes.items()
    }
    labels = LocalLabelStore(local_store)
    assert import_parsed(local_store, labels, records_as_rows(records), source="backend").imported == 3

    # Label Studio's own JSON export, imported as a file: the very same records (already stored).
    export = tmp_path / "export.json"
    export.write_bytes(json.dumps(client.request("GET", f"/api/projects/{project}/export", params={"exportType": "JSON"})).encode())
    report = import_path(local_store, labels, export)
    assert (report.format, report.rows, report.already_in_store, report.rejects) == ("labelstudio", 3, 3, [])
    assert report.matched_by == {"content_hash": 3}

    # Its JSON-MIN export, into a fresh label store: the same boxes within 0.5 px.
    minimal = tmp_path / "export-min.json"
    minimal.write_bytes(json.dumps(client.request("GET", f"/api/projects/{project}/export", params={"exportType": "JSON_MIN"})).encode())
    other = LocalLabelStore(local_store, prefix="labels/other/")
    report = import_path(local_store, other, minimal)
    assert (report.format, report.rows, report.imported, report.rejects) == ("labelstudio", 3, 3, [])
    got = {row.source_ref: json.loads(row.annotations) for row in latest_records(other.records()).itertuples()}
    for key, expected in boxes.items():
        found = sorted((a["left"], a["top"], a["width"], a["height"]) for a in got[key])
        assert len(found) == len(expected)
        for f, e in zip(found, sorted(expected)):
            assert all(abs(x - y) <= 0.5 for x, y in zip(f, e)), (f, e)
