"""The model component ships verification frames (a few of the dataset version's validation images) that the
edge runtime runs the model on before serving it."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from deployment_fixtures import register_model
from edge_fixtures import tiny_models  # noqa: F401
from edge_runtime.contracts import VERIFICATION_FRAMES_FILE
from edge_runtime.models import load_verified_model
from model_fixtures import build_version
from tagqa_assets.contracts.edge import component_key
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.deployment.components import VERIFICATION_FRAME_COUNT, build_model_component
from tagqa_assets.model_catalog.registry import LocalModelRegistry
from tagqa_assets.storage import LocalObjectStore

MODEL = "com.tagqa.ScratchModel"


def test_model_component_ships_validation_images_the_device_verifies_on(tiny_models, tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path / "store")
    version = build_version(store, 12, seed=3)
    (tmp_path / "bare").mkdir()
    for name in ("model.onnx", "model_card.json"):  # a model without frames of its own: they come from the dataset
        (tmp_path / "bare" / name).write_bytes((tiny_models["a"] / name).read_bytes())
    card = json.loads((tmp_path / "bare/model_card.json").read_text())
    del card["verification_frames"]
    (tmp_path / "bare/model_card.json").write_text(json.dumps(card))
    entry = register_model(store, LocalModelRegistry(store), tmp_path / "bare", f"{version}-0000aaaa",
                           card={"dataset_version": version})
    built = build_model_component(store, entry, name=MODEL, author="tagqa")
    assert set(built.artifacts) == {"model.onnx", "model_card.json", VERIFICATION_FRAMES_FILE}
    manifest = DatasetVersionStore(store).manifest(version)
    val_keys = sorted(manifest.loc[manifest["split"] == "val", "image_key"])[:VERIFICATION_FRAME_COUNT]
    frames = store.get_bytes(component_key(MODEL, built.ref.version, VERIFICATION_FRAMES_FILE))
    with tarfile.open(fileobj=io.BytesIO(frames)) as archive:
        shipped = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}
    assert list(shipped.values()) == [store.get_bytes(k) for k in val_keys], "the first val images, in key order"
    device = tmp_path / "device-artifacts"  # Greengrass puts a component's artifacts side by side
    device.mkdir()
    for name, (key, _) in built.artifacts.items():
        (device / name).write_bytes(store.get_bytes(key))
    model = load_verified_model(device)
    assert model.card.extra["verification_frames"]["frames"] == sorted(shipped)
    assert build_model_component(store, entry, name=MODEL, author="tagqa").reused, "deterministic: a rebuild reuses"
