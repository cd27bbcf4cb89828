"""What the Greengrass component installs follows the provider list: ``installExtras`` in the recipe.

The recipe's Install step runs ``pip install --no-index ... "tagqa[{configuration:/installExtras}]"``;
Greengrass interpolates the component's configuration there (and runs Install again when a
deployment changes it). tagqa's deployment sets ``installExtras`` to ``edge,edge-openvino`` when
the providers name OpenVINO and bundles those wheels; the slow test runs the produced Install
script in a fresh venv and the installed runtime then serves on OpenVINO.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from edge_fixtures import REPO, openvino_device_here, tiny_models  # noqa: F401
from edge_runtime.device_config import DeviceConfig, DeviceConfigError, parse_install_extras, parse_providers
from edge_runtime.providers import OPENVINO_CPU_FP32
from tagqa_assets.deployment.components import build_inference_component
from tagqa_assets.deployment.recipes import RecipeError, validate_recipe
from tagqa_assets.deployment.resources import INFERENCE_TEMPLATE, DeploymentResource

OPENVINO, CPU = "OpenVINOExecutionProvider", "CPUExecutionProvider"


def _template() -> dict:
    text = (INFERENCE_TEMPLATE.read_text().replace("{COMPONENT_NAME}", "com.tagqa.EdgeInference")
            .replace("{COMPONENT_VERSION}", "1.0.0").replace("{COMPONENT_AUTHOR}", "tagqa"))
    recipe = yaml.safe_load(text)
    for artifact in recipe["Manifests"][0]["Artifacts"]:
        artifact.update(URI="s3://bucket/greengrass.zip", Digest="A" * 43 + "=", Algorithm="SHA-256")
    return recipe


def interpolate(script: str, configuration: dict, *, work: Path, decompressed: Path) -> str:
    """A lifecycle script as the nucleus runs it: recipe variables replaced (only the ones this recipe uses)."""
    script = script.replace("{work:path}", str(work)).replace("{artifacts:decompressedPath}", str(decompressed))
    return re.sub(r"\{configuration:/([^}]+)\}", lambda m: str(configuration[m[1]]), script)


def test_the_install_step_installs_the_extras_the_configuration_names(tmp_path: Path) -> None:
    recipe = _template()
    defaults = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    install = recipe["Manifests"][0]["Lifecycle"]["Install"]["Script"]
    assert '"tagqa[{configuration:/installExtras}]"' in install and defaults["installExtras"] == "edge"
    assert DeviceConfig.from_mapping(defaults, source="recipe").providers == parse_providers([CPU], "p")
    paths = {"work": tmp_path / "work", "decompressed": tmp_path / "artifacts"}
    assert interpolate(install, defaults, **paths).endswith('/greengrass/wheels "tagqa[edge]"')
    # The deployment's merge follows the provider list: OpenVINO named -> its extra; CPU only -> edge.
    merge = DeploymentResource(edge_providers=json.dumps([OPENVINO_CPU_FP32, CPU])).configuration_overrides()
    assert merge["installExtras"] == "edge,edge-openvino"
    assert interpolate(install, {**defaults, **merge}, **paths).endswith(
        '/greengrass/wheels "tagqa[edge,edge-openvino]"')
    DeviceConfig.from_mapping({**defaults, **merge}, source="merged")  # what the runtime's validator sees
    assert DeploymentResource(edge_providers=CPU).configuration_overrides()["installExtras"] == "edge"
    assert "installExtras" not in DeploymentResource().configuration_overrides(), "no providers: the recipe's"
    assert DeploymentResource(edge_providers=f"{OPENVINO},{CPU}").install_extras() == ("edge", "edge-openvino")
    assert DeploymentResource().install_extras() == ("edge",)
    # Set by hand, it is kept when it covers the providers, refused when it does not.
    covered = DeploymentResource(device_configuration=json.dumps(
        {"providers": [OPENVINO, CPU], "installExtras": "edge-openvino,edge"}))
    assert covered.configuration_overrides()["installExtras"] == "edge-openvino,edge"
    with pytest.raises(ValueError, match=r"'installExtras' 'edge' lacks \['edge-openvino'\], which the providers"):
        DeploymentResource(device_configuration=json.dumps(
            {"providers": [OPENVINO], "installExtras": "edge"})).configuration_overrides()


@pytest.mark.parametrize("value, message", [
    ("edge-openvin", r"names 'edge-openvin', which is not an extra a device installs"),
    ('edge]" && curl evil', r"is not an extra a device installs"),
    ("edge-openvino", r"must include 'edge'"),
    ("edge,edge", r"repeats an extra"),
    (["edge"], r"must be a string"),
])
def test_install_extras_are_validated_wherever_the_configuration_is(value, message: str) -> None:
    with pytest.raises(DeviceConfigError, match=message):
        parse_install_extras(value, "installExtras")
    with pytest.raises(DeviceConfigError, match=message):  # the runtime's validator of a deployment's merge
        DeviceConfig.from_mapping({"installExtras": value}, source="merge")
    with pytest.raises(ValueError, match=message):
        DeploymentResource(device_configuration=json.dumps({"installExtras": value})).configuration_overrides()
    recipe = _template()
    recipe["ComponentConfiguration"]["DefaultConfiguration"]["installExtras"] = value
    with pytest.raises(RecipeError, match=message):
        validate_recipe(recipe, source="recipe.yaml")


def test_a_recipe_interpolating_an_undefined_key_is_refused() -> None:
    recipe = _template()
    del recipe["ComponentConfiguration"]["DefaultConfiguration"]["installExtras"]
    with pytest.raises(RecipeError, match=r"Lifecycle.Install interpolates \{configuration:/installExtras\}, which "
                                          r"DefaultConfiguration does not define"):
        validate_recipe(recipe, source="recipe.yaml")


@pytest.mark.slow  # downloads the OpenVINO plugin wheel (about 53 MB) and installs the bundle into a fresh venv
def test_the_openvino_component_installs_offline_and_serves_on_openvino(local_store, tiny_models,
                                                                         tmp_path: Path) -> None:
    """The component tagqa builds for a deployment naming OpenVINO: its Install script, run as the nucleus runs
    it (no package index), gives a venv whose runtime loads the model on OpenVINO."""
    deployment = DeploymentResource(edge_providers=json.dumps([OPENVINO_CPU_FP32, CPU]),
                                    edge_wheels_dir=str(tmp_path / "edge-wheels"))
    bundle = deployment.wheel_bundle()
    assert bundle.extras == ("edge", "edge-openvino") and bundle.directory.name == "edge-wheels-edge+edge-openvino"
    assert any(w.name.startswith("onnxruntime_ep_openvino-") for w in bundle.wheels)
    component = build_inference_component(local_store, bundle, name="com.tagqa.EdgeInference", author="tagqa",
                                          template=INFERENCE_TEMPLATE)
    assert component.build["extras"] == ["edge", "edge-openvino"]
    decompressed = tmp_path / "artifacts-unarchived"
    key, _ = component.artifacts["greengrass.zip"]
    with zipfile.ZipFile(local_store.uri_for(key)) as archive:
        archive.extractall(decompressed / "greengrass")
    configuration = {**component.recipe["ComponentConfiguration"]["DefaultConfiguration"],
                     **deployment.configuration_overrides()}
    lifecycle = component.recipe["Manifests"][0]["Lifecycle"]
    work = tmp_path / "work"
    install = interpolate(lifecycle["Install"]["Script"], configuration, work=work, decompressed=decompressed)
    # The device's environment: no project on the path, no index to fall back on.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL")}
    env.update(PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}", PIP_NO_CACHE_DIR="1")
    done = subprocess.run(["bash", "-c", install], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    verify = subprocess.run([str(work / "venv" / "bin" / "python"), "-m", "edge_runtime", "verify-model",
                             str(tiny_models["a"]), "--providers", json.dumps([OPENVINO_CPU_FP32, CPU])],
                            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    report = json.loads(verify.stdout.strip().splitlines()[-1])
    if openvino_device_here():
        assert report["provider"] == OPENVINO and report["providers_refused"] == []
    else:  # the plugin takes Intel hardware only: loaded from the bundle, it says so, and CPU serves
        [refused] = report["providers_refused"]
        assert report["provider"] == CPU and refused["provider"] == OPENVINO
        assert "onnxruntime_ep_openvino is installed and registered but offers no device" in refused["reason"]
    # Installed from the bundle, not found elsewhere: the plugin is in the device's venv.
    listed = subprocess.run([str(work / "venv" / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                            env=env, capture_output=True, text=True, timeout=120, check=True)
    assert "onnxruntime-ep-openvino" in {p["name"].lower() for p in json.loads(listed.stdout)}


@pytest.mark.slow  # installs onnxruntime-openvino (about 84 MB) and the runtime's dependencies into a fresh venv
def test_openvino_serves_through_the_built_in_wheel_where_the_plugin_offers_nothing(tiny_models,
                                                                                     tmp_path: Path) -> None:
    """The set-up docs/edge_runtime.md gives a non-Intel x86-64 device: ``onnxruntime-openvino`` installed in
    place of ``onnxruntime`` (no plugin). The runtime requests its built-in provider by name, with the same
    options as the plugin's, and OpenVINO serves and passes the CPU comparison, on this machine's CPU
    whichever vendor it is (on Intel as well)."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    installed = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "-c", str(REPO / "constraints.txt"),
                                "onnxruntime-openvino", "numpy", "pillow", "simplejpeg"],
                               capture_output=True, text=True, timeout=900)
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)  # the runtime's source; its dependencies are the venv's
    verify = subprocess.run([str(python), "-m", "edge_runtime", "verify-model", str(tiny_models["a"]),
                             "--providers", json.dumps([OPENVINO_CPU_FP32, CPU])],
                            env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout[-3000:] + verify.stderr[-3000:]
    report = json.loads(verify.stdout.strip().splitlines()[-1])
    assert report["provider"] == OPENVINO and report["providers_refused"] == [], report
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=json"], env=env, capture_output=True,
                            text=True, timeout=120, check=True)
    packages = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "onnxruntime-openvino" in packages and not packages & {"onnxruntime", "onnxruntime-ep-openvino"}
