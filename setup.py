"""Build configuration beyond pyproject.toml: the edge runtime's native letterbox kernel.

The extension is optional for a native build: without a C compiler (or with
TAGQA_PURE_PYTHON=1) the package installs as pure Python and the runtime uses its numpy
letterbox, which computes the same pixels. Built with the limited API, so one wheel serves
every CPython >= 3.11 on its platform.

Cross builds: ``TAGQA_CROSS_PLATFORM=manylinux_2_17_aarch64`` (a wheel platform tag) compiles the
kernel with ``aarch64-linux-gnu-gcc`` (or ``$CC``) and tags the wheel for that platform; there the
extension is required, so a missing cross compiler fails the build instead of shipping a pure wheel
by accident (deploy/greengrass/prepare_artifact.py, docs/edge_runtime.md "ARM devices").
"""

import os
import sys

from setuptools import Extension, setup

native = os.environ.get("TAGQA_PURE_PYTHON", "") in ("", "0")
cross_platform = os.environ.get("TAGQA_CROSS_PLATFORM", "") if native else ""
if cross_platform:
    compiler = os.environ.get("CC") or f"{cross_platform.rsplit('_', 1)[-1]}-linux-gnu-gcc"
    os.environ["CC"] = compiler
    os.environ["LDSHARED"] = f"{compiler} -shared"  # not the build Python's own (host library paths)
extensions = [
    Extension(
        "edge_runtime._letterbox",
        ["edge_runtime/_letterbox.c"],
        optional=not cross_platform,
        py_limited_api=True,
        extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
    )
] if native else []

options = {"bdist_wheel": {"py_limited_api": "cp311"}} if native else {}
if cross_platform:  # its own build folder: objects of the build machine's platform are never reused
    options["bdist_wheel"]["plat_name"] = cross_platform
    options["build"] = {"build_base": os.path.join("build", cross_platform)}
setup(ext_modules=extensions, options=options)
