"""The learning curve of the closed loop on the real metal tags: the edge runtime's capture policy vs random.

Setup (per seed): the fixed test split is the content-hash rule's (``split_for``: 26 images,
the same in every version); a seed of ``--seed-size`` labeled images is drawn from the
train/val images; the rest of them is the line. A model trained from scratch on the seed
starts both arms. Each round of an arm:

- policy: the line's images not labeled yet flow through the real edge runtime
  (``tagqa-edge run`` with the current model, a folder source, results over a real
  Mosquitto, captures uploaded to a local store); the runtime's capture policy
  (``edge_runtime/capture.py``: uncertainty band, empty sample, random sample, as the
  device configuration sets them; the defaults unless ``--device-config``) decides what
  comes back. At most ``--budget`` of the captured images are labeled (uncertain first,
  then empty samples, then random samples; random order within a reason).
- random: ``--budget`` images drawn at random from the line's unlabeled images.

The oracle (``tag_rounds.Oracle``) reads the real labels of exactly those images; the
labels are imported into the label store, a dataset version is cut, the model is
retrained the way automatic retraining does (``TAGQA_RETRAIN_WARM_START``: fine-tune from
the current model, else from scratch), exported and evaluated on the fixed test split.
The ceiling is a model trained from scratch on every label at once. ``--seeds`` seeds;
the table gives mean and spread (min..max).

    python benchmarks/loop_learning.py [--seeds 2] [--rounds 4] [--budget 30] [--imgsz 256] [--quick]

Last line: ``RESULT labels_to_95pct_ceiling_policy=N labels_to_95pct_ceiling_random=N
ceiling_map50_95=X minutes=M`` (N: mean over seeds of the labels spent, seed included, when
the arm's model first reaches 95 % of that seed's ceiling; ``none`` if a seed never does).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tag_rounds import DATASET, REPO, Experiment, Oracle, TagImage, Trained, train_and_evaluate, ultralytics_environment  # noqa: E402

sys.path[:0] = [str(REPO), str(REPO / "tests")]
from edge_runtime.capture import FIXED_BAND  # noqa: E402

REASON_ORDER = ("operator-feedback", "uncertain", "empty-sample", "random-sample")
QUICK = {"seeds": 1, "rounds": 1, "budget": 6, "seed_size": 8, "line_size": 24, "imgsz": 64, "seed_epochs": 1,
         "warm_epochs": 1}


@dataclass
class LineRun:
    """What one pass of the line through the edge runtime gave back."""

    frames: int
    captured: dict[str, str]  # sha256 -> capture reason (every captured image, uploaded by the runtime)
    best_scores: list[float]
    seconds: float


@dataclass
class Point:
    """One evaluated model on an arm's curve."""

    arm: str
    seed: int
    round: int
    labels: int
    map50: float
    map50_95: float
    train_minutes: float
    captured: dict[str, int] = field(default_factory=dict)
    line: int = 0
    best_score_quartiles: list[float] = field(default_factory=list)
    chosen: list[str] = field(default_factory=list)  # sha256 of the images labeled this round
    captured_images: list[str] = field(default_factory=list)  # policy: every image the runtime captured
    in_fixed_band: int = -1  # policy: line frames whose best score fell in the old fixed band [0.25, 0.6)


