"""The house's layers, read from the source with `ast`: cebench is the leaf, synthetic_saes sits
below groundtruth, and no import goes round in a circle.

Every import counts, at module level or inside a function. `from a.b import c` is an import of
the module a.b.c where that module exists, else of a.b. Importing a.b.c also runs a/__init__,
but that implicit step is not an edge (a package's __init__ importing its own modules is how
packages are built).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cebench", "synthetic_saes", "groundtruth")
BELOW = {"cebench": (), "synthetic_saes": ("cebench",),
         "groundtruth": ("cebench", "synthetic_saes")}
"""package -> the project packages it may import (besides itself)."""


def _modules() -> dict[str, Path]:
    modules = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules that module `name` (file `path`) imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                       for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # import a.b.c of a non-module c
                target = target.rpartition(".")[0]
            if target.split(".")[0] in PACKAGES and target != name:
                found.add(target)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_the_graph_sees_the_imports_it_should(graph):
    assert "cebench.scores" in graph["cebench.core"]
    assert "groundtruth.metrics.registry" in graph["groundtruth.metrics.builtin"]
    assert "groundtruth.stats" in graph["groundtruth.lenses"]  # from groundtruth import stats


def test_no_import_runs_up_the_layers(graph):
    upward = sorted(f"{module} imports {target}" for module, targets in graph.items()
                    for target in targets
                    if target.split(".")[0] != module.split(".")[0]
                    and target.split(".")[0] not in BELOW[module.split(".")[0]])
    assert not upward, "\n".join(upward)


def test_no_import_goes_round_in_a_circle(graph):
    # Tarjan's strongly connected components: any component of two or more modules is a circle.
    index, low, on_stack, stack, circles = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    assert not circles, circles
