"""The device package stays small and permissively licensed: no torch, no ultralytics (AGPL), no Dagster;
its wheel carries the native letterbox kernel for this platform, or none when built pure.

The install size itself (``pip install .[edge]`` into an empty venv) is measured in
docs/edge_runtime.md; this checks the imports that decide it.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from edge_fixtures import REPO

ALLOWED_THIRD_PARTY = {"numpy", "onnxruntime", "PIL", "simplejpeg", "awscrt", "awsiot", "cv2"}  # cv2: optional camera source
FORBIDDEN = ("torch", "torchvision", "ultralytics", "dagster", "tagqa_assets", "boto3", "botocore", "pandas")


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_edge_runtime_imports_only_the_stdlib_and_its_declared_dependencies() -> None:
    for path in sorted((REPO / "edge_runtime").glob("*.py")):
        third_party = {n for n in _imports(path) if n not in sys.stdlib_module_names and n != "edge_runtime"}
        assert third_party <= ALLOWED_THIRD_PARTY, f"{path.name} imports {third_party - ALLOWED_THIRD_PARTY}"


def test_running_the_runtime_loads_no_heavy_or_copyleft_module() -> None:
    code = ("import sys, edge_runtime.__main__, edge_runtime.service, edge_runtime.publishers, "
            "edge_runtime.stores, edge_runtime.config_sources; "
            f"print([m for m in {FORBIDDEN!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"


def test_contracts_import_without_onnxruntime() -> None:
    """The platform imports edge_runtime.contracts; that must not drag ONNX Runtime in."""
    code = "import sys, edge_runtime.contracts; print('onnxruntime' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "False False"


def _wheel(tmp_path, env_extra: dict[str, str]) -> tuple[str, list[str]]:
    import os
    import zipfile

    out = tmp_path / ("pure" if env_extra else "native")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(out), str(REPO)], check=True, env={**os.environ, **env_extra})
    (wheel,) = out.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return wheel.name, [n for n in archive.namelist() if n.startswith("edge_runtime/_letterbox")]


@pytest.mark.slow
def test_project_wheel_is_native_here_and_pure_on_request(tmp_path) -> None:
    """The Greengrass bundle for this machine carries the kernel; for another platform it must stay installable."""
    name, files = _wheel(tmp_path, {})
    assert "-cp311-abi3-" in name, name  # limited API: one wheel for every CPython >= 3.11 on this platform
    assert any(f.endswith(".abi3.so") for f in files) and "edge_runtime/_letterbox.c" in files, files
    name, files = _wheel(tmp_path, {"TAGQA_PURE_PYTHON": "1"})
    assert name.endswith("-py3-none-any.whl"), name
    assert files == ["edge_runtime/_letterbox.c"], files  # source only: the runtime falls back to numpy
