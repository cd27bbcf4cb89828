"""Camera sources: watched folder, looping set, OpenCV capture device (a video file here)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_fixtures import synthetic_tag_image
from edge_runtime.sources import CameraSource, FolderSource, LoopSource, new_image_id, open_source


def _take(source, count: int, timeout: float = 10.0) -> list:
    stop, frames = threading.Event(), []

    def run() -> None:
        for frame in source.frames(stop):
            frames.append(frame)
            if len(frames) >= count:
                stop.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    stop.set()
    thread.join(5)
    return frames


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def test_folder_source_reads_oldest_first_and_skips_partial_files(tmp_path: Path) -> None:
    for i, name in enumerate(["b.jpg", "a.png", "c.jpg_0"]):  # any extension: format is decided by content
        (tmp_path / name).write_bytes(b"x" * (i + 1))
        _age(tmp_path / name, 10 - i)
    for hidden in (".incoming.jpg", "d.jpg.part", "e.tmp"):  # names writers use while still writing
        (tmp_path / hidden).write_bytes(b"partial")
    frames = _take(FolderSource(tmp_path, settle_seconds=0.0), 3)
    assert [f.source_name for f in frames] == ["b.jpg", "a.png", "c.jpg_0"]
    assert frames[0].data == b"x" and frames[0].image_id.startswith("b-")


def test_folder_source_waits_for_a_file_to_settle_and_rereads_a_changed_one(tmp_path: Path) -> None:
    source, stop, frames = FolderSource(tmp_path, settle_seconds=0.3, poll_seconds=0.02), threading.Event(), []
    thread = threading.Thread(target=lambda: [frames.append(f) for f in source.frames(stop)], daemon=True)
    thread.start()
    (tmp_path / "cam.jpg").write_bytes(b"half")
    time.sleep(0.15)
    assert frames == []  # still being written
    time.sleep(0.4)
    assert [f.data for f in frames] == [b"half"]
    (tmp_path / "cam.jpg").write_bytes(b"half and the rest")  # the writer finished late
    _age(tmp_path / "cam.jpg", 1)
    time.sleep(0.2)
    stop.set()
    thread.join(5)
    assert [f.data for f in frames] == [b"half", b"half and the rest"]


def test_folder_source_delete_mode_removes_a_file_once_it_is_done(tmp_path: Path) -> None:
    (tmp_path / "a.jpg").write_bytes(b"a")
    _age(tmp_path / "a.jpg", 5)
    [frame] = _take(FolderSource(tmp_path, on_read="delete", settle_seconds=0.0), 1)
    assert (tmp_path / "a.jpg").exists()  # not before its result is queued
    frame.on_done()
    assert not (tmp_path / "a.jpg").exists()


def test_loop_source_cycles_in_name_order(tmp_path: Path) -> None:
    for name in ("2.jpg", "1.jpg"):
        (tmp_path / name).write_bytes(name.encode())
    frames = _take(LoopSource(tmp_path), 5)
    assert [f.source_name for f in frames] == ["1.jpg", "2.jpg", "1.jpg", "2.jpg", "1.jpg"]
    assert len({f.image_id for f in frames}) == 5  # every frame gets its own id


def test_loop_source_paces_frames(tmp_path: Path) -> None:
    (tmp_path / "1.jpg").write_bytes(b"1")
    started = time.monotonic()
    _take(LoopSource(tmp_path, interval_seconds=0.1), 4)
    assert time.monotonic() - started >= 0.3


def test_camera_source_reads_a_capture_device(tmp_path: Path) -> None:
    import cv2  # optional on the device; the dev extras install it (through ultralytics)

    video = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (450, 300))
    frame_image = cv2.imread(str(synthetic_tag_image(tmp_path / "tag.jpg", seed=3)))
    for _ in range(5):
        writer.write(frame_image)
    writer.release()
    frames = _take(CameraSource(str(video)), 7)  # past the end: the device is reopened
    assert len(frames) == 7 and frames[0].pixels.shape == (300, 450, 3) and frames[0].data is None
    assert frames[0].source_name == "line.avi"
    assert np.abs(frames[0].pixels.astype(int) - frame_image[:, :, ::-1]).mean() < 8  # RGB, not BGR


@pytest.mark.parametrize("spec, kind", [
    ("{dir}", FolderSource),  # a bare path is a watched folder
    ("folder:{dir}", FolderSource),
    ("loop:{dir}", LoopSource),
])
def test_open_source_specs(tmp_path: Path, spec: str, kind: type) -> None:
    assert isinstance(open_source(spec.format(dir=tmp_path)), kind)


def test_open_source_rejects_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not a directory"):
        open_source(f"loop:{tmp_path / 'missing'}")


@pytest.mark.parametrize("name, prefix", [
    ("tag-001.jpg", "tag-001-"),  # the stem is kept
    ("tag 04 (1).jpg_0", "tag_04_1-"),  # spaces and brackets made key-safe, odd extension dropped
    ("...", "frame-"),  # nothing usable left
])
def test_image_ids_are_key_safe(name: str, prefix: str) -> None:
    image_id = new_image_id(name)
    assert image_id.startswith(prefix) and len(image_id) == len(prefix) + 10
