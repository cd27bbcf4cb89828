"""The demo camera ``make run`` starts: frames into a device folder, whole, unique, never more than it may leave waiting."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from edge_runtime.sources import FolderSource
from polling import wait_until
from tagqa_assets.deployment.demo_camera import FRAME_PREFIX, DemoCamera, demo_frames
from tagqa_assets.ingestion.synthetic import HEIGHT, WIDTH, generate_tags


def _run(camera: DemoCamera, seconds: float) -> None:
    stop = threading.Event()
    thread = threading.Thread(target=camera.run, args=(stop,))
    thread.start()
    time.sleep(seconds)
    stop.set()
    thread.join(10)
    assert not thread.is_alive()


def test_frames_are_tag_images_the_demo_set_does_not_hold() -> None:
    frames = demo_frames(6, ("scratch", "dent"))
    assert len({f.jpeg for f in frames}) == 6
    for frame in frames:
        with Image.open(io.BytesIO(frame.jpeg)) as image:
            assert (image.format, image.size) == ("JPEG", (WIDTH, HEIGHT))
    training = {tag.jpeg for tag in generate_tags(40, seed=0, defects=("scratch", "dent"))}
    assert not training & {f.jpeg for f in frames}


def test_a_taxonomy_the_generator_cannot_draw_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="crack"):
        demo_frames(3, ("crack",))
    assert len(demo_frames(2, ("crack", "scratch"))) == 2  # draws the kinds it can


def test_camera_pauses_at_max_pending_and_resumes_when_the_device_reads(tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / f".{FRAME_PREFIX}old.jpg.part").write_bytes(b"half a frame from a killed camera")
    (folder / "operator-drop.jpg").write_bytes(b"not the camera's")
    camera = DemoCamera(folder, demo_frames(3, ("scratch",)), fps=50, max_pending=4)
    _run(camera, 1.0)  # 50 frames' worth of time: it must stop at 4
    names = sorted(p.name for p in folder.iterdir())
    ours = [n for n in names if n.startswith(FRAME_PREFIX)]
    assert len(ours) == 4 and camera.written == 4
    assert not [n for n in names if n.endswith(".part")], names  # the stale partial is gone, no new one left
    assert "operator-drop.jpg" in names  # other files are left alone and do not count

    # A device reading the folder (the runtime's own source, deleting what it read): the camera feeds again.
    source, stop, read = FolderSource(folder, on_read="delete", settle_seconds=0.0), threading.Event(), []

    def device() -> None:
        for frame in source.frames(stop):
            read.append(frame)
            frame.on_done and frame.on_done()

    reader = threading.Thread(target=device)
    reader.start()
    try:
        _run(camera, 1.5)
    finally:
        stop.set()
        reader.join(10)
    assert camera.written > 8
    camera_frames = [f for f in read if f.source_name.startswith(FRAME_PREFIX)]
    assert len({f.image_id for f in camera_frames}) == len(camera_frames) >= 8  # unique names: unique ids
    for frame in camera_frames:
        Image.open(io.BytesIO(frame.data)).verify()  # every frame read was whole


def _camera_process(tmp_path: Path, *arguments: str, **settings: str) -> subprocess.Popen:
    env = {**os.environ, **settings}
    return subprocess.Popen([sys.executable, "-m", "tagqa_assets.cli", "edge", "demo-camera", "--devices-root",
                             str(tmp_path / "devices"), *arguments], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.mark.slow  # two CLI processes
def test_cli_feeds_the_first_device_and_stops_cleanly_on_sigterm_or_stays_off(tmp_path: Path) -> None:
    process = _camera_process(tmp_path, "--fps", "20", "--if-enabled", TAGQA_DEVICE_ID="line-7,line-8")
    incoming = tmp_path / "devices" / "line-7" / "incoming"

    def ten_frames() -> bool:
        if incoming.is_dir() and len(list(incoming.glob(f"{FRAME_PREFIX}*.jpg"))) >= 10:
            return True
        assert process.poll() is None, f"the camera exited with {process.returncode}: {process.stdout.read()}"
        return False
    wait_until(ten_frames, f"10 frames in {incoming}", 60, poll=0.2)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=10)
    assert process.returncode == 0, output
    assert "demo camera stopped after 10 frames" in output
    assert sorted(p.name for p in incoming.iterdir() if not p.name.startswith(FRAME_PREFIX)) == []

    off = _camera_process(tmp_path / "devices", "--if-enabled", TAGQA_DEMO_CAMERA="false")
    output, _ = off.communicate(timeout=60)
    assert off.returncode == 0 and "demo camera off" in output, output
    assert not (tmp_path / "devices" / "devices").exists()
