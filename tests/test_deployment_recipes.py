"""Recipes: the shipped templates render into valid recipes, and every kind of broken template or
recipe is refused with a message naming where and why, before anything is published."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path

import pytest

from tagqa_assets.deployment.components import MODEL_TEMPLATE
from tagqa_assets.deployment.recipes import (
    RecipeError,
    artifact_digests,
    greengrass_digest,
    read_template,
    render_recipe,
    validate_recipe,
)
from tagqa_assets.deployment.resources import INFERENCE_TEMPLATE

ZIP_SHA = hashlib.sha256(b"zip").hexdigest()
ZIP_URI = "s3://tagqa-store/plant/edge/components/com.tagqa.EdgeInference/0.1.0/greengrass.zip"


def _inference(**kwargs) -> dict:
    return render_recipe(read_template(INFERENCE_TEMPLATE), source="recipe.yaml", name="com.tagqa.EdgeInference",
                         version="0.1.0", author="tagqa", artifacts={"greengrass.zip": (ZIP_URI, ZIP_SHA)}, **kwargs)


def test_shipped_inference_template_renders_with_digest_and_least_privilege_topics() -> None:
    recipe = _inference()
    assert (recipe["ComponentName"], recipe["ComponentVersion"], recipe["ComponentPublisher"]) == (
        "com.tagqa.EdgeInference", "0.1.0", "tagqa")
    artifact = recipe["Manifests"][0]["Artifacts"][0]
    assert artifact["URI"] == ZIP_URI and artifact["Algorithm"] == "SHA-256" and artifact["Unarchive"] == "ZIP"
    assert artifact_digests(recipe) == {ZIP_URI: ZIP_SHA}
    policies = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.mqttproxy"]
    assert set(policies) == {"com.tagqa.EdgeInference:mqttproxy:publish", "com.tagqa.EdgeInference:mqttproxy:subscribe"}
    assert "--find-links" in recipe["Manifests"][0]["Lifecycle"]["Install"]["Script"]


def test_model_template_renders_once_model_fields_are_filled() -> None:
    onnx, card = hashlib.sha256(b"onnx").hexdigest(), hashlib.sha256(b"card").hexdigest()
    frames = hashlib.sha256(b"frames").hexdigest()
    text = (read_template(MODEL_TEMPLATE).replace("{MODEL_ID}", "v0001-abc").replace("{MODEL_VERSION}", "7")
            .replace("{DATASET_VERSION}", "v0001-abcd1234"))
    recipe = render_recipe(text, source="model.yaml", name="com.tagqa.ScratchModel", version="7.0.0", author="tagqa",
                           artifacts={"model.onnx": ("file:///s/model.onnx", onnx),
                                      "model_card.json": ("file:///s/model_card.json", card),
                                      "verification_frames.tar": ("file:///s/verification_frames.tar", frames)})
    assert artifact_digests(recipe) == {"file:///s/model.onnx": onnx, "file:///s/model_card.json": card,
                                        "file:///s/verification_frames.tar": frames}
    assert recipe["ComponentConfiguration"]["DefaultConfiguration"]["modelVersion"] == "7"
    # The model fields left unfilled are caught as placeholders.
    with pytest.raises(RecipeError, match=r"placeholder.*MODEL_ID"):
        render_recipe(read_template(MODEL_TEMPLATE), source="model.yaml", name="com.tagqa.ScratchModel",
                      version="7.0.0", author="tagqa", artifacts={"model.onnx": ("file:///m", onnx),
                                                                  "model_card.json": ("file:///c", card),
                                                                  "verification_frames.tar": ("file:///f", frames)})


def _set(path: str, value):
    def change(recipe: dict) -> None:
        *parents, last = path.split("/")
        node = recipe
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is KeyError:
            del node[last]
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    return change


ACL = "ComponentConfiguration/DefaultConfiguration/accessControl/aws.greengrass.ipc.mqttproxy"
PUBLISH_POLICY = ACL + "/com.tagqa.EdgeInference:mqttproxy:publish"
ARTIFACT = "Manifests/0/Artifacts/0"


@pytest.mark.parametrize("change, message", [
    # A required field is missing: the recipe would be refused by Greengrass, or worse, half-understood.
    (_set("ComponentVersion", KeyError), r"'ComponentVersion' is a required field"),
    # Greengrass knows one recipe format; another one is a typo or a template from elsewhere.
    (_set("RecipeFormatVersion", "2021-01-01"), r"RecipeFormatVersion"),
    # Component versions must be semantic versions, or version requirements cannot be resolved.
    (_set("ComponentVersion", "1.0"), r"not MAJOR.MINOR.PATCH"),
    # A placeholder the build did not fill would reach devices verbatim.
    (_set("ComponentDescription", "by {COMPONENT_AUTHOR}"), r"placeholder"),
    # Devices download artifacts from S3 only; an http URI would bypass the token exchange role.
    (_set(ARTIFACT + "/URI", "http://example.com/greengrass.zip"), r"schemes"),
    # Without a digest a corrupted or swapped artifact would be installed unnoticed.
    (_set(ARTIFACT + "/Digest", KeyError), r"needs Digest"),
    # The digest must be the artifact's: a stale recipe over a rebuilt archive is refused.
    (_set(ARTIFACT + "/Digest", greengrass_digest(hashlib.sha256(b"other").hexdigest())), r"does not match"),
    # Only ZIP archives are unpacked on devices here.
    (_set(ARTIFACT + "/Unarchive", "TAR"), r"NONE or ZIP"),
    # A misspelled lifecycle step would silently never run.
    (_set("Manifests/0/Lifecycle/Runn", "echo"), r"unknown step"),
    # Wildcards would let the component publish on every device's topics.
    (_set(PUBLISH_POLICY + "/resources", ["tagqa/#"]), r"no wildcards"),
    # IoT Core publish/subscribe is all the component needs; local pub/sub is not granted.
    (_set(PUBLISH_POLICY + "/operations", ["aws.greengrass#PublishToTopic"]), r"not allowed"),
    # Permissions must match the topics the configuration uses, no more, no less.
    (_set(PUBLISH_POLICY + "/resources", ["tagqa/{iot:thingName}/detections"]), r"exactly"),
    # The topic the configuration publishes on moved, but the permissions did not follow.
    (_set("ComponentConfiguration/DefaultConfiguration/topic", "line/{device}/results"), r"exactly"),
    # A typo in a configuration key would otherwise only show up on the device.
    (_set("ComponentConfiguration/DefaultConfiguration/confTreshold", 0.3), r"unknown key 'confTreshold'"),
    # The HTTP API opened beyond the device without a token: anyone on the line network could use it.
    (_set("ComponentConfiguration/DefaultConfiguration/http", "0.0.0.0:8081"), r"'httpToken' is required"),
    # A token in the recipe would be the same on every device and readable wherever the recipe is stored.
    (_set("ComponentConfiguration/DefaultConfiguration/httpToken", "0123456789abcdef0123"), r"httpToken must be empty"),
])
def test_broken_recipes_are_refused_with_the_reason(change, message: str) -> None:
    recipe = copy.deepcopy(_inference())
    change(recipe)
    with pytest.raises(RecipeError, match=message):
        validate_recipe(recipe, source="recipe.yaml", digests={ZIP_URI: ZIP_SHA}, uri_schemes=("s3",))


def test_a_policy_must_be_named_after_its_component() -> None:
    recipe = copy.deepcopy(_inference())
    policies = recipe["ComponentConfiguration"]["DefaultConfiguration"]["accessControl"]["aws.greengrass.ipc.mqttproxy"]
    policies["other:publish"] = policies.pop("com.tagqa.EdgeInference:mqttproxy:publish")
    with pytest.raises(RecipeError, match="must start with the component name"):
        validate_recipe(recipe, source="recipe.yaml")


@pytest.mark.parametrize("edit, message", [
    # The template lost a required field: the error names the template file and the field.
    (lambda t: t.replace('ComponentVersion: "{COMPONENT_VERSION}"\n', ""), r"broken.yaml: 'ComponentVersion'"),
    # A version hard-coded in the template would publish every build under one version.
    (lambda t: t.replace('"{COMPONENT_VERSION}"', '"1.0.0"'), r"renders com.tagqa.EdgeInference@1.0.0"),
    # The template names an artifact this build does not produce.
    (lambda t: t.replace("greengrass.zip", "edge.zip"), r"names 'edge.zip'"),
    # Not YAML at all.
    (lambda t: t + "\n  - : [", r"not valid YAML"),
])
def test_broken_templates_are_refused_naming_the_file(tmp_path: Path, edit, message: str) -> None:
    template = tmp_path / "broken.yaml"
    template.write_text(edit(read_template(INFERENCE_TEMPLATE)))
    with pytest.raises(RecipeError, match=message):
        render_recipe(read_template(template), source=str(template), name="com.tagqa.EdgeInference", version="0.1.0",
                      author="tagqa", artifacts={"greengrass.zip": (ZIP_URI, ZIP_SHA)})


def test_unreadable_template_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="missing.yaml: cannot read"):
        read_template(tmp_path / "missing.yaml")
