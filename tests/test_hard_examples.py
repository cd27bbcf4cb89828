"""Hard examples: labeled edge feedback every challenger is compared on; a regression holds it back."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from pathlib import Path

import dagster as dg
import pytest

from deployment_fixtures import register_model
from edge_fixtures import tiny_models  # noqa: F401
from model_fixtures import build_version, materialization, materialize_chain, resources
from edge_runtime.imaging import decode_image
from tagqa_assets.contracts.keys import raw_key
from tagqa_assets.contracts.labels import Annotation, LabelRecord
from tagqa_assets.contracts.models import APPROVED, PENDING
from tagqa_assets.datasets.assets import hard_examples
from tagqa_assets.datasets.hard_examples import load_current
from tagqa_assets.ingestion.ingest import ingest_keys
from tagqa_assets.ingestion.synthetic import generate_tags
from tagqa_assets.labeling.label_store import LocalLabelStore
from tagqa_assets.labeling.resources import LabelStoreResource
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.registry.gates import PromotionPolicy, compare_on_hard_examples
from tagqa_assets.storage import LocalObjectStore, StoreResource
from tagqa_assets.training.detections import OnnxModel


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "acceptable"),
    [
        ({"map50": 0.70}, {"map50": 0.72}, 0.05, True),  # slightly worse, inside the margin
        ({"map50": 0.60}, {"map50": 0.72}, 0.05, False),  # worse by more than the margin
        ({"map50": 0.90}, {"map50": 0.72}, 0.0, True),  # better is always fine
        (None, {"map50": 0.72}, 0.05, True),  # no hard examples yet: nothing to regress on
        ({"map50": 0.10}, None, 0.05, True),  # no champion: nothing to regress against
    ],
)
def test_hard_example_rule(challenger, champion, margin, acceptable):
    ok, reason = compare_on_hard_examples(challenger, champion, 3, PromotionPolicy(hard_example_margin=margin))
    assert ok is acceptable
    assert ("regresses" in reason) is (not acceptable)


def _captured_images(store: LocalObjectStore, count: int) -> list[tuple[str, bytes]]:
    """Images as the edge uploads them: raw/edge-feedback/<device>/<date>/<time>-<id>.jpg, ingested."""
    images = []
    for tag in generate_tags(count, seed=77, prefix="captured"):
        now = datetime.now(timezone.utc)
        key = raw_key("edge-feedback/line-1", f"{now:%Y%m%dT%H%M%S%f}Z-{tag.name}", now)
        store.put_bytes(key, tag.jpeg)
        images.append((key, tag.jpeg))
    ingest_keys(store, [key for key, _ in images], run_id="captured")
    return images


@pytest.mark.slow
def test_a_challenger_that_misses_the_captured_images_is_held_back(tmp_path: Path, tiny_models, tmp_path_factory):
    store = LocalObjectStore(tmp_path / "store")
    registry = LocalModelRegistry(store)
    champion = register_model(store, registry, tiny_models["a"], "champion-aaaaaaaa", status=APPROVED)

    # The captured images were labeled with every box the champion found on them, so the
    # champion handles them by construction; the challenger, trained elsewhere, does not.
    # (Both tiny models are untrained: their boxes are the whole image, clipped, and what
    # separates them is how many of those boxes each finds. Matching as Ultralytics does, a
    # label set of just the champion's first two boxes is found by any model with two such boxes.)
    champion_model = OnnxModel(tiny_models["a"])
    records = []
    for key, jpeg in _captured_images(store, 6):
        found = champion_model.predict(decode_image(jpeg))
        boxes = tuple(
            Annotation(0, float(x1), float(y1), float(x2 - x1), float(y2 - y1))
            for x1, y1, x2, y2 in found.boxes
        )
        assert boxes, "the champion must find something to label"
        records.append(LabelRecord(source_ref=key, image_sha256=hashlib.sha256(jpeg).hexdigest(), image_width=450,
                                   image_height=300, annotations=boxes, event_time=1.0, labeling_job="operator-review"))
    LocalLabelStore(store).append(records)
    hard_resources = {"store": StoreResource(root=str(store.root)), "labels": LabelStoreResource()}
    result = dg.materialize([hard_examples], resources=hard_resources)
    assert materialization(result, "hard_examples")["images"] == 6
    assert load_current(store).images == 6

    version = build_version(store, 24, seed=13)
    instance = dg.DagsterInstance.ephemeral()
    # A lenient test-split rule (margin -1: any challenger "beats" the champion there), so only
    # the hard examples can hold this challenger back.
    chain = materialize_chain(instance, version, resources(store.root, tmp_path / "work", gate_threshold=0.0, champion_margin=-1.0))
    evaluation = materialization(chain, "model_evaluation")
    assert evaluation["hard_examples_images"] == 6
    assert "champion v1" in [record.data["model"] for record in evaluation["hard_examples_comparison"].records]
    document = store.get_json(evaluation["evaluation_key"])
    hard = document["hard_examples"]
    assert hard["champion_version"] == champion.version
    assert hard["champion"]["map50"] > hard["challenger"]["map50"] + 0.05

    registered = registry.find_model(materialization(chain, "trained_model")["model_id"])
    assert registered.status == PENDING
    assert "hard examples" in registered.status_reason and "regresses" in registered.status_reason
    assert registry.champion().version == champion.version
