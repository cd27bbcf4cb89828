"""raw_images: validation by decoding, quarantine with reasons, duplicates, accounting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from image_fixtures import encoded_image
from tagqa_assets.contracts.keys import QUARANTINE_PREFIX, RAW_PREFIX
from tagqa_assets.ingestion.assets import raw_images
from tagqa_assets.ingestion.catalog import RawImageCatalog
from tagqa_assets.ingestion.ingest import IngestReport, ingest_keys
from tagqa_assets.ingestion.writers import upload_folder
from tagqa_assets.storage import S3ObjectStore, StoreResource

DAY = "raw/camera-1/2026/11/25/"


def _reasons(store) -> dict[str, str]:
    """original key -> reason, from the quarantine reason records."""
    records = [store.get_json(i.key) for i in store.list_objects(QUARANTINE_PREFIX) if i.key.endswith(".reason.json")]
    return {r["original_key"]: r["reason"] for r in records}


def test_every_input_is_accounted_for(any_store):
    jpeg = encoded_image("JPEG", shade=80)
    inputs = {
        DAY + "100000-good.jpg": jpeg,
        DAY + "100001-png-named.jpg": encoded_image("PNG", shade=81),
        DAY + "100002-odd.jpg_0": encoded_image("JPEG", shade=82),
        DAY + "100003-again.jpg": jpeg,  # same bytes as good.jpg under another key
        DAY + "100004-empty.jpg": b"",
        DAY + "100005-half.jpg": encoded_image("JPEG", size=(300, 200), shade=83)[:400],
        DAY + "100006-text.jpg": b"not an image at all",
        DAY + "100007-bomb.png": encoded_image("PNG", size=(4000, 4000), mode="1"),
        "raw/loose.jpg": encoded_image("JPEG", shade=84),  # outside raw/<source>/<date>/
    }
    expected_reasons = {
        DAY + "100004-empty.jpg": "empty_file",
        DAY + "100005-half.jpg": "truncated",
        DAY + "100006-text.jpg": "not_an_image",
        DAY + "100007-bomb.png": "too_many_pixels",
        "raw/loose.jpg": "key_layout",
    }
    if isinstance(any_store, S3ObjectStore):
        # Only an S3 bucket can hold a key with '..'; a folder cannot.
        hostile = DAY + "../../../etc/passwd.jpg"
        any_store.client.put_object(Bucket=any_store.bucket, Key=any_store.prefix + hostile, Body=encoded_image(shade=85))
        inputs[hostile] = None
        expected_reasons[hostile] = "unsafe_key"
    for key, data in inputs.items():
        if data is not None:
            any_store.put_bytes(key, data)

    report = ingest_keys(any_store, list(inputs), run_id="run-1", max_pixels=10_000_000)

    assert report.seen == len(inputs)
    assert len(report.accepted) + len(report.quarantined) + len(report.duplicates) == report.seen
    assert sorted(r.key for r in report.accepted) == [DAY + "100000-good.jpg", DAY + "100001-png-named.jpg", DAY + "100002-odd.jpg_0"]
    assert {r.key: r.format for r in report.accepted}[DAY + "100001-png-named.jpg"] == "PNG"
    assert [(d.key, d.duplicate_of) for d in report.duplicates] == [(DAY + "100003-again.jpg", DAY + "100000-good.jpg")]
    assert _reasons(any_store) == expected_reasons
    # Quarantined bytes are kept next to their reason, and gone from raw/.
    remaining = {i.key for i in any_store.list_objects(RAW_PREFIX)}
    assert remaining == {r.key for r in report.accepted + report.duplicates}
    kept = [i.key for i in any_store.list_objects(QUARANTINE_PREFIX) if not i.key.endswith(".reason.json")]
    assert len(kept) == len(expected_reasons)

    catalog = RawImageCatalog(any_store)
    assert len(catalog.images()) == 3 and len(catalog.load()) == 4

    # A retried batch changes nothing.
    again = ingest_keys(any_store, list(inputs), run_id="run-2")
    assert (again.already_ingested, again.missing, again.seen) == (4, len(expected_reasons), 0)
    assert again.catalog_part is None
    assert len(RawImageCatalog(any_store).load()) == 4


def test_accounting_is_a_blocking_check_that_names_the_counts():
    [spec] = raw_images.check_specs
    assert spec.name == "accounting" and spec.blocking
    assert IngestReport(requested=3, accepted=[], quarantined=[], duplicates=[]).accounting_error() == (
        "ingestion accounting broken: accepted 0 + quarantined 0 + duplicates 0 != seen 3"
    )
    assert IngestReport(requested=2, already_ingested=1, missing=1).accounting_error() is None


def test_real_dataset_is_accepted_whole(real_dataset: Path, local_store):
    upload = upload_folder(local_store, real_dataset / "images", source="import")
    assert len(upload.keys) == 249 and upload.refused == []
    report = ingest_keys(local_store, upload.keys, run_id="real")
    assert (len(report.accepted), len(report.quarantined), len(report.duplicates)) == (249, 0, 0)
    formats = {r.format for r in report.accepted}
    assert formats == {"JPEG"}
    assert sum(r.key.split("-", 1)[1].endswith(tuple(f".jpg_{i}" for i in range(10))) for r in report.accepted) == 10


def test_raw_images_asset_full_reconcile_in_dagster(tmp_path: Path):
    store = StoreResource(root=str(tmp_path / "store"))
    opened = store.open()
    opened.put_bytes(DAY + "1-a.jpg", encoded_image(shade=10))
    opened.put_bytes(DAY + "2-b.jpg", b"junk")
    result = dg.materialize([raw_images], resources={"store": store})
    assert result.success
    metadata = result.asset_materializations_for_node("raw_images")[0].metadata
    assert (metadata["files_seen"].value, metadata["accepted"].value, metadata["quarantined"].value) == (2, 1, 1)
    assert "data:image/jpeg;base64," in metadata["new_images"].value
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == "accounting" and check.passed
    assert {k: v.value for k, v in check.metadata.items()} == {"files_seen": 2, "accepted": 1, "quarantined": 1, "duplicates": 0}
    # A second reconcile finds nothing new.
    again = dg.materialize([raw_images], resources={"store": store})
    assert again.asset_materializations_for_node("raw_images")[0].metadata["files_seen"].value == 0


@pytest.mark.slow
def test_cli_demo_and_upload(tmp_path: Path):
    env = {**os.environ, "TAGQA_STORE": str(tmp_path / "store")}
    tagqa = [sys.executable, "-m", "tagqa_assets.cli"]
    subprocess.run([*tagqa, "demo", "--count", "4", "--seed", "3"], check=True, env=env, cwd=tmp_path)
    second = subprocess.run([*tagqa, "demo", "--count", "4", "--if-empty"], check=True, env=env, cwd=tmp_path, capture_output=True, text=True)
    assert "not empty" in second.stdout
    folder = tmp_path / "upload" / "sub"
    folder.mkdir(parents=True)
    (folder / "x.jpg").write_bytes(encoded_image())
    subprocess.run([*tagqa, "upload", str(tmp_path / "upload"), "--source", "camera-7"], check=True, env=env, cwd=tmp_path)
    raw = sorted(p.relative_to(tmp_path / "store").as_posix() for p in (tmp_path / "store" / "raw").rglob("*") if p.is_file())
    assert len(raw) == 5
    assert any(k.startswith("raw/camera-7/") and k.endswith("-sub__x.jpg") for k in raw)
    inbox = list((tmp_path / "store" / "inbox" / "labels").glob("*.jsonl"))
    rows = [json.loads(line) for line in inbox[0].read_text().splitlines()]
    assert [r["source_ref"] for r in rows] == [k for k in raw if k.startswith("raw/camera-demo/")]
    missing = subprocess.run([*tagqa, "upload", str(tmp_path / "nope")], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode == 2 and "nope" in missing.stderr
