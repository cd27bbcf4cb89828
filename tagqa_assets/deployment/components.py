"""Building the two Greengrass components of a release into the store, and reading them back.

- Model component ``<prefix>ScratchModel`` version ``N.0.0`` for registry version N:
  ``model.onnx``, ``model_card.json`` with ``model_version`` set to ``"N"``: the variant the
  registry entry ships (``precision``: the fp32 export or its int8 variant, decided at
  registration by ``max_int8_map_loss``; the card says which, why, and for int8 the
  calibration set); version ``N.1.0`` holds the fp32 export of an entry that ships int8, for a
  deployment to NVIDIA providers (deployment/precision.py); and
  ``verification_frames.tar``: a handful of the model's validation images (the first
  ``VERIFICATION_FRAME_COUNT`` by image key of its dataset version's val split, else test, else
  train), on which the edge runtime runs the model before serving it and refuses non-finite
  outputs. A model whose dataset version is not in the store ships the frames stored beside it
  (``models/<model_id>/verification_frames.tar``, named by its card), else the build fails.
- Inference component ``<prefix>EdgeInference``: ``greengrass.zip`` holding ``wheels/``
  (the bundle from wheels.py: ``tagqa[edge]``, plus the extras the deployment's providers
  need, named in ``build.json``'s ``extras``), recipe from ``deploy/greengrass/recipe.yaml``. Its version is
  ``<tagqa major>.<tagqa minor>.<K>``; an unchanged bundle and template reuse the existing
  version, anything else gets the next K.

Everything is checked before the first byte is stored (model card against the ONNX bytes
and the commit record, recipe against the artifact digests); artifacts go first,
``build.json`` next and ``recipe.yaml`` last. Component versions are immutable: rebuilding
one with other content is an error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_runtime.capture import score_percentiles
from edge_runtime.contracts import (VERIFICATION_FRAMES_FILE, VERIFICATION_FRAMES_KEY, ContractError, ModelCard,
                                    pack_verification_frames, validate_identifier)
from tagqa_assets.contracts.edge import (
    BUILD_FILE,
    INFERENCE_ARCHIVE,
    RECIPE_FILE,
    ComponentRef,
    component_key,
    component_name_prefix,
    model_component_version,
    parse_semver,
    utc_now,
)
from tagqa_assets.contracts.models import APPROVED, FP32, METRICS_FILE, MODEL_CARD_FILE, ONNX_FILE, ModelVersion, model_key
from tagqa_assets.deployment.precision import ShippedVariant
from tagqa_assets.deployment.recipes import RecipeError, artifact_digests, read_template, recipe_yaml, render_recipe, validate_recipe
from tagqa_assets.datasets.versions import DatasetVersionStore
from tagqa_assets.deployment.wheels import WheelBundle
from tagqa_assets.model_catalog.model_files import read_model_record, variant_files
from tagqa_assets.storage import ObjectNotFound, ObjectStore

MODEL_TEMPLATE = Path(__file__).with_name("model_recipe.yaml")
VERIFICATION_FRAME_COUNT = 4
_ZIP_TIME = (2020, 1, 1, 0, 0, 0)


class ComponentBuildError(ValueError):
    """A component cannot be built from its inputs; the message names the input and the reason."""


@dataclass(frozen=True)
class StoredComponent:
    """A complete component version in the store: its recipe and ``{file name: (key, sha256)}``."""

    ref: ComponentRef
    recipe: dict[str, Any]
    artifacts: dict[str, tuple[str, str]]
    build: dict[str, Any]
    reused: bool = False


def artifact_uri(store: ObjectStore, key: str) -> str:
    """Address of an artifact in a recipe: ``s3://...`` for S3 stores, ``file://...`` for a local folder."""
    uri = store.uri_for(key)
    return uri if uri.startswith("s3://") else Path(uri).as_uri()


def load_component(store: ObjectStore, ref: ComponentRef) -> StoredComponent:
    """Read a complete component version; ComponentBuildError when it is missing or incomplete."""
    recipe_key = component_key(ref.name, ref.version, RECIPE_FILE)
    try:
        recipe = yaml.safe_load(store.get_bytes(recipe_key))
        build = store.get_json(component_key(ref.name, ref.version, BUILD_FILE))
    except ObjectNotFound:
        raise ComponentBuildError(f"component {ref} is not (completely) built: no {store.uri_for(recipe_key)}") from None
    source = store.uri_for(recipe_key)
    validate_recipe(recipe, source=source)
    artifacts = {name: (component_key(ref.name, ref.version, name), sha) for name, sha in build["artifacts"].items()}
    expected = {artifact_uri(store, key): sha for key, sha in artifacts.values()}
    if artifact_digests(recipe) != expected:
        raise RecipeError(f"{source}: its artifacts {sorted(artifact_digests(recipe))} do not match {BUILD_FILE}")
    return StoredComponent(ref, recipe, artifacts, build)


