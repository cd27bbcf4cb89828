"""Warm-started retraining against training from scratch, on the real metal tags.

A champion is trained from scratch on a dataset version that lacks ``--added`` labeled
images of the train/val pool (picked at random with ``--seed``); the next version adds
them. On that version the benchmark trains (a) from scratch, ``--epochs`` epochs, and
(b) from the champion's weights with the fine-tuning schedule of
``tagqa_assets/training/start_weights.py`` (``--warm-epochs`` epochs, AdamW lr 0.0002, no
warm-up epochs, mosaic off for the last 3). Each is exported to ONNX and evaluated by the
platform's evaluation on the fixed test split (the content-hash rule: the same 26 images
in every version).

    python benchmarks/warm_start.py [--imgsz 256] [--epochs 30] [--warm-epochs 8] [--added 30]

The default image size and epochs are smaller than the documented CPU configuration
(480, 55 epochs): three trainings must finish on a 2-core machine shared with other work.
Last line: ``RESULT warm_minutes=M scratch_minutes=M warm_map50_95=X scratch_map50_95=X``
(wall minutes of each training step; CPU minutes are printed above it).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tag_rounds import DATASET, REPO, Experiment, Oracle, train_and_evaluate, ultralytics_environment  # noqa: E402

sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=30, help="epochs of the champion and of the from-scratch run")
    parser.add_argument("--warm-epochs", type=int, default=8, help="epochs of the fine-tuning run")
    parser.add_argument("--added", type=int, default=30, help="labeled images the new version adds")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--state", type=Path, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    if not (DATASET / "labels.csv").is_file():
        print(f"real dataset not found at {DATASET}", file=sys.stderr)
        return 2
    state = (args.state or Path(tempfile.mkdtemp(prefix="tagqa-warm-start-"))).resolve()
    ultralytics_environment(state)
    from tagqa_assets.training.start_weights import FINE_TUNE_LR0, FINE_TUNE_OPTIMIZER, FINE_TUNE_OVERRIDES, fine_tune_params
    from tagqa_trainer.params import TrainingParams

    started = time.monotonic()
    oracle = Oracle()
    images = oracle.images()
    test = [image.sha256 for image in images if image.split == "test"]
    pool = [image.sha256 for image in images if image.split != "test"]
    added = set(random.Random(args.seed).sample(pool, args.added))
    experiment = Experiment(state / "experiment", oracle)
    old = experiment.add_labels(test + [sha for sha in pool if sha not in added])
    new = experiment.add_labels(sorted(added))
    scratch_params = TrainingParams(epochs=args.epochs, imgsz=args.imgsz, batch=args.batch, seed=args.seed, workers=2)
    warm_params = fine_tune_params(scratch_params, args.warm_epochs)
    print(f"versions: champion's {old} ({len(pool) - args.added} train/val + {len(test)} test images), "
          f"new {new} (+{args.added}); imgsz {args.imgsz}, batch {args.batch}")
    print(f"schedules: scratch {args.epochs} epochs (optimizer auto); warm {args.warm_epochs} epochs, "
          f"{FINE_TUNE_OPTIMIZER} lr0 {FINE_TUNE_LR0}, overrides {FINE_TUNE_OVERRIDES}")
    champion = train_and_evaluate(experiment, old, scratch_params, "champion")
    print(f"champion: {champion.wall_minutes:.1f} min wall, {champion.cpu_minutes:.1f} CPU min, test {champion.test}", flush=True)
    warm = train_and_evaluate(experiment, new, warm_params, "warm", start=champion.weights)
    print(f"warm:     {warm.wall_minutes:.1f} min wall, {warm.cpu_minutes:.1f} CPU min, test {warm.test}", flush=True)
    scratch = train_and_evaluate(experiment, new, scratch_params, "scratch")
    print(f"scratch:  {scratch.wall_minutes:.1f} min wall, {scratch.cpu_minutes:.1f} CPU min, test {scratch.test}", flush=True)
    gap = scratch.test["map50_95"] - warm.test["map50_95"]
    ratio = warm.cpu_minutes / scratch.cpu_minutes if scratch.cpu_minutes else float("nan")
    verdict = gap <= 0.01 and ratio < 1 / 3
    summary = {"champion": champion.test, "warm": warm.test, "scratch": scratch.test, "gap_map50_95": round(gap, 4),
               "cpu_ratio": round(ratio, 3), "warm_qualifies": verdict, "state": str(state),
               "total_minutes": round((time.monotonic() - started) / 60, 1)}
    print(json.dumps(summary))
    print(f"warm start {'qualifies' if verdict else 'does NOT qualify'}: mAP50-95 gap {gap:+.4f} (limit 0.01), "
          f"CPU time {ratio:.2f} of scratch (limit 0.33)")
    print(f"RESULT warm_minutes={warm.wall_minutes:.1f} scratch_minutes={scratch.wall_minutes:.1f} "
          f"warm_map50_95={warm.test['map50_95']:.4f} scratch_map50_95={scratch.test['map50_95']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
