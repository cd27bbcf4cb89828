"""Peak memory of the edge runtime with the largest frames it accepts (``maxFramePixels``).

Runs ``python -m edge_runtime run`` (default configuration: 2 workers, no broker reachable,
so results stay in the result log) three times on a yolov8n exported at ``--imgsz``, each in
its own process, and reads that process's peak RSS (``VmHWM`` in ``/proc/<pid>/status``, polled
every 10 ms until it exits; ``ru_maxrss`` would count the parent's pages at fork):

  baseline  20 real metal-tag JPEGs (450x300)
  jpeg      8 JPEGs of exactly ``--pixels`` pixels (4:3)
  png       8 PNGs of exactly ``--pixels`` pixels (4:3; decoded by Pillow, the heavier path)

    python benchmarks/edge_frame_memory.py                       # the default limit, imgsz 640
    python benchmarks/edge_frame_memory.py --pixels 20000000     # another limit

Prints ``RESULT frame_memory imgsz=N pixels=P baseline_rss_mb=X jpeg_rss_mb=X png_rss_mb=X``.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]


def peak_rss_mb(model: Path, folder: Path, frames: int, state: Path) -> float:
    from edge_fixtures import free_port

    process = subprocess.Popen(
        [sys.executable, "-m", "edge_runtime", "run", "--model", str(model), "--source", f"folder:{folder}",
         "--broker", f"127.0.0.1:{free_port()}", "--device-id", "mem-1", "--state-dir", str(state),
         "--max-frames", str(frames), "--flush-timeout", "0"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import time

    peak_kb = 0
    status_file = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            text = status_file.read_text()
            peak_kb = max(peak_kb, int(text.split("VmHWM:")[1].split()[0]))
        except (OSError, IndexError):
            pass
        time.sleep(0.01)
    if process.returncode != 0:
        raise RuntimeError(f"runtime failed: {process.stderr.read().decode()[-2000:]}")
    return peak_kb / 1024


def large_frames(folder: Path, pixels: int, fmt: str, count: int, source: Path) -> None:
    """``count`` frames of exactly ``pixels`` pixels (4:3): a real tag scaled up, with noise so each differs."""
    import numpy as np
    from PIL import Image

    width = int(math.sqrt(pixels * 4 / 3))
    height = pixels // width
    base = np.asarray(Image.open(source).convert("RGB").resize((width, height)))
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        noisy = np.clip(base.astype(np.int16) + np.random.default_rng(i).integers(-8, 8, base.shape[:2])[..., None],
                        0, 255).astype(np.uint8)
        image = Image.fromarray(noisy)
        if fmt == "jpeg":
            image.save(folder / f"big-{i}.jpg", quality=90)
        else:
            image.save(folder / f"big-{i}.png", compress_level=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pixels", type=int, default=None, help="frame size (default: the runtime's maxFramePixels)")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--model", help="an existing model directory (default: export yolov8n at --imgsz)")
    parser.add_argument("--workdir")
    args = parser.parse_args()
    from edge_fixtures import export_model_dirs, sample_images
    from edge_runtime.device_config import DeviceConfig

    pixels = args.pixels or DeviceConfig().max_frame_pixels
    work = Path(args.workdir or tempfile.mkdtemp(prefix="tagqa-frame-memory-"))
    images = sample_images(work / "baseline", 20)
    model = Path(args.model) if args.model else work / "model"
    if not args.model:
        export_model_dirs({model: {"imgsz": args.imgsz, "seed": 0, "version": "1", "dataset_version": "ds-mem"}},
                          calibration_dir=work / "baseline", state=work / "ultralytics")
    results = {"baseline": peak_rss_mb(model, work / "baseline", 20, work / "state-baseline")}
    for fmt in ("jpeg", "png"):
        large_frames(work / fmt, pixels, fmt, 8, images[0])
        results[fmt] = peak_rss_mb(model, work / fmt, 8, work / f"state-{fmt}")
        print(f"{fmt}: peak RSS {results[fmt]:.0f} MB", flush=True)
    print(f"RESULT frame_memory imgsz={args.imgsz} pixels={pixels} baseline_rss_mb={results['baseline']:.0f} "
          f"jpeg_rss_mb={results['jpeg']:.0f} png_rss_mb={results['png']:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