def _existing(store: ObjectStore, ref: ComponentRef) -> StoredComponent | None:
    if not store.exists(component_key(ref.name, ref.version, RECIPE_FILE)):
        return None
    return load_component(store, ref)


def _publish(store: ObjectStore, ref: ComponentRef, files: dict[str, bytes], recipe: dict[str, Any],
             build: dict[str, Any]) -> StoredComponent:
    for name, data in files.items():
        store.put_bytes(component_key(ref.name, ref.version, name), data)
    store.put_json(component_key(ref.name, ref.version, BUILD_FILE), build)
    store.put_bytes(component_key(ref.name, ref.version, RECIPE_FILE), recipe_yaml(recipe))
    return load_component(store, ref)


def build_model_component(store: ObjectStore, entry: ModelVersion, *, name: str, author: str,
                          template: Path = MODEL_TEMPLATE, variant: ShippedVariant | None = None) -> StoredComponent:
    """The model component of registry version ``entry`` holding ``variant`` (default: the one the entry ships;
    deployment/precision.py), built, or the identical existing one."""
    if entry.status != APPROVED:
        raise ComponentBuildError(f"model version {entry.version} is {entry.status}; only Approved versions are deployed")
    variant = variant or ShippedVariant.of_registry(entry)
    ref = ComponentRef(name, model_component_version(entry.version, registry_choice=variant.registry_choice))
    where = f"model {entry.model_id} (registry version {entry.version}, {variant.precision})"
    record = read_model_record(store, entry.model_id)
    onnx_file, card_file = variant_files(variant.precision)
    try:
        onnx = store.get_bytes(model_key(entry.model_id, onnx_file))
        card = ModelCard.from_dict(store.get_json(model_key(entry.model_id, card_file)),
                                   source=store.uri_for(model_key(entry.model_id, card_file)))
    except (ObjectNotFound, ContractError) as exc:
        raise ComponentBuildError(f"{where}: {exc}") from None
    digest = hashlib.sha256(onnx).hexdigest()
    if digest != card.onnx_sha256:
        raise ComponentBuildError(f"{where}: {onnx_file} has sha256 {digest} but its model card says "
                                  f"{card.onnx_sha256}; the artifact is corrupt or not the exported model")
    if record.files.get(onnx_file, digest) != digest:
        raise ComponentBuildError(f"{where}: {onnx_file} has sha256 {digest} but its commit record says "
                                  f"{record.files[onnx_file]}")
    if card.model_id != entry.model_id:
        raise ComponentBuildError(f"{where}: its model card belongs to model {card.model_id!r}")
    frames, frames_entry = _verification_frames(store, entry, card, where)
    # Entries registered before precision variants existed keep the card they always had (the component
    # version is immutable); later ones say which variant this is and why.
    precision = {"precision": variant.precision, "precision_reason": variant.reason} if entry.variants else {}
    card = dataclasses.replace(card, model_version=str(entry.version), onnx_file=ONNX_FILE, extra={
        **card.extra, VERIFICATION_FRAMES_KEY: frames_entry, **precision,
        **_card_evaluation(store, entry, variant.precision)})
    card_bytes = json.dumps(card.to_dict(), indent=2, sort_keys=True).encode()
    files = {ONNX_FILE: onnx, MODEL_CARD_FILE: card_bytes, VERIFICATION_FRAMES_FILE: frames}
    text = read_template(template)
    for placeholder, value in (("{MODEL_ID}", entry.model_id), ("{MODEL_VERSION}", str(entry.version)),
                               ("{DATASET_VERSION}", entry.dataset_version)):
        text = text.replace(placeholder, validate_identifier(value, placeholder))
    build = {"component": ref.name, "version": ref.version, "model_version": entry.version,
             "model_id": entry.model_id, "dataset_version": entry.dataset_version, "precision": variant.precision,
             **({} if variant.registry_choice else {"registry_precision": entry.precision})}
    return _build(store, ref, files, text, str(template), author, build)


def _card_evaluation(store: ObjectStore, entry: ModelVersion, precision: str) -> dict[str, Any]:
    """``{"evaluation": ...}`` for the shipped model card: the test split's metrics and AP per class of the
    shipped ``precision`` variant from the model's ``metrics.json`` (what the registry approved it on); empty
    for a model committed without one."""
    try:
        document = store.get_json(model_key(entry.model_id, METRICS_FILE))
    except ObjectNotFound:
        return {}
    if precision != FP32:  # the variant's own numbers (metrics.json keeps them under variants)
        document = document.get("variants", {}).get(precision) or entry.variants[precision]
    evaluation = {"split": "test", "metrics": document.get("metrics", {}).get("test", {}),
                  "per_class": document.get("per_class", {}).get("test", {})}
    test_scores = (document.get("best_scores") or {}).get("test")
    if test_scores:  # the device's automatic capture band follows them (edge_runtime.capture.rank_band)
        evaluation["best_score_percentiles"] = score_percentiles(test_scores)
    return {"evaluation": {**evaluation, "precision": precision} if entry.variants else evaluation}


