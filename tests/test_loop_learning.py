"""The learning-curve benchmark (benchmarks/loop_learning.py): the oracle reads only what was captured,
and a tiny configuration runs end to end through the real edge runtime and trainer."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import loop_learning  # noqa: E402
from loop_learning import Point, choose_captured, oracle_audit  # noqa: E402
from tag_rounds import Oracle  # noqa: E402


def test_choose_captured_takes_only_captured_images_by_reason_within_budget():
    captured = {"a": "random-sample", "b": "uncertain", "c": "empty-sample", "d": "uncertain"}
    chosen = choose_captured(captured, 3, random.Random(0))
    # The budget is spent on uncertain frames first, then empty samples; random samples last.
    assert sorted(chosen[:2]) == ["b", "d"] and chosen[2] == "c"
    # A budget larger than what came back labels what came back, nothing else.
    assert sorted(choose_captured(captured, 10, random.Random(0))) == sorted(captured)
    assert choose_captured({}, 5, random.Random(0)) == []


def _point(arm: str, chosen: list[str], captured: list[str]) -> Point:
    return Point(arm, 0, 1, 0, 0.0, 0.0, 0.0, chosen=chosen, captured_images=captured)


def test_oracle_audit_refuses_labels_of_uncaptured_images():
    seed = {"s1", "s2"}
    ok = [_point("policy", ["c1"], ["c1", "c2"]), _point("random", ["r1"], [])]
    assert "2 seed + 2 chosen" in oracle_audit(seed | {"c1", "r1"}, seed, ok)
    # The policy arm labeled an image the runtime never captured.
    with pytest.raises(RuntimeError, match="did not capture"):
        oracle_audit(seed | {"x"}, seed, [_point("policy", ["x"], ["c1"])])
    # The oracle handed out a label nobody chose (an uncaptured image's label was read).
    with pytest.raises(RuntimeError, match="neither seed nor chosen"):
        oracle_audit(seed | {"c1", "leak"}, seed, ok[:1])


def test_oracle_hands_out_exactly_what_it_is_asked_for(real_dataset: Path):
    oracle = Oracle(real_dataset)
    images = oracle.images()
    assert len(images) == 235 and {image.split for image in images} == {"train", "val", "test"}
    assert oracle.handed_out == set()  # listing the images and their splits reads no label
    asked = [images[0].sha256, images[5].sha256]
    parsed = oracle.label(asked)
    assert len(parsed.rows) == 2 and oracle.handed_out == set(asked)
    with pytest.raises(KeyError):
        oracle.label(["0" * 64])


@pytest.mark.slow
def test_a_tiny_configuration_runs_end_to_end(real_dataset: Path, tmp_path: Path):
    """Seed model, one policy round through tagqa-edge (real Mosquitto), one random round, the ceiling."""
    # The default policy samples 5 % of empty frames; a weak tiny model on a 24-image line may capture
    # none, so this device configuration samples more (the band and the rules stay the runtime's).
    device_config = tmp_path / "device.json"
    device_config.write_text(json.dumps({"emptySampleRate": 0.5, "randomSampleRate": 0.2}))
    assert loop_learning.main(["--quick", "--state", str(tmp_path / "run"), "--device-config", str(device_config)]) == 0
    tmp_path = tmp_path / "run"
    summary = json.loads((tmp_path / "loop_learning.json").read_text())
    policy = [p for p in summary["points"] if p["arm"] == "policy" and p["round"] > 0]
    random_arm = [p for p in summary["points"] if p["arm"] == "random" and p["round"] > 0]
    assert random_arm and len(random_arm[0]["chosen"]) == loop_learning.QUICK["budget"]
    assert policy
    for point in policy:  # the runtime saw the whole line; labels went only to what it captured
        assert point["line"] > 0 and set(point["chosen"]) <= set(point["captured_images"])
    assert summary["ceilings"] and (tmp_path / "loop_learning.png").is_file()
