"""The teaching notebooks under ``notebooks/``: exactly the four expected ones, committed with
their outputs stripped, valid, on the ``python3`` kernel, and written against the public API only.

CI also *executes* every notebook: ``--nbmake`` in ``setup.cfg``'s ``[tool:pytest]`` makes
``python -m pytest`` collect ``notebooks/*.ipynb`` as tests that fail if a cell raises.
"""

from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = (
    "01_bounds_on_gaussians.ipynb",
    "02_poly_view.ipynb",
    "03_images.ipynb",
    "04_your_own_data.ipynb",
)


def load(name: str) -> dict:
    return json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))


def code_cells(notebook: dict) -> list[tuple[int, str]]:
    """``(cell index, source)`` of every code cell, with IPython magics and shell lines
    (``%...``, ``!...``) blanked so that the rest parses as Python."""
    out = []
    for n, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        lines = source.split("\n")
        python = ["" if line.lstrip().startswith(("%", "!")) else line for line in lines]
        out.append((n, "\n".join(python)))
    return out


def output_problems(notebook: dict) -> list[str]:
    """Why a notebook is not stripped: each code cell with outputs or an execution count."""
    problems = []
    for n, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {n} has {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {n} has execution_count {cell['execution_count']}")
    return problems


def _private(name: str) -> bool:
    """``_x`` is private; dunders (``__file__``) are not."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_names(source: str) -> list[str]:
    """Private names a piece of code reaches: modules or names imported from ``mibounds`` with a
    component starting with ``_`` (``from mibounds.x import _y``, ``import mibounds._checks``),
    and any private attribute access (``mibounds.x._y``, ``gaussian._check_layout``; notebooks
    teach public interfaces, so a private attribute of anything counts)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "mibounds":
            module = node.module.split(".")
            for alias in node.names:
                if any(map(_private, [*module, alias.name])):
                    found.append(f"from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "mibounds" and any(map(_private, parts)):
                    found.append(f"import {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            found.append(f"{ast.unparse(node)} (line {node.lineno})")
    return found


def test_exactly_the_expected_notebooks():
    assert tuple(sorted(p.name for p in NOTEBOOKS.glob("*.ipynb"))) == EXPECTED


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_valid_and_on_the_python3_kernel(name):
    nbformat.validate(nbformat.read(NOTEBOOKS / name, as_version=4))
    assert load(name)["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_is_committed_without_outputs(name):
    assert output_problems(load(name)) == [], (
        f"{name} is committed with outputs; strip them (e.g. `jupyter nbconvert "
        f"--clear-output --inplace notebooks/{name}`)"
    )


def test_output_check_catches_an_executed_notebook():
    notebook = copy.deepcopy(load(EXPECTED[0]))
    n, _ = code_cells(notebook)[0]
    notebook["cells"][n]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "1\n"}]
    notebook["cells"][n]["execution_count"] = 1
    assert output_problems(notebook) == [
        f"cell {n} has 1 output(s)",
        f"cell {n} has execution_count 1",
    ]


@pytest.mark.parametrize("name", EXPECTED)
def test_notebook_uses_only_public_names(name):
    cells = code_cells(load(name))
    assert cells, f"{name} has no code cells"
    found = {n: names for n, source in cells if (names := private_names(source))}
    assert found == {}, f"{name} reaches private names (cell: names): {found}"


@pytest.mark.parametrize(
    "source",
    [
        "from mibounds.gaussian import _check_layout",
        "from mibounds._checks import check_at_least",
        "import mibounds._checks",
        "import mibounds.bounds\nmibounds.bounds._positives(s)",
        "from mibounds import gaussian\ngaussian._between_all_views(f, z)",
    ],
)
def test_private_name_check_catches_private_access(source):
    assert private_names(source) != []


def test_private_name_check_accepts_public_code():
    source = (
        "import mibounds.gaussian\nfrom mibounds import bounds\n"
        "from mibounds.vision.training import train\n"
        "x = bounds.infonce(mibounds.gaussian.pair_log_ratio(a, b, 0.5))\nprint(x.__class__)"
    )
    assert private_names(source) == []
