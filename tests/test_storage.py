"""Both store backends behave the same: ordering, StartAfter, prefixes, atomicity, key safety."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
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


def test_list_prefixes_lists_only_folders_that_hold_an_object(any_store):
    any_store.put_bytes("p/full/deep/er/obj", b"1")
    any_store.put_bytes("p/other/x", b"1")
    if isinstance(any_store, LocalObjectStore):  # what killed writers and removed objects leave behind locally
        (any_store.root / "p" / "empty" / "nested").mkdir(parents=True)
        (any_store.root / "p" / "tmp-only").mkdir()
        (any_store.root / "p" / "tmp-only" / f".tagqa-tmp-obj.{'0' * 32}").write_bytes(b"half")
    assert any_store.list_prefixes("p/") == ["p/full/", "p/other/"]
    any_store.delete("p/other/x")
    assert any_store.list_prefixes("p/") == ["p/full/"]


_WRITER = """
import sys
from tagqa_assets.storage import LocalObjectStore
LocalObjectStore(sys.argv[1]).put_bytes(sys.argv[2], b"\\0" * int(sys.argv[3]))
print("done", flush=True)
"""


def _writer_caught_mid_write(root: Path, key: str, stop_signal: int) -> tuple[subprocess.Popen, Path]:
    """Start a writer of a large object and send ``stop_signal`` once its temporary file exists."""
    for size in (300_000_000, 600_000_000, 900_000_000):
        writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(root), key, str(size)], stdout=subprocess.PIPE)
        folder = root / key.rsplit("/", 1)[0]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and writer.poll() is None:
            temps = list(folder.glob(".tagqa-tmp-*")) if folder.is_dir() else []
            if temps:
                writer.send_signal(stop_signal)
                if temps[0].exists():
                    return writer, temps[0]
                break  # renamed into place before the signal landed: try a larger object
            time.sleep(0.005)
        writer.kill()
        writer.wait(30)
        LocalObjectStore(root).delete(key)
    raise AssertionError(f"could not catch a writer of {key} mid-write")


@pytest.mark.slow  # seconds of waiting: in make test, not the quick tier
def test_killed_writers_temp_file_is_removed_once_stale_never_a_live_writers(tmp_path: Path):
    BOUND = 15.0  # seconds a temporary file must be untouched before a store open removes it
    root = tmp_path / "store"
    LocalObjectStore(root).put_bytes("keep/obj", b"1")
    killed, killed_temp = _writer_caught_mid_write(root, "dead/sub/obj", signal.SIGKILL)
    killed.wait(30)
    assert killed_temp.exists() and not (root / "dead" / "sub" / "obj").exists()

    live, live_temp = _writer_caught_mid_write(root, "live/obj", signal.SIGSTOP)  # alive, paused mid-write
    try:
        assert time.time() - killed_temp.stat().st_mtime < BOUND - 3, "machine too slow for this bound"
        fresh = LocalObjectStore(root, stale_temp_after_s=BOUND)
        assert fresh.removed_temp_files == [] and killed_temp.exists() and live_temp.exists()
        assert fresh.list_prefixes("") == ["keep/"]  # a folder with only a temporary file is no prefix
        live.send_signal(signal.SIGCONT)
        assert live.communicate(timeout=120)[0].strip() == b"done"
    finally:
        live.kill()
    assert not live_temp.exists() and (root / "live" / "obj").is_file()

    time.sleep(max(0.0, BOUND + 0.5 - (time.time() - killed_temp.stat().st_mtime)))
    stale = LocalObjectStore(root, stale_temp_after_s=BOUND)
    assert stale.removed_temp_files == [str(killed_temp.relative_to(root))]
    assert not (root / "dead").exists()  # the folders it emptied went with it
    assert stale.list_prefixes("") == ["keep/", "live/"]
    assert LocalObjectStore(root, stale_temp_after_s=BOUND).removed_temp_files == []  # the sweep ran a moment ago
