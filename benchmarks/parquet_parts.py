"""Reading the label store after thousands of imports, before and after compaction.

Appends N label imports (default 5,000, one record each, as `tagqa labels import` would)
to a local label store with automatic compaction switched off, so N Parquet parts pile up
under `labels/records/`. Then measures, in the same run: `LocalLabelStore.records()` and
`snapshot()` over the N parts (median of R reads), one `compact()`, and the same reads
over the single compacted part. Writing the parts uses the writer itself (`ParquetParts`).

Last line: RESULT parts=N read_s=S compacted_read_s=S compact_s=S speedup=X
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tagqa_assets.contracts.labels import Annotation, LabelRecord  # noqa: E402
from tagqa_assets.labeling.label_store import LocalLabelStore, records_frame  # noqa: E402
from tagqa_assets.storage import LocalObjectStore  # noqa: E402


def _timed(function, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store = LocalObjectStore(Path(folder) / "store")
        labels = LocalLabelStore(store)
        labels.parts.compact_at = None  # let the parts pile up, as before compaction existed
        start = time.perf_counter()
        for n in range(args.parts):
            record = LabelRecord(f"raw/2024/01/01/tag-{n:06d}.jpg", 480, 320, (Annotation(0, 10.0 + n % 50, 20.0, 30.0, 8.0),), 1.7e9 + n, "bench", image_sha256=f"{n:064x}")
            labels.parts.write(records_frame([record], "2024-01-01T00:00:00+00:00"))
        print(f"wrote {args.parts} parts in {time.perf_counter() - start:.1f} s")
        assert len(labels.records()) == args.parts
        read_s = _timed(labels.records, args.rounds)
        snapshot_s = _timed(labels.snapshot, args.rounds)
        print(f"{args.parts} parts: records() {read_s:.3f} s, snapshot() {snapshot_s:.3f} s (median of {args.rounds})")
        start = time.perf_counter()
        done = labels.parts.compact()
        compact_s = time.perf_counter() - start
        assert done is not None and done.rows == args.parts and len(labels.parts.part_keys()) == 1
        compacted_s = _timed(labels.records, args.rounds)
        compacted_snapshot_s = _timed(labels.snapshot, args.rounds)
        print(f"compacted into 1 part in {compact_s:.2f} s: records() {compacted_s:.3f} s, snapshot() {compacted_snapshot_s:.3f} s")
        print(f"RESULT parts={args.parts} read_s={read_s:.3f} compacted_read_s={compacted_s:.3f} compact_s={compact_s:.2f} speedup={read_s / compacted_s:.0f}")


if __name__ == "__main__":
    main()
