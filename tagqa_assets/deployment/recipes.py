"""Greengrass recipes: rendered from templates and validated before anything is published.

Templates use GDK's placeholders (``{COMPONENT_NAME}``, ``{COMPONENT_VERSION}``,
``{COMPONENT_AUTHOR}``); each artifact URI of a template is replaced by the store address
of the artifact with the same file name, with its SHA-256 digest (base64, as Greengrass
writes it). ``validate_recipe`` is the gate every recipe passes before a component version
is stored, installed or sent to Greengrass.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from edge_runtime.device_config import INSTALL_KEYS, DeviceConfig, DeviceConfigError

RECIPE_FORMAT_VERSION = "2020-01-25"
REQUIRED_FIELDS = ("RecipeFormatVersion", "ComponentName", "ComponentVersion", "ComponentDescription",
                   "ComponentPublisher", "Manifests")
LIFECYCLE_STEPS = frozenset({"setenv", "Bootstrap", "Install", "Run", "Startup", "Shutdown", "Recover"})
MQTT_PROXY = "aws.greengrass.ipc.mqttproxy"
PUBLISH, SUBSCRIBE = "aws.greengrass#PublishToIoTCore", "aws.greengrass#SubscribeToIoTCore"
# The only IPC the inference component may be granted: IoT Core publish/subscribe on named topics.
ALLOWED_OPERATIONS = {MQTT_PROXY: frozenset({PUBLISH, SUBSCRIBE})}
_PLACEHOLDER = re.compile(r"\{[A-Z][A-Z0-9_]*\}")
_URI_PLACEHOLDERS = ("BUCKET_NAME", "COMPONENT_NAME", "COMPONENT_VERSION")
_CONFIGURATION_REFERENCE = re.compile(r"\{configuration:/([^/}]+)")  # a recipe variable's top-level key
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")
_COMPONENT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RecipeError(ValueError):
    """A template or recipe is invalid; the message names the source, the field and the reason."""


def greengrass_digest(sha256_hex: str) -> str:
    """A hex SHA-256 as Greengrass writes it in recipes (base64 of the 32 bytes)."""
    return base64.b64encode(bytes.fromhex(sha256_hex)).decode()


def render_recipe(template: str, *, source: str, name: str, version: str, author: str,
                  artifacts: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    """Fill ``template`` (YAML text read from ``source``) and return the validated recipe.

    ``artifacts`` maps an artifact file name to ``(uri, sha256 hex)``; every artifact of the
    template must be one of them. Raises RecipeError naming ``source``.
    """
    text = (template.replace("{COMPONENT_NAME}", name).replace("{COMPONENT_VERSION}", version)
            .replace("{COMPONENT_AUTHOR}", author))
    try:
        recipe = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RecipeError(f"{source}: not valid YAML ({exc})") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"{source}: a recipe must be a mapping, got {type(recipe).__name__}")
    recipe = copy.deepcopy(recipe)
    used = set()
    for i, manifest in enumerate(recipe.get("Manifests") or []):
        for j, artifact in enumerate((manifest or {}).get("Artifacts") or [] if isinstance(manifest, dict) else []):
            if not isinstance(artifact, dict) or not isinstance(artifact.get("URI"), str):
                raise RecipeError(f"{source}: Manifests[{i}].Artifacts[{j}] needs a URI")
            file_name = artifact["URI"].rstrip("/").rpartition("/")[2]
            if file_name not in artifacts:
                raise RecipeError(f"{source}: Manifests[{i}].Artifacts[{j}] names {file_name!r}, which this build "
                                  f"does not produce (it produces {sorted(artifacts)})")
            uri, sha256 = artifacts[file_name]
            artifact.update(URI=uri, Digest=greengrass_digest(sha256), Algorithm="SHA-256")
            used.add(file_name)
    missing = sorted(set(artifacts) - used)
    if missing:
        raise RecipeError(f"{source}: the template lists no artifact for {missing}")
    validate_recipe(recipe, source=source, digests={uri: sha for uri, sha in artifacts.values()})
    if (recipe["ComponentName"], recipe["ComponentVersion"]) != (name, version):
        raise RecipeError(f"{source}: renders {recipe['ComponentName']}@{recipe['ComponentVersion']}, expected "
                          f"{name}@{version} (use the {{COMPONENT_NAME}} and {{COMPONENT_VERSION}} placeholders)")
    return recipe


def validate_recipe(recipe: Mapping[str, Any], *, source: str, digests: Mapping[str, str] | None = None,
                    uri_schemes: tuple[str, ...] = ("s3", "file")) -> None:
    """Raise RecipeError unless ``recipe`` is complete and consistent.

    Checks: required fields and their types, format version, component name and semantic
    version, no unfilled ``{PLACEHOLDER}``, manifests with artifacts whose URI scheme is
    one of ``uri_schemes`` and whose SHA-256 digest is present (and equal to
    ``digests[uri]`` when given), known lifecycle steps, dependency shapes, and for a
    component with IPC permissions: only IoT Core publish/subscribe, on exactly the topics
    its configuration uses, no wildcards.
    """
    def fail(where: str, why: str) -> None:
        raise RecipeError(f"{source}: {where} {why}")

    if not isinstance(recipe, Mapping):
        fail("recipe", "must be a mapping")
    for key in REQUIRED_FIELDS:
        if key not in recipe or recipe[key] in (None, "", []):
            fail(repr(key), "is a required field and is missing or empty")
    for key in REQUIRED_FIELDS[:-1]:
        if not isinstance(recipe[key], str):
            fail(repr(key), f"must be a string, got {type(recipe[key]).__name__}")
    if recipe["RecipeFormatVersion"] != RECIPE_FORMAT_VERSION:
        fail("'RecipeFormatVersion'", f"must be {RECIPE_FORMAT_VERSION!r}, got {recipe['RecipeFormatVersion']!r}")
    _check_placeholders(recipe, source)
    if not _COMPONENT_NAME.match(recipe["ComponentName"]):
        fail("'ComponentName'", f"{recipe['ComponentName']!r} is not a valid component name")
    if not _SEMVER.match(recipe["ComponentVersion"]):
        fail("'ComponentVersion'", f"{recipe['ComponentVersion']!r} is not MAJOR.MINOR.PATCH")
    for dep, spec in (recipe.get("ComponentDependencies") or {}).items():
        if not isinstance(spec, Mapping) or not isinstance(spec.get("VersionRequirement"), str):
            fail(f"ComponentDependencies.{dep}", "needs a VersionRequirement string")
        if spec.get("DependencyType", "HARD") not in ("HARD", "SOFT"):
            fail(f"ComponentDependencies.{dep}.DependencyType", "must be HARD or SOFT")
    manifests = recipe["Manifests"]
    if not isinstance(manifests, list):
        fail("'Manifests'", "must be a list")
    for i, manifest in enumerate(manifests):
        _check_manifest(manifest, f"Manifests[{i}]", fail, digests, uri_schemes)
    configuration = (recipe.get("ComponentConfiguration") or {}).get("DefaultConfiguration") or {}
    if not isinstance(configuration, Mapping):
        fail("ComponentConfiguration.DefaultConfiguration", "must be a mapping")
    if "accessControl" in configuration:
        check_access_control(configuration, recipe["ComponentName"], source)
    for key, parse in INSTALL_KEYS.items():
        if key in configuration:
            try:
                parse(configuration[key], f"ComponentConfiguration.DefaultConfiguration.{key}")
            except DeviceConfigError as exc:
                raise RecipeError(f"{source}: {exc}") from None
    for i, manifest in enumerate(manifests):
        for step, spec in ((manifest.get("Lifecycle") or {}).items()):
            script = spec.get("Script") if isinstance(spec, Mapping) else spec
            for key in _CONFIGURATION_REFERENCE.findall(script if isinstance(script, str) else ""):
                if key not in configuration:
                    fail(f"Manifests[{i}].Lifecycle.{step}", f"interpolates {{configuration:/{key}}}, which "
                         "DefaultConfiguration does not define (Greengrass would put an empty value there)")
    if configuration.get("httpToken"):
        # A recipe is stored and shared by every device it reaches: the token belongs in each device's merge.
        fail("ComponentConfiguration.DefaultConfiguration.httpToken", "must be empty in a recipe (set it per device "
             "in the deployment's configuration merge, not in the component every device shares)")


def _check_placeholders(node: Any, source: str, where: str = "recipe") -> None:
    if isinstance(node, str):
        left = _PLACEHOLDER.findall(node)
        if left:
            raise RecipeError(f"{source}: {where} still holds the placeholder(s) {left}")
    elif isinstance(node, Mapping):
        for key, value in node.items():
            _check_placeholders(key, source, f"{where} key")
            _check_placeholders(value, source, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_placeholders(value, source, f"{where}[{i}]")


def _check_manifest(manifest: Any, where: str, fail, digests: Mapping[str, str] | None,
                    uri_schemes: tuple[str, ...]) -> None:
    if not isinstance(manifest, Mapping):
        fail(where, "must be a mapping")
    if not isinstance(manifest.get("Platform", {}), Mapping):
        fail(f"{where}.Platform", "must be a mapping")
    artifacts = manifest.get("Artifacts") or []
    if not isinstance(artifacts, list):
        fail(f"{where}.Artifacts", "must be a list")
    for j, artifact in enumerate(artifacts):
        at = f"{where}.Artifacts[{j}]"
        uri = artifact.get("URI") if isinstance(artifact, Mapping) else None
        if not isinstance(uri, str) or not uri:
            fail(at, "needs a URI")
        scheme = uri.partition("://")[0] if "://" in uri else ""
        if scheme not in uri_schemes:
            fail(f"{at}.URI", f"{uri!r} must use one of the schemes {list(uri_schemes)}")
        if any(token in uri for token in _URI_PLACEHOLDERS):
            fail(f"{at}.URI", f"{uri!r} still holds a template placeholder")
        if artifact.get("Algorithm") != "SHA-256" or not isinstance(artifact.get("Digest"), str):
            fail(at, "needs Digest and Algorithm: SHA-256 (every artifact is verified on the device)")
        try:
            raw = base64.b64decode(artifact["Digest"], validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        if len(raw) != 32:
            fail(f"{at}.Digest", "is not a base64 SHA-256 digest")
        if digests is not None:
            if uri not in digests:
                fail(f"{at}.URI", f"{uri!r} is not an artifact of this build")
            if raw.hex() != digests[uri]:
                fail(f"{at}.Digest", f"does not match the artifact {uri} (sha256 {digests[uri]})")
        if artifact.get("Unarchive", "NONE") not in ("NONE", "ZIP"):
            fail(f"{at}.Unarchive", "must be NONE or ZIP")
    lifecycle = manifest.get("Lifecycle") or {}
    if not isinstance(lifecycle, Mapping):
        fail(f"{where}.Lifecycle", "must be a mapping")
    unknown = sorted(set(lifecycle) - LIFECYCLE_STEPS)
    if unknown:
        fail(f"{where}.Lifecycle", f"has unknown step(s) {unknown} (known: {sorted(LIFECYCLE_STEPS)})")


def check_access_control(configuration: Mapping[str, Any], component: str, source: str) -> None:
    """IPC permissions: IoT Core publish on exactly the result and health topics, subscribe on the feedback topic."""
    try:
        device = DeviceConfig.from_mapping(configuration, source=f"{source}: DefaultConfiguration")
    except DeviceConfigError as exc:
        raise RecipeError(str(exc)) from None
    expected = {PUBLISH: {_thing_topic(device.topic), _thing_topic(device.health_topic)},
                SUBSCRIBE: {_thing_topic(device.feedback_topic)}}
    granted: dict[str, set[str]] = {PUBLISH: set(), SUBSCRIBE: set()}
    for namespace, policies in (configuration["accessControl"] or {}).items():
        if namespace not in ALLOWED_OPERATIONS:
            raise RecipeError(f"{source}: accessControl grants {namespace!r}; only {sorted(ALLOWED_OPERATIONS)} is allowed")
        for policy_id, policy in (policies or {}).items():
            where = f"{source}: accessControl.{namespace}.{policy_id}"
            if not str(policy_id).startswith(component + ":"):
                raise RecipeError(f"{where}: policy ids must start with the component name {component!r}")
            operations, resources = policy.get("operations") or [], policy.get("resources") or []
            if not operations or not resources:
                raise RecipeError(f"{where}: needs operations and resources")
            for operation in operations:
                if operation not in ALLOWED_OPERATIONS[namespace]:
                    raise RecipeError(f"{where}: operation {operation!r} is not allowed "
                                      f"(allowed: {sorted(ALLOWED_OPERATIONS[namespace])})")
                for topic in resources:
                    if not isinstance(topic, str) or any(c in topic for c in "*#+"):
                        raise RecipeError(f"{where}: resource {topic!r} must be one topic, no wildcards")
                    granted[operation].add(topic)
    for operation, topics in expected.items():
        verb = "publish" if operation == PUBLISH else "subscribe"
        if granted[operation] != topics:
            raise RecipeError(f"{source}: accessControl lets the component {verb} to {sorted(granted[operation])}, "
                              f"but its configuration uses exactly {sorted(topics)}")


def _thing_topic(template: str) -> str:
    """A configured topic as the recipe grants it: ``{device}`` is the core device's thing name."""
    return template.replace("{device}", "{iot:thingName}")


def read_template(path: Path) -> str:
    """The template's text; RecipeError naming the path when it cannot be read."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError(f"{path}: cannot read the recipe template ({exc.strerror or exc})") from None


def recipe_yaml(recipe: Mapping[str, Any]) -> bytes:
    """The recipe as stored (``recipe.yaml``), key order kept."""
    return yaml.safe_dump(dict(recipe), sort_keys=False, allow_unicode=True).encode("utf-8")


def artifact_digests(recipe: Mapping[str, Any]) -> dict[str, str]:
    """``{artifact URI: sha256 hex}`` of every manifest's artifacts."""
    found = {}
    for manifest in recipe.get("Manifests") or []:
        for artifact in manifest.get("Artifacts") or []:
            found[artifact["URI"]] = base64.b64decode(artifact["Digest"]).hex()
    return found
