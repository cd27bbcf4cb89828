"""Building a dataset version from N label records in the local store: seconds and peak memory.

For each size (default 5,000 and 20,000) a fresh local store is seeded with N small,
distinct synthetic JPEGs (ingested by the real ingestion code) and N approved label records
with 0-3 boxes each. Then a *fresh* Python process times what the ``dataset_version``
asset does: read the label store, take the approved snapshot, build and commit the version
(split, manifest, YOLO export with hard-linked images and one label file per image,
stats). Peak RSS (``ru_maxrss``) of that process is reported with its RSS before the
build started (imports done), so the build's own memory is ``peak - before``. The smaller
size is the reference: the build's memory should grow no faster than the manifest.

Last line: RESULT images=N seconds=S peak_rss_mb=M
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def seed(root: Path, count: int) -> None:
    """N distinct small JPEGs under raw/, ingested, plus N approved label records."""
    import numpy as np
    from PIL import Image

    from tagqa_assets.contracts.labels import Annotation, LabelRecord
    from tagqa_assets.ingestion.ingest import ingest_keys
    from tagqa_assets.labeling.label_store import LocalLabelStore
    from tagqa_assets.storage import LocalObjectStore

    store = LocalObjectStore(root)
    rng = np.random.default_rng(count)
    keys = []
    folder = root / "raw" / "camera-bench" / "2026" / "11" / "25"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=70)
        name = f"{index:012d}-tag.jpg"
        # Seeding writes files directly (no fsync per file): it is setup, not what is measured.
        (folder / name).write_bytes(buffer.getvalue())
        keys.append(f"raw/camera-bench/2026/11/25/{name}")
    report = ingest_keys(store, keys, run_id="bench")
    assert len(report.accepted) == count, f"only {len(report.accepted)} of {count} images were accepted"
    draw = random.Random(count)
    records = [
        LabelRecord(
            source_ref=row.key,
            image_sha256=row.sha256,
            image_width=row.width,
            image_height=row.height,
            annotations=tuple(Annotation(0, draw.uniform(0, 40), draw.uniform(0, 30), 12, 10) for _ in range(draw.randint(0, 3))),
            event_time=1_700_000_000.0 + index,
            labeling_job="bench",
        )
        for index, row in enumerate(report.accepted)
    ]
    LocalLabelStore(store).append(records)


def _warm_up() -> None:
    """Load what the build imports lazily (Parquet, thread pool) so 'before' is a fair baseline."""
    from concurrent.futures import ThreadPoolExecutor

    import pandas as pd

    buffer = io.BytesIO()
    pd.DataFrame({"a": [1]}).to_parquet(buffer)
    pd.read_parquet(io.BytesIO(buffer.getvalue()))
    with ThreadPoolExecutor(32) as pool:
        list(pool.map(abs, range(64)))


def build(root: Path) -> dict:
    """Time snapshot + build in this (fresh) process; returns the figures."""
    from tagqa_assets.contracts.datasets import dataset_version_name
    from tagqa_assets.datasets.build import build_dataset_version
    from tagqa_assets.labeling.label_store import LocalLabelStore
    from tagqa_assets.storage import LocalObjectStore

    store = LocalObjectStore(root)
    _warm_up()
    before = _rss_mb()
    started = time.perf_counter()
    snapshot = LocalLabelStore(store).snapshot()
    snapshot_s = time.perf_counter() - started
    result = build_dataset_version(store, snapshot, dataset_version_name(1, snapshot.snapshot_id))
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "images": len(result.manifest),
        "seconds": round(seconds, 2),
        "snapshot_s": round(snapshot_s, 2),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "build_mb": round(peak - before, 1),
        "manifest_mb": round(result.manifest.memory_usage(deep=True).sum() / 2**20, 2),
        "counts": result.record.counts,
    }


def run_size(count: int, workdir: Path) -> dict:
    root = workdir / f"store-{count}"
    started = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--seed-only", str(count), "--root", str(root)], check=True)
    seed_s = time.perf_counter() - started
    out = subprocess.run([sys.executable, __file__, "--build-only", "--root", str(root)], check=True, capture_output=True, text=True)
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    figures["seed_s"] = round(seed_s, 1)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5000,20000", help="comma-separated image counts; the last one is reported")
    parser.add_argument("--seed-only", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed_only is not None:
        seed(args.root, args.seed_only)
        return 0
    if args.build_only:
        print(json.dumps(build(args.root)))
        return 0
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="tagqa-dataset-bench-") as workdir:
        results = [run_size(count, Path(workdir)) for count in sizes]
    print(f"{'images':>8} {'seconds':>8} {'snapshot_s':>10} {'rss_before_mb':>13} {'peak_rss_mb':>11} {'build_mb':>8} {'manifest_mb':>11} {'seed_s':>7}")
    for r in results:
        print(f"{r['images']:>8} {r['seconds']:>8} {r['snapshot_s']:>10} {r['rss_before_mb']:>13} {r['peak_rss_mb']:>11} {r['build_mb']:>8} {r['manifest_mb']:>11} {r['seed_s']:>7}")
    if len(results) > 1:
        small, large = results[0], results[-1]
        size_ratio = large["images"] / small["images"]
        memory_ratio = large["build_mb"] / small["build_mb"] if small["build_mb"] > 0 else float("inf")
        print(
            f"{large['images']} vs {small['images']} images ({size_ratio:.1f}x): build memory {memory_ratio:.2f}x, "
            f"manifest {large['manifest_mb'] / small['manifest_mb']:.2f}x, time {large['seconds'] / small['seconds']:.2f}x"
        )
    last = results[-1]
    print(f"RESULT images={last['images']} seconds={last['seconds']} peak_rss_mb={last['peak_rss_mb']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