def run_line(model_dir: Path, images: list[TagImage], work: Path, broker: str, *, seed: int,
             device_config: Path | None, timeout: float = 600.0) -> LineRun:
    """Send ``images`` through ``tagqa-edge run`` and return every result's score and the uploaded captures.

    Waits for one result per image on MQTT, then for the runtime to upload every capture it
    announced, then stops it (SIGTERM, a clean shutdown). Raises ``RuntimeError`` naming the
    log when the runtime exits early or does not finish within ``timeout`` seconds.
    """
    from edge_fixtures import MqttCollector
    from polling import wait_until

    shutil.rmtree(work, ignore_errors=True)
    line, upload = work / "line", work / "upload"
    line.mkdir(parents=True)
    for image in images:
        shutil.copyfile(image.path, line / image.path.name)
    device = f"bench-{work.name}"
    topic = f"tagqa/{device}/detections"
    collector = MqttCollector(int(broker.rpartition(":")[2]), [topic])
    edge = shutil.which("tagqa-edge")
    command = ([edge] if edge else [sys.executable, "-m", "edge_runtime"]) + [
        "run", "--model", str(model_dir), "--source", f"folder:{line}", "--broker", broker, "--device-id", device,
        "--store", str(upload), "--state-dir", str(work / "state"), "--seed", str(seed), "--health-interval", "3600"]
    if device_config:
        command += ["--config", str(device_config)]
    log_path = work / "edge.log"
    started = time.monotonic()
    process = subprocess.Popen(command, stdout=open(log_path, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = started + timeout

        def wait(predicate, what: str) -> None:
            def done() -> bool:
                if predicate():
                    return True
                if process.poll() is not None:
                    raise RuntimeError(f"tagqa-edge exited ({process.returncode}) before {what}; log {log_path}")
                return False
            wait_until(done, f"tagqa-edge to finish {what} ({timeout:.0f} s for the whole run)", deadline - time.monotonic(),
                       poll=0.2, error=RuntimeError, diagnose=lambda: f"log {log_path}")

        wait(lambda: len(collector.json(topic)) >= len(images), f"{len(images)} results")
        results = collector.json(topic)
        announced = sum(1 for r in results if r.get("captured"))
        sidecars = lambda: sorted((upload / "feedback").rglob("*.json")) if (upload / "feedback").is_dir() else []  # noqa: E731
        wait(lambda: len(sidecars()) >= announced, f"uploading {announced} captures")
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        collector.client.stop()
    errors = [r for r in results if "best_score" not in r]
    if errors:
        raise RuntimeError(f"{len(errors)} frame(s) had no result, e.g. {errors[0]}; log {log_path}")
    captured = {}
    for path in sidecars():
        sidecar = json.loads(path.read_text())
        captured[sidecar["image_sha256"]] = sidecar["reason"]
    return LineRun(len(results), captured, [float(r["best_score"]) for r in results], time.monotonic() - started)


def choose_captured(captured: dict[str, str], budget: int, rng: random.Random) -> list[str]:
    """At most ``budget`` captured images: by reason (``REASON_ORDER``), random order within a reason."""
    ranked = sorted(captured, key=lambda sha: (REASON_ORDER.index(captured[sha]) if captured[sha] in REASON_ORDER
                                               else len(REASON_ORDER), rng.random()))
    return ranked[:budget]


def oracle_audit(read: set[str], seed_labels: set[str], points: list[Point]) -> str:
    """A line saying the arms' oracle read the labels of exactly the seed and chosen images, and that
    every image the policy arm labeled was captured by the runtime; ``RuntimeError`` otherwise."""
    chosen = {sha for point in points for sha in point.chosen}
    uncaptured = {sha for point in points if point.arm == "policy" for sha in set(point.chosen) - set(point.captured_images)}
    if uncaptured:
        raise RuntimeError(f"the policy arm labeled {len(uncaptured)} image(s) the runtime did not capture")
    if read != seed_labels | chosen:
        raise RuntimeError(f"the oracle read {len(read - seed_labels - chosen)} label(s) of images neither seed nor "
                           f"chosen; {len(seed_labels | chosen - read)} chosen image(s) were never read")
    return (f"oracle: read the labels of {len(read)} train/val images = {len(seed_labels)} seed + {len(chosen)} chosen "
            f"(policy arm: every one captured by the runtime)")


def quartiles(values: list[float]) -> list[float]:
    if len(values) < 2:
        return [round(v, 3) for v in values]
    return [round(v, 3) for v in statistics.quantiles(values, n=4)]


class Arm:
    """One arm of one seed: its experiment (store, versions), current model and curve."""

    def __init__(self, name: str, seed: int, root: Path, oracle: Oracle, start_labels: list[str], model: Trained,
                 test: list[str]) -> None:
        self.name, self.seed = name, seed
        self.experiment = Experiment(root / f"{name}-s{seed}", oracle)
        self.experiment.add_labels(test + start_labels)
        self.model = model
        self.points = [Point(name, seed, 0, len(start_labels), model.test["map50"], model.test["map50_95"],
                             round(model.wall_minutes, 2))]


def retrain(arm: Arm, version: str, scratch_params, warm_params, warm: bool, name: str) -> Trained:
    if warm:
        return train_and_evaluate(arm.experiment, version, warm_params, name, start=arm.model.weights)
    return train_and_evaluate(arm.experiment, version, scratch_params, name)


def labels_to_reach(points: list[Point], target: float) -> int | None:
    """Labels spent when the curve first reaches ``target`` mAP50-95, or ``None``."""
    for point in sorted(points, key=lambda p: p.round):
        if point.map50_95 >= target:
            return point.labels
    return None


def summarize(points: list[Point], ceilings: dict[int, float]) -> tuple[list[dict], dict[str, float | None]]:
    """Table rows (arm, round: mean/min/max labels and mAP over seeds) and labels-to-95 % per arm."""
    rows = []
    for arm in ("policy", "random"):
        rounds = sorted({p.round for p in points if p.arm == arm})
        for number in rounds:
            at = [p for p in points if p.arm == arm and p.round == number]
            maps = [p.map50_95 for p in at]
            labels = [p.labels for p in at]
            rows.append({"arm": arm, "round": number, "seeds": len(at), "labels_mean": round(statistics.mean(labels), 1),
                         "labels_range": f"{min(labels)}..{max(labels)}", "map50_95_mean": round(statistics.mean(maps), 4),
                         "map50_95_range": f"{min(maps):.3f}..{max(maps):.3f}",
                         "map50_mean": round(statistics.mean(p.map50 for p in at), 4),
                         "captured": "; ".join(json.dumps(p.captured, sort_keys=True) for p in at if p.captured)})
    reach: dict[str, float | None] = {}
    for arm in ("policy", "random"):
        per_seed = [labels_to_reach([p for p in points if p.arm == arm and p.seed == seed], 0.95 * ceiling)
                    for seed, ceiling in ceilings.items()]
        reach[arm] = None if any(v is None for v in per_seed) or not per_seed else statistics.mean(per_seed)
    return rows, reach


def plot(points: list[Point], ceilings: dict[int, float], target: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.2))
    for arm, colour in (("policy", "tab:blue"), ("random", "tab:orange")):
        for seed in sorted({p.seed for p in points if p.arm == arm}):
            curve = sorted((p for p in points if p.arm == arm and p.seed == seed), key=lambda p: p.round)
            axes.plot([p.labels for p in curve], [p.map50_95 for p in curve], "o-", color=colour, alpha=0.8,
                      label=f"{arm} (capture policy)" if arm == "policy" and seed == min(ceilings) else
                      ("random" if seed == min(ceilings) else None))
    mean_ceiling = statistics.mean(ceilings.values())
    axes.axhline(mean_ceiling, color="tab:green", linestyle="--", label=f"ceiling (all labels) {mean_ceiling:.3f}")
    axes.axhline(0.95 * mean_ceiling, color="tab:green", linestyle=":", label="95 % of ceiling")
    axes.set_xlabel("labels spent (train/val images, seed included)")
    axes.set_ylabel("test mAP50-95 (platform evaluation)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=4, help="labeling rounds per arm after the seed")
    parser.add_argument("--budget", type=int, default=30, help="labels per round")
    parser.add_argument("--seed-size", type=int, default=40)
    parser.add_argument("--line-size", type=int, default=0, help="limit the line to this many images (0: all)")
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--seed-epochs", type=int, default=40, help="epochs of from-scratch runs (seed model, ceiling)")
    parser.add_argument("--warm-epochs", type=int, default=10, help="epochs of a fine-tuning round")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--nbs", type=int, default=8,
                        help="Ultralytics' nominal batch (0: its default 64). With 64 it accumulates gradients over 64 "
                             "images, so a 40-image seed gets less than one optimizer step per epoch and learns "
                             "nothing (measured: test mAP50-95 0.000 after 30 epochs); 8 is the demo profile's "
                             "small-dataset schedule (docs/training.md)")
    parser.add_argument("--retrain", choices=["setting", "warm", "scratch"], default="setting",
                        help="setting: as TAGQA_RETRAIN_WARM_START says (automatic retraining's default)")
    parser.add_argument("--device-config", type=Path, help="device configuration JSON for the runtime (capture policy)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling runs (partial measurements)")
    parser.add_argument("--plot", type=Path, help="write the plot here (default: STATE/loop_learning.png)")
    parser.add_argument("--quick", action="store_true", help=f"a tiny end-to-end check: {QUICK}")
    parser.add_argument("--state", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--reevaluate", action="store_true",
                        help="evaluate the models a finished run kept in --state again (the evaluation code now checked "
                             "out) and redo its table, plot and RESULT; nothing is trained")
    args = parser.parse_args(argv)
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    if not (DATASET / "labels.csv").is_file():
        print(f"real dataset not found at {DATASET}", file=sys.stderr)
        return 2
    state = (args.state or Path(tempfile.mkdtemp(prefix="tagqa-loop-learning-"))).resolve()
    state.mkdir(parents=True, exist_ok=True)
    ultralytics_environment(state)
    outcome = reevaluated(state, args.plot) if args.reevaluate else run(args, state)
    print(f"RESULT labels_to_95pct_ceiling_policy={_n(outcome['reach']['policy'])} "
          f"labels_to_95pct_ceiling_random={_n(outcome['reach']['random'])} "
          f"ceiling_map50_95={outcome['ceiling']:.4f} minutes={outcome['minutes']:.1f}")
    return 0


def _n(value: float | None) -> str:
    return "none" if value is None else f"{value:.0f}"


def run(args: argparse.Namespace, state: Path) -> dict:
    """The whole benchmark; returns the summary it also writes to ``state/loop_learning.json``."""
    from edge_fixtures import Mosquitto
    from tagqa_assets.settings import load_settings
    from tagqa_assets.training.start_weights import fine_tune_params
    from tagqa_trainer.params import TrainingParams

    started = time.monotonic()
    warm = {"warm": True, "scratch": False}.get(args.retrain, load_settings().retrain_warm_start == "champion")
    oracle = Oracle()
    images = oracle.images()
    by_sha = {image.sha256: image for image in images}
    test = [image.sha256 for image in images if image.split == "test"]
    broker = Mosquitto(state / "mosquitto")
    broker.start()
    points: list[Point] = []
    ceilings: dict[int, float] = {}
    seeds_used: set[str] = set()
    try:
        for seed in range(args.seeds):
            rng = random.Random(seed)
            pool = [image.sha256 for image in images if image.split != "test"]
            rng.shuffle(pool)
            if args.line_size:
                pool = pool[: args.seed_size + args.line_size]
            seed_labels = sorted(pool[: args.seed_size])
            scratch_params = TrainingParams(epochs=args.seed_epochs, imgsz=args.imgsz, batch=args.batch, seed=seed,
                                            workers=2, overrides={"nbs": args.nbs} if args.nbs else {})
            warm_params = fine_tune_params(scratch_params, args.warm_epochs)
            experiment = Experiment(state / f"seedmodel-s{seed}", oracle)
            seed_model = train_and_evaluate(experiment, experiment.add_labels(test + seed_labels), scratch_params,
                                            f"seed-s{seed}")
            print(f"seed {seed}: seed model on {len(seed_labels)} labels: test {seed_model.test} "
                  f"({seed_model.wall_minutes:.1f} min)", flush=True)
            seeds_used.update(seed_labels)
            arms = [Arm(name, seed, state, oracle, seed_labels, seed_model, test) for name in ("policy", "random")]
            for arm in arms:
                arm_rng = random.Random(f"{seed}:{arm.name}")
                for number in range(1, args.rounds + 1):
                    line = [sha for sha in pool if sha not in arm.experiment.labeled]
                    if not line:
                        break
                    point_extra = {}
                    if arm.name == "policy":
                        passed = run_line(arm.model.model_dir, [by_sha[sha] for sha in line],
                                          state / f"line-{arm.name}-s{seed}-r{number}", broker.address,
                                          seed=seed * 1000 + number, device_config=args.device_config)
                        chosen = choose_captured(passed.captured, args.budget, arm_rng)
                        reasons: dict[str, int] = {}
                        for sha in passed.captured:
                            reasons[passed.captured[sha]] = reasons.get(passed.captured[sha], 0) + 1
                        point_extra = {"captured": reasons, "line": passed.frames,
                                       "best_score_quartiles": quartiles(passed.best_scores),
                                       "in_fixed_band": sum(FIXED_BAND[0] <= v < FIXED_BAND[1]
                                                            for v in passed.best_scores),
                                       "captured_images": sorted(passed.captured)}
                        stray = set(passed.captured) - set(line)
                        if stray:
                            raise RuntimeError(f"the runtime captured {len(stray)} image(s) that were not on the line")
                    else:
                        chosen = arm_rng.sample(line, min(args.budget, len(line)))
                    if not chosen:
                        print(f"seed {seed} {arm.name} round {number}: nothing captured on a line of {len(line)}; "
                              f"{point_extra}", flush=True)
                        break
                    version = arm.experiment.add_labels(test + sorted(chosen))
                    arm.model = retrain(arm, version, scratch_params, warm_params, warm, f"{arm.name}-s{seed}-r{number}")
                    labels = len(arm.experiment.labeled) - len(test)
                    arm.points.append(Point(arm.name, seed, number, labels, arm.model.test["map50"],
                                            arm.model.test["map50_95"], round(arm.model.wall_minutes, 2),
                                            chosen=sorted(chosen), **point_extra))
                    shown = {k: v for k, v in point_extra.items() if k != "captured_images"}
                    print(f"seed {seed} {arm.name} round {number}: {labels} labels, test {arm.model.test}, "
                          f"{arm.model.wall_minutes:.1f} min; {shown}", flush=True)
                points += arm.points
            if not args.no_ceiling:
                # Its own oracle: the ceiling reads every label; the arms' oracle stays a record of what they read.
                everything = Experiment(state / f"ceiling-s{seed}", Oracle())
                ceiling = train_and_evaluate(everything, everything.add_labels(test + sorted(pool)), scratch_params,
                                             f"ceiling-s{seed}")
                ceilings[seed] = ceiling.test["map50_95"]
                print(f"seed {seed} ceiling on {len(pool)} labels: test {ceiling.test} ({ceiling.wall_minutes:.1f} min)",
                      flush=True)
            _write(state, args, points, ceilings, warm, started)
    finally:
        broker.stop()
    summary = _write(state, args, points, ceilings, warm, started)
    print(oracle_audit(oracle.handed_out - set(test), seeds_used, points))
    if ceilings:
        plot(points, ceilings, args.plot or state / "loop_learning.png",
             f"real tags, imgsz {args.imgsz}, budget {args.budget}/round, seed {args.seed_size}, "
             f"{'warm' if warm else 'scratch'} retraining, {args.seeds} seed(s)")
    return summary


def reevaluated(state: Path, plot_to: Path | None) -> dict:
    """The summary of the run kept in ``state`` with every model evaluated again (timings as measured)."""
    from tag_rounds import reevaluate

    summary = json.loads((state / "loop_learning.json").read_text())
    metrics = reevaluate(state)
    points = []
    for data in summary["points"]:
        point = Point(**data)
        name = f"seed-s{point.seed}" if point.round == 0 else f"{point.arm}-s{point.seed}-r{point.round}"
        point.map50, point.map50_95 = metrics[name]["map50"], metrics[name]["map50_95"]
        points.append(point)
    ceilings = {int(seed): metrics[f"ceiling-s{seed}"]["map50_95"] for seed in summary["ceilings"]}
    rows, reach = summarize(points, ceilings)
    for row in rows:
        print("| " + " | ".join(str(value) for value in row.values()) + " |")
    config = summary["config"]
    if ceilings:
        plot(points, ceilings, plot_to or state / "loop_learning.png",
             f"real tags, imgsz {config['imgsz']}, budget {config['budget']}/round, seed {config['seed_size']}, "
             f"{summary['retraining']} retraining, {len(ceilings)} seed(s)")
    updated = {**summary, "points": [asdict(p) for p in points], "ceilings": ceilings, "rows": rows, "reach": reach,
               "ceiling": statistics.mean(ceilings.values()) if ceilings else float("nan"), "reevaluated": True}
    (state / "loop_learning.reevaluated.json").write_text(json.dumps(updated, indent=1))
    return updated


def _write(state: Path, args: argparse.Namespace, points: list[Point], ceilings: dict[int, float], warm: bool,
           started: float) -> dict:
    rows, reach = summarize(points, ceilings)
    summary = {"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
               "retraining": "warm" if warm else "scratch", "points": [asdict(p) for p in points],
               "ceilings": ceilings, "rows": rows, "reach": reach,
               "ceiling": statistics.mean(ceilings.values()) if ceilings else float("nan"),
               "minutes": (time.monotonic() - started) / 60}
    (state / "loop_learning.json").write_text(json.dumps(summary, indent=1))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in ("arm", "round", "seeds", "labels_mean", "labels_range",
                                                      "map50_95_mean", "map50_95_range", "map50_mean", "captured")) + " |")
    return summary


if __name__ == "__main__":
    sys.exit(main())
