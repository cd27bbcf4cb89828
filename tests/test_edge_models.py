"""Model directory verification (checksum, load, input shape, head, smoke inference) and the swap slot."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_fixtures import copy_model, mosquitto, tiny_models  # noqa: F401
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


def _nan_on_real_frames(model_dir: Path) -> None:
    """Rewrite the model so its output is NaN wherever the input has a pixel darker than the letterbox grey
    (every real frame) and unchanged on an all-grey input: finite on the old grey smoke test only."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from edge_runtime.letterbox import PAD_VALUE

    path = model_dir / "model.onnx"
    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    image, output = graph.input[0].name, graph.output[0].name
    for node in graph.node:  # the head now writes "raw"; the new nodes write the old output name
        node.output[:] = ["raw" if o == output else o for o in node.output]
    grey = np.array(np.float32(PAD_VALUE) / np.float32(255), dtype=np.float32)
    graph.initializer.extend([numpy_helper.from_array(grey, "grey"),
                              numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")])
    graph.node.extend([helper.make_node("Sub", [image, "grey"], ["centred"]),
                       helper.make_node("Sqrt", ["centred"], ["root"]),  # NaN below grey
                       helper.make_node("ReduceSum", ["root"], ["worst"], keepdims=0),
                       helper.make_node("Mul", ["worst", "zero"], ["poison"]),  # 0 * NaN = NaN, 0 * x = 0
                       helper.make_node("Add", ["raw", "poison"], [output])])
    data = graph_model.SerializeToString()
    path.write_bytes(data)
    _edit_card(model_dir, onnx_sha256=hashlib.sha256(data).hexdigest())


def test_a_model_nan_on_real_frames_is_refused_by_its_verification_frames(tiny_models, tmp_path: Path) -> None:
    """Issue 15.6: verification ran one grey frame; a model finite there and NaN on real frames passed."""
    model_dir = copy_model(tiny_models["a"], tmp_path / "m")
    _nan_on_real_frames(model_dir)
    with pytest.raises(ModelRejected, match=r"verification frame .*\.jpg returned NaN or infinite values"):
        load_verified_model(model_dir)
    card = json.loads((model_dir / "model_card.json").read_text())
    del card["verification_frames"]
    (model_dir / "model_card.json").write_text(json.dumps(card))
    load_verified_model(model_dir)  # without real frames the grey frame alone cannot tell (the old blind spot)


def test_verification_frames_that_do_not_match_the_card_are_refused(tiny_models, tmp_path: Path) -> None:
    model_dir = copy_model(tiny_models["a"], tmp_path / "m")
    (model_dir / "verification_frames.tar").write_bytes(b"not the shipped frames")
    with pytest.raises(ModelRejected, match="verification_frames.tar: sha256 does not match"):
        load_verified_model(model_dir)


def test_a_nan_model_served_anyway_publishes_error_records_never_nan(mosquitto, tiny_models,  # noqa: F811
                                                                    tmp_path: Path) -> None:
    """Results carried "best_score": NaN (not JSON). Now such a frame gets a strict-JSON error record."""
    from edge_fixtures import MqttCollector, sample_images
    from edge_runtime.config_sources import NoConfigSource
    from edge_runtime.publishers import MqttPublisher
    from edge_runtime.service import EdgeRuntime

    model_dir = copy_model(tiny_models["a"], tmp_path / "m")
    _nan_on_real_frames(model_dir)
    card = json.loads((model_dir / "model_card.json").read_text())
    del card["verification_frames"]  # as if verification had missed it
    (model_dir / "model_card.json").write_text(json.dumps(card))
    sample_images(tmp_path / "in", 3)
    collector = MqttCollector(mosquitto.port, ["tagqa/line-1/detections"])
    runtime = EdgeRuntime(config_source=NoConfigSource(), overrides={
        "deviceId": "line-1", "modelDir": str(model_dir), "source": f"folder:{tmp_path / 'in'}",
        "stateDir": str(tmp_path / "state"), "folderSettleSeconds": 0.0},
        publisher_factory=lambda c: MqttPublisher("127.0.0.1", mosquitto.port, "edge-nan"), max_frames=3)
    runtime.run()
    collector.wait_for("tagqa/line-1/detections", lambda m: len(m) >= 3)
    collector.close()

    def refuse(constant: str) -> None:
        raise AssertionError(f"payload holds {constant}")

    raw = collector.messages["tagqa/line-1/detections"]
    records = [json.loads(m, parse_constant=refuse) for m in raw]
    assert [r["reason"] for r in records] == ["non-finite"] * 3
    assert all(r["schema"] == "tagqa.frame_error/1" for r in records)
