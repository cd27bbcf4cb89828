"""The package structure holds: no import cycle between stages, layers import no stage.

The import graph is read from the source with ``ast`` (every ``import`` and ``from ...
import`` anywhere in a module, also inside functions), so a new stage, layer or import is
covered without editing this file. What counts as a stage and what as a layer follows
from the layout: a sub-package of ``tagqa_assets`` with an ``assets.py`` is a stage;
every other module or package of ``tagqa_assets`` except the two assemblers
(``definitions``, ``cli``) is a layer beneath the stages.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tagqa_assets"
ASSEMBLERS = {"definitions", "resources", "cli"}  # they put the stages together (resources.py wires every stage's resources), so they import every stage


def units(root: Path = PACKAGE) -> dict[str, list[Path]]:
    """Top-level parts of the package at ``root`` (sub-packages and modules) and their source files."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.iterdir()):
        if path.is_dir() and (path / "__init__.py").is_file():
            found[path.name] = sorted(path.rglob("*.py"))
        elif path.suffix == ".py" and path.stem != "__init__":
            found[path.stem] = [path]
    return found


def stages(root: Path = PACKAGE) -> set[str]:
    """Sub-packages with an ``assets.py``: the stages."""
    return {name for name in units(root) if (root / name / "assets.py").is_file()}


def imported_units(path: Path, unit: str, root: Path = PACKAGE) -> set[str]:
    """Other top-level parts of the package that ``path`` (inside ``unit``) imports, absolutely or relatively."""
    known = units(root)
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        modules: list[str] = []
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing module's package
                base = path.relative_to(root.parent).with_suffix("").parts[: -node.level]
                module = ".".join(base + ((node.module,) if node.module else ()))
            else:
                module = node.module or ""
            modules = [module] + [f"{module}.{alias.name}" for alias in node.names]
        for module in modules:
            parts = module.split(".")
            if parts[0] == root.name and len(parts) > 1 and parts[1] in known:
                found.add(parts[1])
    found.discard(unit)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Unit -> the other units it imports."""
    return {name: set().union(*(imported_units(path, name, root) for path in paths)) for name, paths in units(root).items()}


def cycles(graph: dict[str, set[str]], nodes: set[str]) -> list[list[str]]:
    """Every elementary cycle among ``nodes`` found by depth-first search (each reported once)."""
    found: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()

    def visit(node: str, path: list[str]) -> None:
        for target in sorted(graph.get(node, set()) & nodes):
            if target in path:
                cycle = path[path.index(target):] + [target]
                key = tuple(sorted(cycle[:-1]))
                if key not in seen:
                    seen.add(key)
                    found.append(cycle)
            else:
                visit(target, path + [target])

    for start in sorted(nodes):
        visit(start, [start])
    return found


def test_the_layout_has_the_expected_stages_and_layers():
    # Guards the classification itself: if the rule stopped finding stages, the tests below would pass vacuously.
    assert {"ingestion", "labeling", "datasets", "training", "registry", "deployment"} <= stages()
    assert {"contracts", "storage", "model_catalog"} <= set(units()) - stages()


def test_no_import_cycle_between_stages():
    graph = import_graph()
    found = cycles(graph, stages())
    assert not found, "import cycles between stages: " + "; ".join(" -> ".join(cycle) for cycle in found)


def test_layers_import_no_stage():
    graph = import_graph()
    layers = set(units()) - stages() - ASSEMBLERS
    offending = {layer: sorted(graph[layer] & stages()) for layer in sorted(layers) if graph[layer] & stages()}
    assert not offending, f"layers beneath the stages import stages: {offending}"


def test_no_import_cycle_among_layers():
    graph = import_graph()
    layers = set(units()) - stages() - ASSEMBLERS
    assert not cycles(graph, layers)


@pytest.mark.parametrize("stage", sorted(stages()))
def test_every_stage_exposes_defs_the_same_way(stage):
    import importlib

    import dagster as dg

    module = importlib.import_module(f"tagqa_assets.{stage}")
    assert isinstance(module.defs, dg.Definitions), f"tagqa_assets.{stage}.defs is not a dg.Definitions"


def test_the_cycle_finder_finds_a_planted_cycle():
    # The detector itself: a two-stage cycle and a three-stage cycle are both reported.
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": {"d"}, "d": {"b"}}
    found = {tuple(cycle) for cycle in cycles(graph, set(graph))}
    assert ("a", "b", "a") in found
    assert any(set(cycle) == {"b", "c", "d"} for cycle in found)
    assert cycles({"a": {"b"}, "b": {"c"}}, {"a", "b", "c"}) == []


def test_a_planted_cycle_in_source_is_found(tmp_path):
    # The whole reader on a small package: a relative import inside a function and an
    # absolute one close a cycle between two stages; a layer importing a stage is seen.
    root = tmp_path / "tagqa_assets"
    for name in ("alpha", "beta"):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text("")
        (root / name / "assets.py").write_text("")
    (root / "__init__.py").write_text("")
    (root / "alpha" / "assets.py").write_text("def f():\n    from ..beta import assets\n")
    (root / "beta" / "assets.py").write_text("import tagqa_assets.alpha.assets\n")
    (root / "store.py").write_text("from tagqa_assets.beta import assets\n")
    graph = import_graph(root)
    assert stages(root) == {"alpha", "beta"}
    assert graph == {"alpha": {"beta"}, "beta": {"alpha"}, "store": {"beta"}}
    assert cycles(graph, stages(root)) == [["alpha", "beta", "alpha"]]
