"""Label imports: box rules, the matching rule, every file format, rejects, held rows, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from image_fixtures import encoded_image
from tagqa_assets.cli import main
from tagqa_assets.contracts.labels import APPROVED, REJECTED, Annotation
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.ingestion.writers import write_demo_set
from tagqa_assets.labeling.imports.box_checks import RowRejected, check_boxes
from tagqa_assets.labeling.imports.pipeline import UNMATCHED_PREFIX, retry_unmatched
from tagqa_assets.labeling.imports.sources import import_inbox_object, import_path, inbox_keys
from tagqa_assets.labeling.label_store import LocalLabelStore, latest_records
from tagqa_assets.labeling.imports.matching import RawImageIndex

W, H = 64, 48  # size of the fixture images


@pytest.mark.parametrize(
    "box, expected, note",
    [
        # Inside: kept as is.
        (Annotation(0, 1, 2, 10, 10), Annotation(0, 1, 2, 10, 10), None),
        # Touching the right and bottom edges exactly is inside, not clipped.
        (Annotation(0, 54, 38, 10, 10), Annotation(0, 54, 38, 10, 10), None),
        # Partly outside on the left/top: clipped to the image and recorded.
        (Annotation(0, -5, -2, 10, 10), Annotation(0, 0, 0, 5, 8), "clipped"),
        # Partly outside on the right/bottom (labelers drag past the edge).
        (Annotation(0, 60, 40, 10, 20), Annotation(0, 60, 40, 4, 8), "clipped"),
    ],
)
def test_boxes_inside_or_clipped(box, expected, note):
    kept, notes = check_boxes([box], W, H)
    assert kept == (expected,)
    assert (notes[0] if notes else None) is None if note is None else note in notes[0]


@pytest.mark.parametrize(
    "box, reason",
    [
        # Fully outside: no pixel of the image is in it.
        (Annotation(0, 70, 10, 5, 5), "box_outside_image"),
        # Ends exactly where the image starts: still outside.
        (Annotation(0, -10, 0, 10, 5), "box_outside_image"),
        (Annotation(0, 5, 5, 0, 5), "empty_box"),  # zero width
        (Annotation(0, 5, 5, 5, -3), "empty_box"),  # negative height
        (Annotation(3, 5, 5, 5, 5), "unknown_class"),  # only class 0 (scratch) exists
        (Annotation(0, float("nan"), 5, 5, 5), "invalid_value"),
    ],
)
def test_unusable_boxes_reject_the_row(box, reason):
    with pytest.raises(RowRejected) as raised:
        check_boxes([Annotation(0, 1, 1, 2, 2), box], W, H)
    assert raised.value.reason == reason


def _ingest(store, keys_and_bytes: dict[str, bytes]) -> dict[str, str]:
    for key, data in keys_and_bytes.items():
        store.put_bytes(key, data)
    report = ingest_keys(store, list(keys_and_bytes), run_id="test")
    return {row.key: row.sha256 for row in report.accepted + report.duplicates}


REF = "s3://${bucket}/pipeline/assets/images/2021-01-28-09-50-34/bad/image-1.jpg_0"


@pytest.mark.parametrize(
    "raw_key, source_ref, rule",
    [
        # `tagqa upload` of the folder holding bad/ and good/ (the real dataset's images/).
        ("raw/import/2026/11/25/101010123456-bad__image-1.jpg_0", REF, "relative_path"),
        # An upload of one level higher keeps more path; the common suffix still decides.
        ("raw/import/2026/11/25/101010123456-images__bad__image-1.jpg_0", REF, "relative_path"),
        # A camera that only knows the file name.
        ("raw/camera-1/2026/11/25/image-1.jpg_0", REF, "file_name"),
        # tagqa's own label records name the raw key.
        ("raw/camera-1/2026/11/25/image-1.jpg_0", "raw/camera-1/2026/11/25/image-1.jpg_0", "raw_key"),
        # Names with characters uploads replace ("a b.jpg" is stored as "a_b.jpg").
        ("raw/import/2026/11/25/101010123456-bad__a_b.jpg", "s3://bucket/x/bad/a b.jpg", "relative_path"),
    ],
)
def test_matching_rule(local_store, raw_key, source_ref, rule):
    _ingest(local_store, {raw_key: encoded_image(shade=10)})
    match = RawImageIndex.load(local_store).match(source_ref)
    assert (match.image.key if match.image else match.reason, match.rule) == (raw_key, rule)


def test_matching_refuses_to_guess(local_store):
    shas = _ingest(
        local_store,
        {
            "raw/import/2026/11/25/101010123456-bad__x.jpg": encoded_image(shade=10),
            "raw/import/2026/11/25/101010123457-good__x.jpg": encoded_image(shade=20),
            "raw/import/2026/11/25/101010123458-copy-of-bad-x.jpg": encoded_image(shade=10),
        },
    )
    index = RawImageIndex.load(local_store)
    assert index.match("s3://b/p/bad/x.jpg").image.key.endswith("bad__x.jpg")
    # Only the file name is known and two different images carry it: no match.
    assert index.match("x.jpg").reason == "ambiguous_image"
    assert index.match("s3://b/p/bad/y.jpg").reason == "image_not_found"
    # A duplicate upload resolves to the first key of that content.
    assert index.match("raw/import/2026/11/25/101010123458-copy-of-bad-x.jpg").image.key.endswith("bad__x.jpg")
    # A record that names its content matches only that content, never by name.
    assert index.match("s3://b/p/good/x.jpg", sha256="f" * 64).reason == "image_not_found"
    sha_bad = shas["raw/import/2026/11/25/101010123456-bad__x.jpg"]
    assert index.match("s3://b/p/good/x.jpg", sha256=sha_bad).image.key.endswith("bad__x.jpg")


BAD_CSV_HEADER = "source_ref,image_width,image_height,image_depth,annotations,event_time,labeling_job,status\n"


def _csv_line(name: str, boxes: str, t: float = 1.0, status: str = "APPROVED", width: int = W) -> str:
    return f's3://${{bucket}}/imgs/bad/{name},{width},{H},3,"{boxes}",{t},job-a,{status}\n'


def test_bad_rows_are_rejected_with_reasons_and_good_rows_still_imported(any_store, tmp_path: Path):
    names = [f"img-{i}.jpg" for i in range(10)]
    _ingest(any_store, {f"raw/import/2026/11/25/10101012345{i}-bad__{n}": encoded_image(shade=10 + i) for i, n in enumerate(names)})
    box = "{'class_id': 0, 'top': 5, 'left': 5, 'height': 10, 'width': 10}"
    text = BAD_CSV_HEADER + "".join(
        [
            _csv_line(names[0], f"[{box}]"),  # good
            _csv_line(names[1], "[{'class_id': 0, 'top': 40, 'left': 60, 'height': 20, 'width': 20}]"),  # clipped, kept
            _csv_line(names[2], "[{'class_id': 0, 'top': 5, 'left': 100, 'height': 5, 'width': 5}]"),  # fully outside
            _csv_line(names[3], "[{'class_id': 0, 'top': 5, 'left': 5, 'height': 0, 'width': 5}]"),  # zero size
            _csv_line(names[4], "[{'class_id': 7, 'top': 5, 'left': 5, 'height': 5, 'width': 5}]"),  # unknown class
            _csv_line(names[0], f"[{box}]"),  # duplicate of line 2
            _csv_line(names[5], "[{'class_id': 0, 'top': 5,"),  # unparseable literal
            "this line is not csv at all\n",  # unparseable row
            _csv_line("does-not-exist.jpg", f"[{box}]"),  # image not ingested (held)
            _csv_line(names[6], f"[{box}]", width=450),  # wrong image size
            _csv_line(names[7], "[]", status="MAYBE"),  # invalid status
            _csv_line(names[8], "[]", status="REJECTED"),  # good: a rejection is a label decision
            _csv_line(names[9], "[]", t=2.0),  # good: no scratch
            _csv_line(names[9], f"[{box}]", t=2.0),  # conflicts with the line before
        ]
    )
    path = tmp_path / "labels.csv"
    path.write_text(text)
    labels = LocalLabelStore(any_store)
    report = import_path(any_store, labels, path)
    assert report.rows == 14
    assert report.imported == 4
    assert report.reasons() == {
        "box_outside_image": 1,
        "conflicting_row": 1,
        "duplicate_row": 1,
        "empty_box": 1,
        "image_not_found": 1,
        "invalid_value": 1,
        "size_mismatch": 1,
        "unknown_class": 1,
        "unparseable": 2,
    }
    assert report.held_for_retry == 1
    assert [c["line"] for c in report.clipped] == [3]
    stored = any_store.get_json(f"labels/imports/{report.import_id}/report.json")
    assert stored["reasons"] == report.reasons() and len(stored["rejects"]) == 10
    latest = latest_records(labels.records())
    assert sorted(latest["status"]) == [APPROVED] * 3 + [REJECTED]
    clipped = latest[latest["source_ref"].str.endswith(names[1])].iloc[0]
    assert json.loads(clipped["annotations"]) == [{"class_id": 0, "left": 60.0, "top": 40.0, "width": 4.0, "height": 8.0}]

    # Importing the same file again adds nothing and holds nothing new.
    again = import_path(any_store, labels, path)
    assert (again.imported, again.already_in_store) == (0, 4)
    assert len(labels.records()) == 4


def test_unmatched_rows_are_held_and_imported_when_the_image_arrives(local_store, tmp_path: Path):
    path = tmp_path / "labels.csv"
    path.write_text(BAD_CSV_HEADER + _csv_line("late.jpg", "[{'class_id': 0, 'top': 1, 'left': 1, 'height': 5, 'width': 5}]"))
    labels = LocalLabelStore(local_store)
    assert import_path(local_store, labels, path).held_for_retry == 1
    assert retry_unmatched(local_store, labels) == []  # still no image: kept as is
    assert len(list(local_store.list_objects(UNMATCHED_PREFIX))) == 1
    _ingest(local_store, {"raw/import/2026/11/26/101010123456-bad__late.jpg": encoded_image(shade=30)})
    [report] = retry_unmatched(local_store, labels)
    assert (report.imported, report.held_for_retry) == (1, 0)
    assert list(local_store.list_objects(UNMATCHED_PREFIX)) == []
    assert labels.latest()["source_ref"].tolist() == ["raw/import/2026/11/26/101010123456-bad__late.jpg"]


def test_groundtruth_verification_manifest(local_store, tmp_path: Path):
    keys = {f"raw/camera-1/2026/11/25/tag-{i}.jpg": encoded_image(shade=40 + i) for i in range(4)}
    _ingest(local_store, keys)

    def line(name: str, verified: int | None, boxes: list[dict], created="2022-07-07T12:00:00.123456") -> str:
        item = {
            "source-ref": f"s3://gt-bucket/pipeline/images/{name}",
            "category": {"image_size": [{"width": W, "height": H, "depth": 3}], "annotations": boxes},
            "category-metadata": {"creation-date": created, "job-name": "labeling-job/gt-1", "class-map": {"0": "scratch"}, "type": "groundtruth/object-detection"},
        }
        if verified is not None:
            item["verified"] = verified
            item["verified-metadata"] = {"class-name": "approve" if verified == 0 else "reject", "creation-date": "2022-07-08T09:00:00.000000", "job-name": "labeling-job/verify-1", "type": "groundtruth/label-verification"}
        return json.dumps(item)

    box = {"class_id": 0, "top": 4, "left": 4, "width": 8, "height": 8}
    manifest = tmp_path / "output.manifest"
    manifest.write_text(
        "\n".join(
            [
                line("tag-0.jpg", 0, [box]),  # approved by the verification job
                line("tag-1.jpg", 1, [box]),  # rejected by the verification job
                line("tag-2.jpg", None, []),  # a plain bounding-box output: approved, no scratch
                line("tag-3.jpg", 0, [{**box, "class_id": 4}]),  # class id missing from the class map
                "{not json",
            ]
        )
    )
    labels = LocalLabelStore(local_store)
    report = import_path(local_store, labels, manifest)
    assert report.format == "groundtruth"
    assert (report.imported, report.reasons()) == (3, {"unknown_class": 1, "unparseable": 1})
    latest = latest_records(labels.records()).set_index("source_ref")
    assert latest.loc["raw/camera-1/2026/11/25/tag-0.jpg", "status"] == APPROVED
    assert latest.loc["raw/camera-1/2026/11/25/tag-1.jpg", "status"] == REJECTED
    assert latest.loc["raw/camera-1/2026/11/25/tag-0.jpg", "labeling_job"] == "labeling-job/gt-1"
    # The verification decision is newer than the labeling: its creation date is the event time.
    assert latest.loc["raw/camera-1/2026/11/25/tag-1.jpg", "event_time"] == pd.Timestamp("2022-07-08T09:00:00Z").timestamp()
    assert latest.loc["raw/camera-1/2026/11/25/tag-2.jpg", "event_time"] == pd.Timestamp("2022-07-07T12:00:00.123456Z").timestamp()


def test_adjustment_job_output_imports_the_human_boxes_not_the_model_prelabel(local_store, tmp_path: Path):
    # An adjustment job's output manifest lists the model's ``prelabel`` attribute first.
    _ingest(local_store, {"raw/camera-1/2026/11/25/adj.jpg": encoded_image(shade=77)})
    item = {
        "source-ref": "s3://gt-bucket/pipeline/images/adj.jpg",
        "prelabel": {"image_size": [{"width": W, "height": H, "depth": 3}], "annotations": [{"class_id": 0, "top": 1, "left": 1, "width": 3, "height": 3}]},
        "prelabel-metadata": {"class-map": {"0": "scratch"}, "human-annotated": "no", "creation-date": "2022-07-07T11:00:00.000000", "job-name": "model"},
        "category": {"image_size": [{"width": W, "height": H, "depth": 3}], "annotations": [{"class_id": 0, "top": 10, "left": 12, "width": 9, "height": 7}]},
        "category-metadata": {"class-map": {"0": "scratch"}, "human-annotated": "yes", "creation-date": "2022-07-07T12:00:00.000000", "job-name": "labeling-job/adjust-1", "type": "groundtruth/object-detection"},
    }
    manifest = tmp_path / "adjusted.manifest"
    manifest.write_text(json.dumps(item) + "\n")
    labels = LocalLabelStore(local_store)
    assert import_path(local_store, labels, manifest).imported == 1
    [record] = latest_records(labels.records()).to_dict("records")
    assert json.loads(record["annotations"]) == [{"class_id": 0, "left": 12.0, "top": 10.0, "width": 9.0, "height": 7.0}]
    assert record["labeling_job"] == "labeling-job/adjust-1"


def test_coco_file_with_images_matches_by_content(local_store, tmp_path: Path):
    images = tmp_path / "coco" / "images"
    images.mkdir(parents=True)
    (images / "renamed-by-exporter.jpg").write_bytes(encoded_image(shade=70))
    _ingest(local_store, {"raw/camera-2/2026/11/25/original-name.jpg": encoded_image(shade=70)})
    document = {
        "info": {"date_created": "2024-05-01T10:00:00"},
        "images": [{"id": 1, "file_name": "renamed-by-exporter.jpg", "width": W, "height": H}, {"id": 2, "file_name": "nowhere.jpg", "width": W, "height": H}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 5, "bbox": [2, 3, 10, 12]},
            {"id": 11, "image_id": 99, "category_id": 5, "bbox": [2, 3, 10, 12]},
        ],
        "categories": [{"id": 5, "name": "scratch"}],
    }
    path = tmp_path / "coco" / "instances.json"
    path.write_text(json.dumps(document))
    labels = LocalLabelStore(local_store)
    report = import_path(local_store, labels, path, images_root=images)
    assert report.format == "coco" and report.matched_by == {"content_hash": 1}
    assert report.reasons() == {"image_not_found": 1, "invalid_value": 1}
    [row] = latest_records(labels.records()).to_dict("records")
    assert row["source_ref"] == "raw/camera-2/2026/11/25/original-name.jpg"
    assert json.loads(row["annotations"]) == [{"class_id": 0, "left": 2.0, "top": 3.0, "width": 10.0, "height": 12.0}]


def test_yolo_folder_by_content_and_by_stem(local_store, tmp_path: Path):
    folder = tmp_path / "yolo"
    (folder / "labels" / "train").mkdir(parents=True)
    (folder / "images" / "train").mkdir(parents=True)
    (folder / "data.yaml").write_text("names: ['scratch']\n")
    (folder / "images" / "train" / "a.png").write_bytes(encoded_image("PNG", shade=80))
    (folder / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.25 0.5\n")
    (folder / "labels" / "train" / "b.txt").write_text("")  # no image in the folder: matched by stem
    (folder / "labels" / "train" / "c.txt").write_text("0 0.5 0.5\n")  # malformed line
    (folder / "labels" / "train" / "d.txt").write_text("0 1.2 0.5 0.2 0.2\n")  # centre beyond the right edge
    _ingest(
        local_store,
        {
            "raw/import/2026/11/25/101010123456-renamed.png": encoded_image("PNG", shade=80),
            "raw/import/2026/11/25/101010123457-train__b.jpg": encoded_image(shade=81),
            "raw/import/2026/11/25/101010123458-d.jpg": encoded_image(shade=82),
        },
    )
    labels = LocalLabelStore(local_store)
    report = import_path(local_store, labels, folder)
    assert report.format == "yolo"
    assert report.matched_by == {"content_hash": 1, "relative_path": 1}
    assert report.reasons() == {"box_outside_image": 1, "unparseable": 1}
    latest = latest_records(labels.records()).set_index("source_ref")
    boxes = json.loads(latest.loc["raw/import/2026/11/25/101010123456-renamed.png", "annotations"])
    assert boxes == [{"class_id": 0, "left": 24.0, "top": 12.0, "width": 16.0, "height": 24.0}]
    assert json.loads(latest.loc["raw/import/2026/11/25/101010123457-train__b.jpg", "annotations"]) == []


def test_demo_inbox_records_are_imported_and_the_file_leaves_the_inbox(any_store):
    keys, inbox_key = write_demo_set(any_store, 5, seed=3)
    ingest_keys(any_store, keys, run_id="test")
    labels = LocalLabelStore(any_store)
    report = import_inbox_object(any_store, labels, inbox_key)
    assert (report.format, report.imported, report.matched_by) == ("records", 5, {"content_hash": 5})
    assert inbox_keys(any_store) == []
    assert any_store.exists(f"labels/imports/{report.import_id}/source/{inbox_key.rsplit('/', 1)[-1]}")


def test_an_unrecognised_inbox_file_is_reported_and_moved(local_store):
    local_store.put_bytes("inbox/labels/notes.txt", b"hello")
    report = import_inbox_object(local_store, LocalLabelStore(local_store), "inbox/labels/notes.txt")
    assert report.reasons() == {"unparseable": 1} and "cannot tell the label format" in report.rejects[0].detail
    assert inbox_keys(local_store) == []


def test_cli_import_and_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    from tagqa_assets.storage import LocalObjectStore

    store = LocalObjectStore(tmp_path / "store")
    monkeypatch.setenv("TAGQA_STORE", str(store.root))
    monkeypatch.chdir(tmp_path)
    _ingest(store, {"raw/import/2026/11/25/101010123456-bad__img-0.jpg": encoded_image(shade=5), "raw/import/2026/11/25/101010123457-bad__img-1.jpg": encoded_image(shade=6)})
    path = tmp_path / "labels.csv"
    path.write_text(BAD_CSV_HEADER + _csv_line("img-0.jpg", "[]") + _csv_line("img-9.jpg", "[]"))
    assert main(["labels", "import", str(path)]) == 0
    out = capsys.readouterr().out
    assert "2 row(s): 1 imported" in out and "image_not_found: 1" in out
    assert main(["labels", "import", str(path), "--strict"]) == 1
    assert main(["labels", "status"]) == 0
    status = capsys.readouterr().out
    assert "1 image(s) labeled" in status and "unlabeled images (no label, no open job): 1" in status
    assert main(["labels", "import", str(tmp_path / "missing.csv")]) == 2


@pytest.mark.parametrize(
    ("verdict", "meta", "expected"),
    [
        (0, {}, APPROVED),  # the reference pipeline: class 0 approves
        (2, {}, REJECTED),
        (1, {"class-name": "approve"}, APPROVED),  # the name wins over the id
        (0, {"class-name": "Reject"}, REJECTED),
        (1, {"class-map": {"0": "reject", "1": "approve"}}, APPROVED),  # a verification job whose class 0 rejects
        (0, {"class-name": "The boxes are right: every scratch has one tight box"}, APPROVED),
        (2, {"class-name": "The image is unusable (blurred, cut off, not a tag)"}, REJECTED),
        ("yes please", {}, "invalid_value"),  # neither an id nor a name
        (0, {"class-name": "maybe"}, "invalid_value"),
        (5, {"class-map": {"0": "approve", "1": "reject"}}, "invalid_value"),  # not in the class map
    ],
)
def test_groundtruth_verdicts_follow_the_class_map(local_store, tmp_path: Path, verdict, meta, expected):
    _ingest(local_store, {"raw/camera-1/2026/11/25/v.jpg": encoded_image(shade=90)})
    item = {
        "source-ref": "s3://gt-bucket/images/v.jpg",
        "category": {"image_size": [{"width": W, "height": H, "depth": 3}], "annotations": []},
        "category-metadata": {"creation-date": "2022-07-07T12:00:00.1", "job-name": "labeling-job/gt-1", "class-map": {"0": "scratch"}},
        "verified": verdict,
        "verified-metadata": {"creation-date": "2022-07-08T09:00:00Z", "type": "groundtruth/label-verification", **meta},
    }
    manifest = tmp_path / "verified.manifest"
    manifest.write_text(json.dumps(item) + "\n")
    labels = LocalLabelStore(local_store)
    report = import_path(local_store, labels, manifest)
    if expected in (APPROVED, REJECTED):
        assert report.imported == 1 and labels.latest()["status"].tolist() == [expected]
    else:
        assert report.imported == 0 and report.reasons() == {expected: 1} and "verdict" in report.rejects[0].detail


@pytest.mark.parametrize(
    ("date_created", "expected"),
    [
        ("2024-05-01T10:00:00", "2024-05-01T10:00:00Z"),  # naive = UTC, never local time
        ("2024-05-01T10:00:00.250", "2024-05-01T10:00:00.250Z"),  # fractional seconds
        ("2024-05-01 10:00:00.123456", "2024-05-01T10:00:00.123456Z"),
        ("2024-05-01T12:00:00+02:00", "2024-05-01T10:00:00Z"),
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00Z"),
        ("2017/09/01", "2017-09-01T00:00:00Z"),  # COCO's own style
        ("2024-05-01", "2024-05-01T00:00:00Z"),
    ],
)
def test_coco_date_created_is_iso_8601_and_naive_means_utc(local_store, tmp_path: Path, monkeypatch, date_created, expected):
    monkeypatch.setenv("TZ", "America/New_York")  # a machine in another zone reads the same instant
    import time as _time

    _time.tzset()
    try:
        _ingest(local_store, {"raw/camera-2/2026/11/25/d.jpg": encoded_image(shade=71)})
        document = {"info": {"date_created": date_created}, "images": [{"id": 1, "file_name": "d.jpg", "width": W, "height": H}], "annotations": [], "categories": []}
        path = tmp_path / "instances.json"
        path.write_text(json.dumps(document))
        labels = LocalLabelStore(local_store)
        assert import_path(local_store, labels, path).imported == 1
        assert labels.latest()["event_time"].tolist() == [pd.Timestamp(expected).timestamp()]
    finally:
        monkeypatch.delenv("TZ")
        _time.tzset()


def test_coco_unreadable_date_rejects_the_rows_with_a_reason(local_store, tmp_path: Path):
    _ingest(local_store, {"raw/camera-2/2026/11/25/e.jpg": encoded_image(shade=72)})
    document = {"info": {"date_created": "first of May"}, "images": [{"id": 1, "file_name": "e.jpg", "width": W, "height": H}], "annotations": []}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document))
    report = import_path(local_store, LocalLabelStore(local_store), path)
    assert report.reasons() == {"invalid_value": 1} and "date_created" in report.rejects[0].detail
