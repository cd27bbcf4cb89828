"""EXIF orientation, one rule everywhere: real tag images saved with Orientation 1, 3, 6 and 8.

Each variant stores its pixels turned so that a viewer (EXIF applied) shows the original
upright tag. The test checks that ingestion records the display size, that a label drawn on
the upright view imports, and that its boxes cover the same tag pixels in the exported YOLO
dataset and in what the edge runtime (and evaluation, which decodes with it) sees.
"""

from __future__ import annotations

import ast
import csv
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_runtime.imaging import decode_image
from tagqa_assets.contracts.datasets import dataset_version_name
from tagqa_assets.datasets.build import build_dataset_version
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.datasets.yolo_export import upright_image_bytes
from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.ingestion.validation import inspect_image
from tagqa_assets.labeling.imports.sources import import_path
from tagqa_assets.labeling.label_store import LocalLabelStore

# What a camera stores for an upright view, per EXIF orientation (viewers undo it).
STORE_TURN = {1: None, 3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
W, H = 450, 300


def _reference(dataset: Path) -> tuple[Path, list[dict]]:
    """A real tag with several boxes in labels.csv."""
    with open(dataset / "labels.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            boxes = ast.literal_eval(row["annotations"])
            if len(boxes) >= 2:
                return dataset / "images" / row["source_ref"].split("2021-01-28-09-50-34/", 1)[1], boxes
    raise AssertionError("labels.csv has no row with two boxes")


def _oriented(upright: Image.Image, orientation: int) -> bytes:
    turn = STORE_TURN[orientation]
    stored = upright.transpose(turn) if turn is not None else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    out = io.BytesIO()
    stored.save(out, format="JPEG", quality=97, exif=exif.tobytes())
    return out.getvalue()


def _crop_difference(pixels: np.ndarray, reference: np.ndarray, box: tuple[float, float, float, float]) -> float:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return float(np.abs(pixels[y1:y2, x1:x2].astype(float) - reference[y1:y2, x1:x2].astype(float)).mean())


@pytest.fixture
def oriented_tags(real_dataset, local_store):
    path, boxes = _reference(real_dataset)
    upright = Image.open(path).convert("RGB")
    assert upright.size == (W, H)
    keys = {}
    for orientation in STORE_TURN:
        key = f"raw/camera-9/2024/06/01/tag-o{orientation}.jpg"
        local_store.put_bytes(key, _oriented(upright, orientation))
        keys[orientation] = key
    report = ingest_keys(local_store, list(keys.values()), run_id="exif")
    assert len(report.accepted) == 4 and not report.quarantined
    return local_store, keys, np.asarray(upright), boxes


def test_ingestion_records_display_size_stored_size_and_orientation(oriented_tags):
    store, keys, _, _ = oriented_tags
    catalog = RawImageCatalog(store).images().set_index("key")
    for orientation, key in keys.items():
        row = catalog.loc[key]
        assert (row.width, row.height, row.orientation) == (W, H, orientation)
        turned = orientation in (6, 8)
        assert (row.stored_width, row.stored_height) == ((H, W) if turned else (W, H))


def test_invalid_orientation_values_count_as_upright():
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 9  # not an orientation: viewers ignore it
    Image.new("RGB", (40, 20)).save(out, format="JPEG", exif=exif.tobytes())
    info = inspect_image(out.getvalue())
    assert (info.width, info.height, info.orientation, info.stored_width, info.stored_height) == (40, 20, 1, 40, 20)


def test_upright_label_imports_and_lands_on_the_same_pixels_in_the_dataset_and_on_the_device(oriented_tags, tmp_path):
    store, keys, upright, boxes = oriented_tags
    labels_csv = tmp_path / "labels.csv"
    with open(labels_csv, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["source_ref", "image_width", "image_height", "image_depth", "annotations", "event_time", "labeling_job", "status"])
        for orientation, key in keys.items():
            writer.writerow([key, W, H, 3, repr(boxes), 1.7e9 + orientation, "upright-view", "APPROVED"])
        # The same label against the *stored* size of a turned photo: not the rule, rejected.
        writer.writerow([keys[6], H, W, 3, repr(boxes), 1.6e9, "stored-view", "APPROVED"])
    labels = LocalLabelStore(store)
    report = import_path(store, labels, labels_csv)
    assert report.imported == 4 and report.reasons() == {"size_mismatch": 1}
    assert "label says 300x450, raw image" in report.rejects[0].detail and "is 450x300" in report.rejects[0].detail

    snapshot = labels.snapshot()
    version = dataset_version_name(1, snapshot.snapshot_id)
    build_dataset_version(store, snapshot, version, ratios={"train": 1.0, "val": 0.0, "test": 0.0})
    manifest = DatasetVersionStore(store).manifest(version).set_index("image_key")
    yolo = f"datasets/{version}/yolo/"
    pixel_boxes = [(b["left"], b["top"], b["left"] + b["width"], b["top"] + b["height"]) for b in boxes]
    for orientation, key in keys.items():
        image_path = manifest.loc[key, "yolo_image"]
        exported = store.get_bytes(yolo + image_path)
        with Image.open(io.BytesIO(exported)) as image:
            assert image.size == (W, H) and image.getexif().get(0x0112, 1) == 1  # upright pixels, no tag left
            pixels = np.asarray(image.convert("RGB"))
        label_lines = store.get_bytes(yolo + "labels/" + image_path[len("images/") :].rsplit(".", 1)[0] + ".txt").decode().split("\n")
        from_label = []
        for line in filter(None, label_lines):
            _, cx, cy, w, h = (float(v) for v in line.split())
            from_label.append(((cx - w / 2) * W, (cy - h / 2) * H, (cx + w / 2) * W, (cy + h / 2) * H))
        assert np.allclose(sorted(from_label), sorted(pixel_boxes), atol=0.01)
        device = decode_image(store.get_bytes(key))  # the edge runtime (and evaluation) decode of the raw photo
        assert device.shape[:2] == (H, W)
        for box in pixel_boxes:
            # The boxed tag pixels are the original's in the export and on the device (JPEG noise only) ...
            assert _crop_difference(pixels, upright, box) < 4.0, (orientation, box)
            assert _crop_difference(device, upright, box) < 4.0, (orientation, box)
        if orientation != 1:
            # ... while the stored, unturned pixels would put the box on other pixels.
            stored = np.asarray(Image.open(io.BytesIO(store.get_bytes(key))).convert("RGB"))
            if stored.shape[:2] == (H, W):
                assert max(_crop_difference(stored, upright, box) for box in pixel_boxes) > 10.0


def test_upright_bytes_of_an_upright_png_stay_lossless():
    pixels = np.random.default_rng(3).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pixels).save(out, format="PNG", exif=exif.tobytes())
    turned = np.asarray(Image.open(io.BytesIO(upright_image_bytes(out.getvalue(), "PNG"))))
    assert np.array_equal(turned, np.asarray(Image.fromarray(pixels).transpose(Image.Transpose.ROTATE_270)))
    assert turned.shape == (30, 20, 3)


@pytest.mark.slow  # uses the session's trained model (trains it when no other test did)
def test_device_detections_on_turned_photos_land_on_the_same_pixels(real_dataset, tmp_path_factory):
    """Lossless (PNG) copies of a real tag stored turned with Orientation 3/6/8: the edge runtime
    decodes them upright, so a model's detections equal those on the upright photo exactly."""
    from edge_runtime.detector import Detector, Thresholds
    from edge_runtime.models import load_verified_model
    from model_fixtures import trained_chain
    from tagqa_assets.contracts.models import MODEL_CARD_FILE, ONNX_FILE, model_key

    chain = trained_chain(tmp_path_factory)
    device_dir = tmp_path_factory.mktemp("device-model")
    for name in (ONNX_FILE, MODEL_CARD_FILE):
        chain.store.download_file(model_key(chain.model_id, name), device_dir / name)
    model = load_verified_model(device_dir)
    path, _ = _reference(real_dataset)
    upright = Image.open(path).convert("RGB")
    detector, thresholds = Detector(), Thresholds(conf=0.001, iou=0.7, max_detections=300)

    def detections(orientation: int) -> list[tuple]:
        turn = STORE_TURN[orientation]
        exif = Image.Exif()
        exif[0x0112] = orientation
        out = io.BytesIO()
        (upright.transpose(turn) if turn is not None else upright).save(out, format="PNG", exif=exif.tobytes())
        assert inspect_image(out.getvalue()).width == W  # the display size, for every orientation
        frame = detector.detect(decode_image(out.getvalue()), model, thresholds)
        assert (frame.image_width, frame.image_height) == (W, H)
        return [(d.class_name, round(d.score, 5), *(round(v, 3) for v in d.box_xyxy)) for d in frame.detections]

    reference = detections(1)
    assert reference  # at conf 0.001 even a tiny model reports boxes
    for orientation in (3, 6, 8):
        assert detections(orientation) == reference, orientation
