"""Build configuration beyond pyproject.toml: the edge runtime's optional native letterbox kernel.

The extension is optional: without a C compiler (or with TAGQA_PURE_PYTHON=1, e.g. when
building a wheel for another platform) the package installs as pure Python and the runtime
uses its numpy letterbox, which computes the same pixels. Built with the limited API, so one
wheel serves every CPython >= 3.11 on its platform.
"""

import os
import sys

from setuptools import Extension, setup

native = os.environ.get("TAGQA_PURE_PYTHON", "") in ("", "0")
extensions = [
    Extension(
        "edge_runtime._letterbox",
        ["edge_runtime/_letterbox.c"],
        optional=True,
        py_limited_api=True,
        extra_compile_args=[] if sys.platform == "win32" else ["-O3"],
    )
] if native else []

setup(ext_modules=extensions, options={"bdist_wheel": {"py_limited_api": "cp311"}} if native else {})
