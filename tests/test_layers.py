"""The package's layers, read from its source: core <- harness <- vision <- reproductions <- cli,
with private leaf modules at the bottom. A module may import its own layer or lower ones, never
a higher one; the import graph has no cycle; an underscore-private name is taken only from a
leaf; and every module is assigned a layer, so a new module has to say where it belongs.

Imports under ``if TYPE_CHECKING:`` are annotations only and do not count."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "mibounds"

LEAF, CORE, HARNESS, VISION, REPRODUCTIONS, CLI = range(6)
NAMES = ["leaf", "core", "harness", "vision", "reproductions", "cli"]
LEAVES = {
    "mibounds",  # the package root: its version, and lazy names
    "mibounds._checks",
    "mibounds._numerics",
    "mibounds._kernels",
    "mibounds._contrastive",
    "mibounds.provenance",
    "mibounds.records",
    "mibounds.harness.interface",
}
CORE_MODULES = {
    "arrays",
    "bounds",
    "polyview",
    "polyview_loss",
    "tiled",
    "critics",
    "gaussian",
    "sogclr",
    "barlow",
    "tasks",
    "classical",
    "catalogue",
    "plots",
}


def layer(module: str) -> int:
    if module in LEAVES:
        return LEAF
    parts = module.split(".")
    if len(parts) == 2 and parts[1] in CORE_MODULES:
        return CORE
    if module == "mibounds.__main__" or parts[1:2] == ["cli"]:
        return CLI
    top = {"harness": HARNESS, "estimation": HARNESS, "vision": VISION}
    if parts[1] in top:
        return top[parts[1]]
    if parts[1] == "reproductions":
        return REPRODUCTIONS
    raise AssertionError(f"{module} has no layer: add it to tests/test_layers.py")


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, list[str], int]]:
    """``(imported module, names taken from it, line)`` for every mibounds import that runs."""
    tree = ast.parse(path.read_text())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.split(".")[0] == "mibounds":
                        found.append((alias.name, [], child.lineno))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                if base.split(".")[0] != "mibounds":
                    continue
                taken = []
                for alias in child.names:
                    if f"{base}.{alias.name}" in known:  # a submodule: `from pkg import mod`
                        found.append((f"{base}.{alias.name}", [], child.lineno))
                    else:
                        taken.append(alias.name)
                found.append((base, taken, child.lineno))
            visit(child)

    visit(tree)
    return found


GRAPH = {name: imports(name, path, set(modules())) for name, path in modules().items()}


@pytest.mark.parametrize("name", sorted(GRAPH))
def test_imports_point_down_and_take_no_private_name_from_a_non_leaf(name: str) -> None:
    own = layer(name)
    for target, taken, line in GRAPH[name]:
        assert layer(target) <= own, (
            f"{name}:{line} imports {target}, a {NAMES[layer(target)]} module, from the "
            f"{NAMES[own]} layer"
        )
        if own == LEAF and target != "mibounds":
            assert layer(target) == LEAF, f"{name}:{line}: a leaf imports {target}"
        private = [t for t in taken if t.startswith("_")]
        assert not private or target in LEAVES, (
            f"{name}:{line} takes private {private} from {target}, which is not a leaf"
        )


def test_the_harness_interface_imports_nothing_from_the_package() -> None:
    assert GRAPH["mibounds.harness.interface"] == []


def test_the_import_graph_has_no_cycle() -> None:
    edges = {name: {t for t, _, _ in GRAPH[name] if t in GRAPH and t != name} for name in GRAPH}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycle = [*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])


def test_the_layer_test_sees_a_violation() -> None:
    # the checks above can fail: an upward import is seen as one
    assert (
        layer("mibounds.cli.harness") > layer("mibounds.harness.sweep") > layer("mibounds.bounds")
    )
    fake = imports("mibounds.bounds", PACKAGE / "cli" / "harness.py", set(GRAPH))
    assert any(layer(t) > CORE for t, _, _ in fake)
