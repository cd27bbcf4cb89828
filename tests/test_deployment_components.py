"""Component builds: versions from the registry, the model card completed, artifacts verified before
anything is stored, recipes last, immutable versions, the real wheel bundle in the inference component."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import pytest
import yaml

from deployment_fixtures import register_model, wheel_bundle  # noqa: F401
from edge_fixtures import tiny_models  # noqa: F401
from tagqa_assets.contracts.edge import EDGE_COMPONENTS_PREFIX, ComponentRef, component_key
from tagqa_assets.contracts.models import PENDING
from tagqa_assets.deployment.components import (
    ComponentBuildError,
    build_inference_component,
    build_model_component,
    load_component,
)
from tagqa_assets.deployment.recipes import artifact_digests
from tagqa_assets.deployment.resources import INFERENCE_TEMPLATE
from tagqa_assets.deployment.wheels import edge_requirements, runtime_is_current
from tagqa_assets.model_catalog.registry import LocalModelRegistry

MODEL = "com.tagqa.ScratchModel"
INFERENCE = "com.tagqa.EdgeInference"


def test_model_component_carries_the_registry_version_and_verified_digests(any_store, tiny_models) -> None:
    registry = LocalModelRegistry(any_store)
    first = register_model(any_store, registry, tiny_models["a"], "ds1-aaaaaaaa")
    second = register_model(any_store, registry, tiny_models["b"], "ds2-bbbbbbbb")
    built = build_model_component(any_store, second, name=MODEL, author="tagqa")
    assert built.ref == ComponentRef(MODEL, "2.0.0") and not built.reused
    card = json.loads(any_store.get_bytes(component_key(MODEL, "2.0.0", "model_card.json")))
    source_card = json.loads((tiny_models["b"] / "model_card.json").read_text())
    assert card["model_version"] == "2" and card["model_id"] == "ds2-bbbbbbbb"
    assert card["onnx_sha256"] == source_card["onnx_sha256"] == built.artifacts["model.onnx"][1]
    recipe = yaml.safe_load(any_store.get_bytes(component_key(MODEL, "2.0.0", "recipe.yaml")))
    assert recipe["ComponentVersion"] == "2.0.0"
    assert set(artifact_digests(recipe).values()) == {sha for _, sha in built.artifacts.values()}
    assert build_model_component(any_store, first, name=MODEL, author="tagqa").ref.version == "1.0.0"
    again = build_model_component(any_store, second, name=MODEL, author="tagqa")
    assert again.reused and again.artifacts == built.artifacts
    assert load_component(any_store, built.ref).recipe == recipe


def test_a_model_whose_digest_does_not_match_is_refused_and_nothing_is_stored(local_store, tiny_models) -> None:
    registry = LocalModelRegistry(local_store)
    corrupt = register_model(local_store, registry, tiny_models["a"], "ds1-corrupt0",
                             onnx=(tiny_models["b"] / "model.onnx").read_bytes())
    with pytest.raises(ComponentBuildError, match=r"model.onnx has sha256 .* but its model card says"):
        build_model_component(local_store, corrupt, name=MODEL, author="tagqa")
    assert list(local_store.list_objects(EDGE_COMPONENTS_PREFIX)) == []


def test_only_approved_versions_are_built(local_store, tiny_models) -> None:
    pending = register_model(local_store, LocalModelRegistry(local_store), tiny_models["a"], "ds1-pending0",
                             status=PENDING)
    with pytest.raises(ComponentBuildError, match="only Approved versions"):
        build_model_component(local_store, pending, name=MODEL, author="tagqa")


def test_a_changed_rebuild_of_an_existing_version_is_refused(local_store, tiny_models) -> None:
    registry = LocalModelRegistry(local_store)
    entry = register_model(local_store, registry, tiny_models["a"], "ds1-aaaaaaaa")
    build_model_component(local_store, entry, name=MODEL, author="tagqa")
    # The model directory changes under the same registry version (a rewritten card).
    register_model(local_store, LocalModelRegistry(local_store), tiny_models["a"], "ds1-aaaaaaaa",
                   card={"dataset_version": "ds-other"})
    with pytest.raises(ComponentBuildError, match="immutable"):
        build_model_component(local_store, entry, name=MODEL, author="tagqa")


def test_inference_component_bundles_every_wheel_and_reuses_unchanged_builds(local_store, wheel_bundle,
                                                                             tmp_path: Path) -> None:
    built = build_inference_component(local_store, wheel_bundle, name=INFERENCE, author="tagqa",
                                      template=INFERENCE_TEMPLATE)
    assert built.ref == ComponentRef(INFERENCE, "0.1.0") and not built.reused
    archive = zipfile.ZipFile(io.BytesIO(local_store.get_bytes(component_key(INFERENCE, "0.1.0", "greengrass.zip"))))
    packed = {Path(n).name.split("-")[0].lower().replace("_", "-") for n in archive.namelist()}
    assert all(n.startswith("wheels/") and n.endswith(".whl") for n in archive.namelist())
    assert {"tagqa", *edge_requirements()} <= packed, "every wheel the offline Install step needs"
    assert build_inference_component(local_store, wheel_bundle, name=INFERENCE, author="tagqa",
                                     template=INFERENCE_TEMPLATE).reused
    changed = tmp_path / "recipe.yaml"
    changed.write_text(INFERENCE_TEMPLATE.read_text() + "# changed\n")
    assert build_inference_component(local_store, wheel_bundle, name=INFERENCE, author="tagqa",
                                     template=changed).ref.version == "0.1.1"


def test_a_bundle_with_other_runtime_code_is_stale(wheel_bundle, tmp_path: Path) -> None:
    wheel = next(w for w in wheel_bundle.wheels if w.name.startswith("tagqa-"))
    assert runtime_is_current(wheel)
    stale = tmp_path / wheel.name
    shutil.copyfile(wheel, stale)
    with zipfile.ZipFile(stale, "a") as archive:
        archive.writestr("edge_runtime/extra.py", "print('not in this checkout')\n")
    assert not runtime_is_current(stale)
