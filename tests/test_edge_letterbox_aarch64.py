"""The native letterbox kernel for linux aarch64 devices: cross-compiled here, run under qemu-user.

``make test`` installs gcc-aarch64-linux-gnu and qemu-user (system-deps). The emulated import of
the wheel in an aarch64 CPython needs an arm64 Python root (deploy/greengrass/check_native_kernel.py
--python-root; docs/edge_runtime.md records the run).
"""

from __future__ import annotations

import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("check_native_kernel",
                                               REPO / "deploy" / "greengrass" / "check_native_kernel.py")
check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check)

# The cross compiler and the emulator come from `make system-deps`, which `make test` runs and
# `make test-quick` does not: slow keeps them out of the quick tier, and missing tools fail here.
pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _cross_tools() -> None:
    missing = check.tools_missing()
    assert not missing, f"{', '.join(missing)} not on PATH: `make system-deps` installs {check.COMPILER} and {check.EMULATOR}"


def test_aarch64_kernel_is_bit_identical_to_the_numpy_letterbox_under_emulation(tmp_path) -> None:
    assert "bit-identical" in check.check_kernel(tmp_path)


def test_emulated_kernel_output_is_checked_for_real(tmp_path) -> None:
    """The comparison can fail: the harness output for a frame differs from another frame's letterbox."""
    binary = check.build_harness(tmp_path)
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (300, 450, 3), dtype=np.uint8)
    emulated = check.run_harness(binary, image, 480)
    reference = np.empty((1, 3, 480, 480), np.float32)
    check.letterbox_into_numpy(image, reference)
    assert emulated.tobytes() == reference.tobytes()
    check.letterbox_into_numpy(np.ascontiguousarray(image[::-1]), reference)
    assert emulated.tobytes() != reference.tobytes()


@pytest.mark.slow
def test_cross_built_wheel_carries_an_aarch64_kernel(tmp_path) -> None:
    message, unpacked = check.check_wheel(tmp_path)
    assert "AArch64 extension" in message
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    assert wheel.name.endswith("-cp311-abi3-manylinux_2_17_aarch64.whl"), wheel.name
    with zipfile.ZipFile(wheel) as archive:
        assert "edge_runtime/_letterbox.c" in archive.namelist()


def test_greengrass_bundle_cross_builds_for_aarch64_only() -> None:
    spec = importlib.util.spec_from_file_location("prepare_artifact", REPO / "deploy" / "greengrass" / "prepare_artifact.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    assert prepare.project_wheel_env("manylinux_2_28_aarch64") == {"TAGQA_CROSS_PLATFORM": "manylinux_2_28_aarch64"}
    assert prepare.project_wheel_env("win_amd64") == {"TAGQA_PURE_PYTHON": "1"}
    assert prepare.project_wheel_env("macosx_11_0_arm64") == {"TAGQA_PURE_PYTHON": "1"}