def _verification_frames(store: ObjectStore, entry: ModelVersion, card: ModelCard, where: str
                         ) -> tuple[bytes, dict[str, Any]]:
    """The verification frames the model component ships (tar bytes, model card entry); see the module docstring."""
    versions = DatasetVersionStore(store)
    if versions.is_committed(entry.dataset_version):
        manifest = versions.manifest(entry.dataset_version)
        for split in ("val", "test", "train"):
            keys = sorted(manifest.loc[manifest["split"] == split, "image_key"])[:VERIFICATION_FRAME_COUNT]
            if keys:
                break
        try:
            frames = {f"{i}-{Path(key).name}": store.get_bytes(key) for i, key in enumerate(keys)}
        except ObjectNotFound as exc:
            raise ComponentBuildError(f"{where}: a verification frame of dataset {entry.dataset_version} is "
                                      f"missing: {exc}") from None
        if frames:
            return pack_verification_frames(frames)
    shipped = card.extra.get(VERIFICATION_FRAMES_KEY)
    if isinstance(shipped, dict) and shipped.get("file") == VERIFICATION_FRAMES_FILE:
        try:
            data = store.get_bytes(model_key(entry.model_id, VERIFICATION_FRAMES_FILE))
        except ObjectNotFound:
            data = None
        if data is not None and hashlib.sha256(data).hexdigest() == shipped.get("sha256"):
            return data, dict(shipped)
    raise ComponentBuildError(f"{where}: no verification frames: dataset version {entry.dataset_version} has no "
                              f"images in {store.uri} and the model ships no {VERIFICATION_FRAMES_FILE} "
                              "matching its card")


def _build(store: ObjectStore, ref: ComponentRef, files: dict[str, bytes], template: str, source: str, author: str,
           build: dict[str, Any]) -> StoredComponent:
    digests = {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    artifacts = {name: (artifact_uri(store, component_key(ref.name, ref.version, name)), sha)
                 for name, sha in digests.items()}
    recipe = render_recipe(template, source=source, name=ref.name, version=ref.version, author=author,
                           artifacts=artifacts)
    existing = _existing(store, ref)
    if existing is not None:
        if {name: sha for name, (_, sha) in existing.artifacts.items()} != digests:
            raise ComponentBuildError(f"component {ref} already exists in {store.uri} with other artifacts; "
                                      "component versions are immutable")
        return StoredComponent(existing.ref, existing.recipe, existing.artifacts, existing.build, reused=True)
    return _publish(store, ref, files, recipe, {**build, "artifacts": digests, "built_at": utc_now()})


def wheel_archive(bundle: WheelBundle) -> bytes:
    """``greengrass.zip``: ``wheels/<name>.whl`` for every wheel, fixed timestamps, stored (wheels are zips already)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for wheel in bundle.wheels:
            info = zipfile.ZipInfo(f"wheels/{wheel.name}", date_time=_ZIP_TIME)
            info.external_attr = 0o644 << 16
            archive.writestr(info, wheel.read_bytes())
    return buffer.getvalue()


def build_inference_component(store: ObjectStore, bundle: WheelBundle, *, name: str, author: str,
                              template: Path) -> StoredComponent:
    """The inference component for ``bundle`` and ``template``: the existing version when both are unchanged."""
    text = read_template(template)
    fingerprint = hashlib.sha256(bundle.fingerprint().encode() + b"\0" + text.encode()).hexdigest()
    major, minor, _ = parse_semver(importlib.metadata.version("tagqa"))
    patches = []
    for prefix in store.list_prefixes(component_name_prefix(name)):
        version = prefix.rstrip("/").rpartition("/")[2]
        try:
            parsed = parse_semver(version)
        except ValueError:
            continue
        existing = _existing(store, ComponentRef(name, version))
        if existing is None:
            continue
        if existing.build.get("fingerprint") == fingerprint:
            return StoredComponent(existing.ref, existing.recipe, existing.artifacts, existing.build, reused=True)
        if parsed[:2] == (major, minor):
            patches.append(parsed[2])
    ref = ComponentRef(name, f"{major}.{minor}.{max(patches) + 1 if patches else 0}")
    build = {"component": ref.name, "version": ref.version, "fingerprint": fingerprint,
             "wheels": [w.name for w in bundle.wheels], "extras": list(bundle.extras), "template": str(template)}
    return _build(store, ref, {INFERENCE_ARCHIVE: wheel_archive(bundle)}, text, str(template), author, build)
