"""Model directory verification (checksum, load, input shape, head, smoke inference) and the swap slot."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_fixtures import copy_model, tiny_models  # noqa: F401
from edge_runtime.models import ModelRejected, ModelSlot, load_verified_model, model_dir_signature


def _edit_card(model_dir: Path, **changes) -> None:
    path = model_dir / "model_card.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_good_model_loads_with_its_card(tiny_models, tmp_path: Path) -> None:
    model = load_verified_model(copy_model(tiny_models["a"], tmp_path / "m"))
    assert (model.input_height, model.input_width) == (128, 128)
    assert model.card.model_version == "1" and model.card.class_names == ("scratch",)
    assert model.label == f"{model.card.model_id}@1"


def test_checksum_mismatch_is_refused(tiny_models, tmp_path: Path) -> None:
    model_dir = copy_model(tiny_models["a"], tmp_path / "m")
    data = bytearray((model_dir / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte, e.g. a bad flash sector
    (model_dir / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelRejected, match="sha256 .* does not match"):
        load_verified_model(model_dir)


def test_a_corrupt_onnx_with_a_matching_checksum_is_refused(tiny_models, tmp_path: Path) -> None:
    """A truncated upload whose card was (wrongly) computed from the truncated bytes: ORT must refuse it."""
    model_dir = copy_model(tiny_models["a"], tmp_path / "m")
    truncated = (model_dir / "model.onnx").read_bytes()[:50_000]
    (model_dir / "model.onnx").write_bytes(truncated)
    _edit_card(model_dir, onnx_sha256=hashlib.sha256(truncated).hexdigest())
    with pytest.raises(ModelRejected, match="ONNX Runtime cannot load it"):
        load_verified_model(model_dir)


@pytest.mark.parametrize("changes, message", [
    ({"imgsz": 160}, "input is 128x128 but the model card says imgsz 160"),  # card and graph disagree
    ({"class_names": ["scratch", "dent"]}, "4 box rows \\+ 2 classes"),  # card lists classes the head lacks
    ({"schema": "something/else"}, "schema"),  # not a model card
])
def test_card_and_graph_must_agree(tiny_models, tmp_path: Path, changes: dict, message: str) -> None:
    model_dir = copy_model(tiny_models["a"], tmp_path / "m")
    _edit_card(model_dir, **changes)
    with pytest.raises(ModelRejected, match=message):
        load_verified_model(model_dir)


def test_missing_files_are_named(tmp_path: Path, tiny_models) -> None:
    with pytest.raises(ModelRejected, match="model card not found"):
        load_verified_model(tmp_path / "nowhere")
    model_dir = copy_model(tiny_models["a"], tmp_path / "m")
    (model_dir / "model.onnx").unlink()
    with pytest.raises(ModelRejected, match="model.onnx: cannot read"):
        load_verified_model(model_dir)


def test_signature_changes_when_the_card_is_rewritten(tiny_models, tmp_path: Path) -> None:
    model_dir = copy_model(tiny_models["a"], tmp_path / "m")
    before = model_dir_signature(model_dir)
    tmp = model_dir / "model_card.json.tmp"
    tmp.write_text((model_dir / "model_card.json").read_text())
    tmp.replace(model_dir / "model_card.json")  # atomic rewrite: new inode
    assert model_dir_signature(model_dir) != before


def test_slot_swap_returns_the_previous_model(tiny_models) -> None:
    a, b = load_verified_model(tiny_models["a"]), load_verified_model(tiny_models["b"])
    slot = ModelSlot(a)
    assert slot.swap(b) is a and slot.current is b


def test_verify_model_command(tiny_models, tmp_path: Path) -> None:
    ok = subprocess.run([sys.executable, "-m", "edge_runtime", "verify-model", str(tiny_models["b"])],
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["input"] == [1, 3, 160, 160]
    broken = copy_model(tiny_models["a"], tmp_path / "m")
    _edit_card(broken, onnx_sha256="0" * 64)
    refused = subprocess.run([sys.executable, "-m", "edge_runtime", "verify-model", str(broken)],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 3 and "does not match" in json.loads(refused.stdout)["error"]
