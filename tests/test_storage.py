"""Both store backends behave the same: ordering, StartAfter, prefixes, atomicity, key safety."""

from __future__ import annotations

from pathlib import Path

import pytest

from tagqa_assets.contracts.keys import UnsafeKeyError
from tagqa_assets.storage import LocalObjectStore, ObjectNotFound, open_store


def test_round_trip_and_missing_key(any_store):
    any_store.put_bytes("a/b/c.bin", b"\x00\x01payload")
    assert any_store.get_bytes("a/b/c.bin") == b"\x00\x01payload"
    assert any_store.exists("a/b/c.bin")
    assert not any_store.exists("a/b/other.bin")
    with pytest.raises(ObjectNotFound, match="a/b/other.bin"):
        any_store.get_bytes("a/b/other.bin")


def test_listing_is_lexicographic_like_s3(any_store):
    # "a-b" sorts before "a/x" in S3 ('-' < '/'): a naive directory walk gets this wrong.
    keys = ["p/a/x", "p/a-b", "p/a.c", "p/b/y/z", "p/a/w", "q/out"]
    for key in keys:
        any_store.put_bytes(key, key.encode())
    listed = [info.key for info in any_store.list_objects("p/")]
    assert listed == sorted(k for k in keys if k.startswith("p/"))
    assert [info.size for info in any_store.list_objects("p/a/")] == [5, 5]


def test_start_after_returns_only_newer_keys(any_store):
    for day in ("2026/11/23", "2026/11/24", "2026/11/25"):
        for name in ("100000-a.jpg", "200000-b.jpg"):
            any_store.put_bytes(f"raw/cam/{day}/{name}", b"x")
    after = [i.key for i in any_store.list_objects("raw/cam/", start_after="raw/cam/2026/11/24/100000-a.jpg")]
    assert after == [
        "raw/cam/2026/11/24/200000-b.jpg",
        "raw/cam/2026/11/25/100000-a.jpg",
        "raw/cam/2026/11/25/200000-b.jpg",
    ]


def test_prefix_listing_mid_name(any_store):
    for key in ("raw/camera-1/x", "raw/camera-2/y", "raw/import/z"):
        any_store.put_bytes(key, b"1")
    assert [i.key for i in any_store.list_objects("raw/camera")] == ["raw/camera-1/x", "raw/camera-2/y"]
    assert any_store.list_prefixes("raw/") == ["raw/camera-1/", "raw/camera-2/", "raw/import/"]


def test_copy_move_delete(any_store):
    any_store.put_bytes("src/one", b"1")
    any_store.copy("src/one", "dst/one")
    any_store.move("src/one", "moved/one")
    assert any_store.get_bytes("dst/one") == b"1"
    assert any_store.get_bytes("moved/one") == b"1"
    assert not any_store.exists("src/one")
    any_store.delete("src/one")  # deleting a missing key is not an error
    assert any_store.list_prefixes("") == ["dst/", "moved/"]


def test_json_and_prefix_download(any_store, tmp_path: Path):
    any_store.put_json("d/meta.json", {"b": 1, "a": [1, 2]})
    any_store.put_bytes("d/sub/blob", b"blob")
    assert any_store.get_json("d/meta.json") == {"a": [1, 2], "b": 1}
    assert any_store.download_prefix("d/", tmp_path / "mirror") == 2
    assert (tmp_path / "mirror" / "sub" / "blob").read_bytes() == b"blob"
    any_store.put_bytes("d/bad.json", b"{not json")
    with pytest.raises(ValueError, match="bad.json"):
        any_store.get_json("d/bad.json")


@pytest.mark.parametrize(
    "key",
    [
        "../escape",  # climbs out of the root
        "raw/../../etc/passwd",  # climbs out from inside
        "/etc/passwd",  # absolute
        "raw//double",  # empty component
        "raw/./dot",  # '.' component
        "raw\\windows",  # backslash separator
        "",  # empty key
    ],
)
def test_unsafe_keys_are_refused_for_writes(any_store, key):
    with pytest.raises(UnsafeKeyError):
        any_store.put_bytes(key, b"x")


def test_local_writes_leave_no_partial_files_visible(tmp_path: Path):
    store = LocalObjectStore(tmp_path)
    store.put_bytes("k/obj", b"v1")
    # A crashed writer leaves its temporary file behind; readers must never see it.
    (tmp_path / "k" / ".tagqa-tmp-obj.deadbeef").write_bytes(b"half")
    assert [i.key for i in store.list_objects("k/")] == ["k/obj"]
    store.put_bytes("k/obj", b"v2")
    assert store.get_bytes("k/obj") == b"v2"


def test_open_store_selects_backend(tmp_path: Path, moto_endpoint, s3_bucket):
    assert isinstance(open_store(str(tmp_path / "s")), LocalObjectStore)
    s3 = open_store(f"s3://{s3_bucket}/pre/fix", endpoint_url=moto_endpoint, region="us-east-1")
    s3.put_bytes("k", b"v")
    assert s3.uri_for("k") == f"s3://{s3_bucket}/pre/fix/k"
    assert [i.key for i in s3.list_objects("")] == ["k"]
    with pytest.raises(ValueError, match="bucket"):
        open_store("s3://ab")
