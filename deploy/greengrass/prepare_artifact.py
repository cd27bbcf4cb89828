"""Fill ``deploy/greengrass/wheels/`` with every wheel the edge component installs.

The component's Install step runs ``pip install --no-index --find-links wheels "tagqa[<installExtras>]"``
(``edge``; ``edge,edge-openvino`` for the OpenVINO provider: build with ``--extras edge,edge-openvino``, which on
linux x86-64 also bundles onnxruntime-openvino, what the Install step swaps in where the plugin offers no device),
so the device never reaches a package index (the reference component pip-installed
ultralytics and torch from the internet at start-up). Run this on a build machine with
index access, then ``gdk component build`` zips this folder, wheels included::

    python deploy/greengrass/prepare_artifact.py                       # wheels for this machine
    python deploy/greengrass/prepare_artifact.py --platform manylinux_2_28_aarch64 --python-version 3.11

For a linux aarch64 platform the tagqa wheel carries the native letterbox kernel cross-compiled
with ``aarch64-linux-gnu-gcc`` (``apt-get install gcc-aarch64-linux-gnu``; checked under emulation
by ``check_native_kernel.py``); without that compiler, or for any other foreign platform, it is
pure Python and the device runs the numpy letterbox (same pixels, slower: docs/edge_runtime.md).

Versions come from the repository's constraints.txt, the same pins the tests ran with.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
try:
    from edge_runtime.openvino_setup import BUILT_IN_DISTRIBUTION, bundles_built_in
except ImportError:  # a build machine runs this from the checkout, tagqa not installed
    sys.path.insert(0, str(REPO))
    from edge_runtime.openvino_setup import BUILT_IN_DISTRIBUTION, bundles_built_in


CROSS_COMPILER = "aarch64-linux-gnu-gcc"


def project_wheel_env(platform: str) -> dict[str, str]:
    """Build settings for the tagqa wheel of a foreign ``platform`` tag (setup.py): cross-compile the
    kernel for linux aarch64 when the cross compiler is there, otherwise a pure wheel."""
    if platform.endswith("_aarch64") and "linux" in platform and shutil.which(CROSS_COMPILER):
        return {"TAGQA_CROSS_PLATFORM": platform}
    return {"TAGQA_PURE_PYTHON": "1"}


def build_wheels(out: Path, *, platform: str | None, python_version: str | None, constraints: Path | None,
                 extras: tuple[str, ...] = ("edge",)) -> None:
    """Project wheel (built locally) plus binary wheels of ``tagqa[<extras>]``'s dependencies."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    pip = [sys.executable, "-m", "pip"]
    # The project wheel carries the native letterbox kernel (abi3, any CPython >= 3.11) for this
    # machine's platform and, cross-compiled, for linux aarch64; elsewhere it is pure Python.
    env = None
    if platform:
        env = {**os.environ, **project_wheel_env(platform)}
        if env.get("TAGQA_PURE_PYTHON"):
            print(f"{platform}: the tagqa wheel is pure Python, the device will use the numpy letterbox "
                  f"(a native kernel is cross-built for linux aarch64 when {CROSS_COMPILER} is installed)")
    subprocess.run([*pip, "wheel", "--no-deps", "--wheel-dir", str(out), str(REPO)], check=True, env=env)
    download = [*pip, "download", "--only-binary=:all:", "--dest", str(out), "--find-links", str(out)]
    if constraints is not None:
        download += ["--constraint", str(constraints)]
    if platform:
        download += ["--platform", platform, "--implementation", "cp"]
    if python_version:
        download += ["--python-version", python_version]
    subprocess.run([*download, f"tagqa[{','.join(extras)}]"], check=True)
    if "edge-openvino" in extras and bundles_built_in(platform):
        # What the Install step's setup-openvino swaps in where the plugin offers no device (non-Intel x86-64).
        subprocess.run([*download, BUILT_IN_DISTRIBUTION], check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "wheels")
    parser.add_argument("--platform", help="target wheel platform tag, e.g. manylinux_2_28_aarch64")
    parser.add_argument("--python-version", help="target Python, e.g. 3.11 (the device's python3)")
    parser.add_argument("--constraints", type=Path, default=REPO / "constraints.txt")
    parser.add_argument("--extras", default="edge",
                        help="the component's installExtras, e.g. edge,edge-openvino (default: edge)")
    args = parser.parse_args(argv)
    constraints = args.constraints if args.constraints and args.constraints.is_file() else None
    build_wheels(args.out, platform=args.platform, python_version=args.python_version, constraints=constraints,
                 extras=tuple(part.strip() for part in args.extras.split(",") if part.strip()))
    wheels = sorted(p.name for p in args.out.glob("*.whl"))
    size = sum(p.stat().st_size for p in args.out.glob("*.whl")) / 1e6
    print(f"{len(wheels)} wheels, {size:.1f} MB in {args.out}:", *wheels, sep="\n  ")
    return 0


if __name__ == "__main__":
    sys.exit(main())
