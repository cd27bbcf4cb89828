"""Label Studio export files (JSON and JSON-MIN) of real tag images, imported with the documented rules."""

from __future__ import annotations

import ast
import csv
import json
from pathlib import Path

import pytest

from tagqa_assets.cli import main
from tagqa_assets.contracts.labels import APPROVED, REJECTED, Annotation
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.ingestion.writers import upload_folder
from tagqa_assets.labeling.imports.box_checks import SKIPPED, UNANNOTATED, UNKNOWN_CLASS
from tagqa_assets.labeling.imports.format_labelstudio import image_reference, parse_labelstudio
from tagqa_assets.labeling.imports.formats import detect_format
from tagqa_assets.labeling.imports.sources import import_path
from tagqa_assets.labeling.label_store import LocalLabelStore, latest_records

W, H = 450, 300


def _reference_labels(dataset: Path, count: int) -> list[tuple[str, list[dict]]]:
    """``(path under images/, pixel boxes)`` of the first ``count`` labels.csv rows with boxes."""
    rows = []
    with open(dataset / "labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            boxes = ast.literal_eval(row["annotations"])
            if boxes and not row["source_ref"].endswith(("_0", "_1", "_2", "_3", "_4", "_5", "_6", "_7", "_8", "_9")):
                rows.append((row["source_ref"].split("2021-01-28-09-50-34/", 1)[1], boxes))
    return rows[:count]


def _result(box: dict, *, from_name: str = "bbox", label: str = "scratch") -> dict:
    """A box as Label Studio stores it: percent of the displayed image, any control name."""
    return {
        "id": "r1",
        "from_name": from_name,
        "to_name": "img",
        "type": "rectanglelabels",
        "original_width": W,
        "original_height": H,
        "image_rotation": 0,
        "value": {
            "x": box["left"] / W * 100,
            "y": box["top"] / H * 100,
            "width": box["width"] / W * 100,
            "height": box["height"] / H * 100,
            "rotation": 0,
            "rectanglelabels": [label],
        },
    }


def _annotation(number: int, boxes: list[dict], *, created: str, updated: str, cancelled: bool = False, label: str = "scratch") -> dict:
    return {
        "id": number,
        "completed_by": 1,
        "result": [_result(b, label=label) for b in boxes],
        "was_cancelled": cancelled,
        "created_at": created,
        "updated_at": updated,
        "project": 7,
    }


def _export(labels: list[tuple[str, list[dict]]]) -> list[dict]:
    """A JSON export of 12 tasks (uploads, so names carry Label Studio's 8-hex prefix) exercising every rule."""
    tasks = []
    for number, (path, boxes) in enumerate(labels, start=1):
        name = path.rsplit("/", 1)[1]
        task = {"id": number, "data": {"image": f"/data/upload/7/{number:08x}-{name}"}, "annotations": [], "project": 7}
        current = _annotation(10 * number, boxes, created="2024-05-01T10:00:00.000000Z", updated="2024-05-02T10:00:00.123456Z")
        task["annotations"] = [current]
        tasks.append(task)
    # 2: an older annotation, created later but updated earlier: updated_at decides.
    tasks[1]["annotations"].append(_annotation(900, [], created="2024-05-01T11:00:00Z", updated="2024-05-01T12:00:00Z"))
    # 3: a newer annotation that was cancelled (skipped) is not a label.
    tasks[2]["annotations"].append(_annotation(901, [], created="2024-05-03T00:00:00Z", updated="2024-05-03T00:00:00Z", cancelled=True))
    # 4: two annotations with the same updated_at: the later created_at wins.
    tasks[3]["annotations"].append(_annotation(902, [], created="2024-05-01T10:30:00Z", updated="2024-05-02T10:00:00.123456Z"))
    # 5: only a skipped annotation; 6: none at all.
    tasks[4]["annotations"] = [_annotation(903, labels[4][1], created="2024-05-01T00:00:00Z", updated="2024-05-01T00:00:00Z", cancelled=True)]
    tasks[5]["annotations"] = []
    # 7: a box named outside the taxonomy.
    tasks[6]["annotations"] = [_annotation(904, labels[6][1], created="2024-05-01T00:00:00Z", updated="2024-05-01T00:00:00Z", label="dent")]
    # 8: the annotator ticked reject.
    tasks[7]["annotations"][0]["result"].append({"from_name": "verdict", "to_name": "img", "type": "choices", "value": {"choices": ["reject"]}})
    # 9: a local-files task; 10: an S3 task.
    tasks[8]["data"]["image"] = f"/data/local-files/?d=tags/{labels[8][0]}"
    tasks[9]["data"]["image"] = f"s3://line-bucket/2021-01-28-09-50-34/{labels[9][0]}"
    return tasks


@pytest.fixture
def ingested(real_dataset, local_store):
    uploaded = upload_folder(local_store, real_dataset / "images")
    ingest_keys(local_store, uploaded.keys, run_id="ls-export")
    return local_store


def _check_box_pixels(record_boxes, reference: list[dict]) -> None:
    got = sorted((a.left, a.top, a.width, a.height) for a in record_boxes)
    want = sorted((b["left"], b["top"], b["width"], b["height"]) for b in reference)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert all(abs(x - y) <= 0.5 for x, y in zip(g, w)), (g, w)


def test_json_export_of_real_tags_imports_with_the_documented_rules(real_dataset, ingested, tmp_path):
    labels = _reference_labels(real_dataset, 12)
    export = tmp_path / "project-7-at-2024-05-02.json"
    export.write_text(json.dumps(_export(labels)))
    assert detect_format(export.name, export.read_bytes()) == "labelstudio"

    store = LocalLabelStore(ingested)
    report = import_path(ingested, store, export)

    assert report.format == "labelstudio" and report.rows == 12
    reasons = {r.line: r.reason for r in report.rejects}
    assert reasons == {5: SKIPPED, 6: UNANNOTATED, 7: UNKNOWN_CLASS}
    assert "dent" in next(r.detail for r in report.rejects if r.line == 7)
    assert report.imported == 9 and report.matched_by == {"file_name": 7, "relative_path": 2}
    latest = {row.source_ref: row for row in latest_records(store.records()).itertuples()}
    by_name = {key.rsplit("__", 1)[-1]: row for key, row in latest.items()}
    for number, (path, boxes) in enumerate(labels, start=1):
        row = by_name.get(path.rsplit("/", 1)[1])
        if number in (5, 6, 7):
            assert row is None
            continue
        annotations = json.loads(row.annotations)
        if number == 4:  # the annotation created later (no boxes) won the updated_at tie
            assert annotations == []
            continue
        _check_box_pixels([Annotation.from_dict(a) for a in annotations], boxes)
        assert row.status == (REJECTED if number == 8 else APPROVED)
        assert row.labeling_job == "labelstudio/7" and (row.image_width, row.image_height) == (W, H)
    # the newest non-cancelled annotation's updated_at is the event time (fractional seconds, Z)
    assert by_name[labels[2][0].rsplit("/", 1)[1]].event_time == pytest.approx(1714644000.123456)

    # Importing the same export again changes nothing.
    again = import_path(ingested, store, export)
    assert again.imported == 0 and again.already_in_store == 9


def test_json_min_export_newest_annotation_per_task(real_dataset, ingested, tmp_path):
    labels = _reference_labels(real_dataset, 3)
    entries = []
    for number, (path, boxes) in enumerate(labels, start=1):
        name = path.rsplit("/", 1)[1]
        values = [{**_result(b)["value"], "original_width": W, "original_height": H} for b in boxes]
        entries.append(
            {"image": f"/data/upload/7/{number:08x}-{name}", "id": number, "bbox": values, "annotator": 1, "annotation_id": number,
             "created_at": "2024-05-01T10:00:00Z", "updated_at": "2024-05-02T10:00:00Z", "lead_time": 3.5}
        )
    # task 1 has an older annotation with no boxes: not a row, the newer one wins
    entries.append({"image": entries[0]["image"], "id": 1, "annotator": 2, "annotation_id": 50, "created_at": "2024-04-01T00:00:00Z",
                    "updated_at": "2024-04-01T00:00:00Z", "lead_time": 1.0})
    # a task without annotations, as JSON-MIN writes it
    entries.append({"image": "/data/upload/7/0000abcd-missing.jpg", "id": 99, "annotator": None, "annotation_id": None,
                    "created_at": None, "updated_at": None, "lead_time": None})
    export = tmp_path / "project-7-min.json"
    export.write_text(json.dumps(entries))
    assert detect_format(export.name, export.read_bytes()) == "labelstudio"

    store = LocalLabelStore(ingested)
    report = import_path(ingested, store, export)
    assert (report.rows, report.imported, [r.reason for r in report.rejects]) == (4, 3, [UNANNOTATED])
    latest = latest_records(store.records())
    by_name = {key.rsplit("__", 1)[-1]: json.loads(a) for key, a in zip(latest["source_ref"], latest["annotations"])}
    for path, boxes in labels:
        _check_box_pixels([Annotation.from_dict(a) for a in by_name[path.rsplit("/", 1)[1]]], boxes)


def test_cli_imports_a_label_studio_export_by_name(real_dataset, ingested, tmp_path, monkeypatch, capsys):
    labels = _reference_labels(real_dataset, 2)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(_export(labels * 6)[:2]))
    monkeypatch.setenv("TAGQA_STORE", str(ingested.root))
    assert main(["labels", "import", str(export), "--format", "labelstudio"]) == 0
    assert "(labelstudio): 2 row(s): 2 imported" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("url", "reference"),
    [
        ("/data/upload/12/1a2b3c4d-image-2020-04-22.jpg", "image-2020-04-22.jpg"),
        ("http://ls.example:8080/data/upload/12/1a2b3c4d-bad%20tag.jpg", "bad tag.jpg"),
        ("/data/upload/12/not-hex-prefix.jpg", "not-hex-prefix.jpg"),
        ("/data/local-files/?d=line%2Fbad%2Fx.jpg", "line/bad/x.jpg"),
        ("s3://bucket/pipeline/bad/x.jpg", "s3://bucket/pipeline/bad/x.jpg"),
        ("https://cdn.example/bad/x.jpg?sig=abc", "https://cdn.example/bad/x.jpg"),
    ],
)
def test_image_reference_strips_label_studio_addressing(url, reference):
    assert image_reference(url) == reference


def test_a_file_that_is_not_an_export_is_one_reject():
    parsed = parse_labelstudio(b'[{"foo": 1}]', "x.json")
    assert not parsed.rows and [r.reason for r in parsed.rejects] == ["unparseable"]
