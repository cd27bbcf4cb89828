"""The wheel bundle of the inference component: every wheel ``tagqa[edge]`` (and any other extra the devices
install, e.g. ``edge-openvino``) installs, offline.

``deploy/greengrass/prepare_artifact.py`` builds the bundle (the project wheel plus binary
wheels of its edge dependencies, pinned by constraints.txt); this module runs it when the
bundle is missing or its ``tagqa`` wheel carries other ``edge_runtime`` code than this
checkout, then checks that the bundle is complete.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from packaging.requirements import Requirement

import edge_runtime
from edge_runtime.openvino_setup import BUILT_IN_DISTRIBUTION, bundles_built_in

REPO = Path(__file__).resolve().parents[2]
PREPARE_SCRIPT = REPO / "deploy" / "greengrass" / "prepare_artifact.py"
# __path__, not __file__: the package stays locatable when an editable install maps it as a namespace.
RUNTIME_SOURCE = Path(next(iter(edge_runtime.__path__))).resolve()
_RUNTIME_SUFFIXES = (".py", ".c")  # the C source of the native letterbox ships in the wheel as package data


class WheelBundleError(RuntimeError):
    """The bundle cannot be built or is incomplete; the message says what to run."""


@dataclass(frozen=True)
class WheelBundle:
    """A folder of wheels that installs ``tagqa[<extras>]`` with ``pip install --no-index``."""

    directory: Path
    wheels: tuple[Path, ...]
    extras: tuple[str, ...] = ("edge",)

    def fingerprint(self) -> str:
        """sha256 over the wheel names and contents: equal fingerprints install the same code."""
        digest = hashlib.sha256()
        for wheel in self.wheels:
            digest.update(wheel.name.encode() + b"\0" + hashlib.sha256(wheel.read_bytes()).digest())
        return digest.hexdigest()


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def edge_requirements(extras: tuple[str, ...] = ("edge",)) -> list[str]:
    """Distribution names ``tagqa[<extras>]`` needs besides ``tagqa`` (from the installed metadata)."""
    names = []
    for line in importlib.metadata.requires("tagqa") or []:
        requirement = Requirement(line)
        if requirement.marker is None or any(requirement.marker.evaluate({"extra": extra}) for extra in extras):
            names.append(_normalize(requirement.name))
    return sorted(set(names))


def _wheel_name(path: Path) -> str:
    return _normalize(path.name.split("-", 1)[0])


def runtime_is_current(wheel: Path) -> bool:
    """Whether the ``tagqa`` wheel holds exactly this checkout's ``edge_runtime/*.py`` and ``*.c`` sources."""
    source = {p.name: p.read_bytes() for p in RUNTIME_SOURCE.iterdir() if p.suffix in _RUNTIME_SUFFIXES}
    try:
        with zipfile.ZipFile(wheel) as archive:
            packed = {Path(n).name: archive.read(n) for n in archive.namelist()
                      if n.startswith("edge_runtime/") and Path(n).suffix in _RUNTIME_SUFFIXES and n.count("/") == 1}
    except (OSError, zipfile.BadZipFile):
        return False
    return packed == source


def _load_prepare_script() -> ModuleType:
    if not PREPARE_SCRIPT.is_file():
        raise WheelBundleError(f"{PREPARE_SCRIPT} not found: building the inference component needs a source checkout")
    spec = importlib.util.spec_from_file_location("tagqa_prepare_artifact", PREPARE_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _problems(directory: Path, extras: tuple[str, ...], platform: str) -> list[str]:
    wheels = sorted(directory.glob("*.whl")) if directory.is_dir() else []
    names = {_wheel_name(w) for w in wheels}
    wanted = ["tagqa", *edge_requirements(extras)]
    if "edge-openvino" in extras and bundles_built_in(platform or None):
        wanted.append(BUILT_IN_DISTRIBUTION)  # what the device's setup-openvino swaps in off Intel hardware
    problems = [f"no wheel for {name}" for name in wanted if name not in names]
    project = [w for w in wheels if _wheel_name(w) == "tagqa"]
    if len(project) > 1:
        problems.append(f"several tagqa wheels ({[w.name for w in project]})")
    elif project and not runtime_is_current(project[0]):
        problems.append(f"{project[0].name} holds other edge_runtime code than {RUNTIME_SOURCE}")
    return problems


def prepare_wheel_bundle(directory: Path | str, *, platform: str = "", python_version: str = "",
                         extras: tuple[str, ...] = ("edge",)) -> WheelBundle:
    """The bundle of ``tagqa[<extras>]`` in ``directory``, (re)built with prepare_artifact.py when missing,
    incomplete or stale.

    ``platform``/``python_version`` select the device's wheels (e.g. ``manylinux_2_28_aarch64``,
    ``3.11``); empty means this machine. Raises WheelBundleError when it cannot be completed.
    """
    directory = Path(directory).resolve()
    if _problems(directory, extras, platform):
        script = _load_prepare_script()
        constraints = REPO / "constraints.txt"
        try:
            script.build_wheels(directory, platform=platform or None, python_version=python_version or None,
                                constraints=constraints if constraints.is_file() else None, extras=extras)
        except Exception as exc:  # pip failures surface as CalledProcessError; name the command either way
            raise WheelBundleError(
                f"could not build the wheel bundle in {directory} ({exc}); run `python {PREPARE_SCRIPT} --out "
                f"{directory} --extras {','.join(extras)}` on a machine that reaches the package index") from None
    problems = _problems(directory, extras, platform)
    if problems:
        raise WheelBundleError(f"wheel bundle {directory} is incomplete: {'; '.join(problems)}")
    return WheelBundle(directory, tuple(sorted(directory.glob("*.whl"))), tuple(extras))
