"""The documentation the code points at: every public estimator and loss has a runnable
``Example:`` (run by ``--doctest-modules``), and every ``docs/...md`` citation in the package,
the README and the notebooks names a page of ``docs/`` (and, with ``#anchor``, one of its
headings)."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ESTIMATOR_MODULES = (
    "arrays",
    "estimation",
    "bounds",
    "polyview",
    "tiled",
    "sogclr",
    "barlow",
    "classical",
    "critics",
    "gaussian",
    "tasks",
)
CITATION = re.compile(r"docs/([\w/-]+\.md)(#[\w-]+)?")


def public_callables() -> list[tuple[str, str]]:
    out = []
    for name in ESTIMATOR_MODULES:
        module = importlib.import_module(f"mibounds.{name}")
        for attr in module.__all__:
            obj = getattr(module, attr)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                out.append((name, attr))
    return out


@pytest.mark.parametrize(("module", "name"), public_callables())
def test_every_public_estimator_has_a_runnable_example(module: str, name: str) -> None:
    obj = getattr(importlib.import_module(f"mibounds.{module}"), name)
    doc = inspect.getdoc(obj) or ""
    if inspect.isclass(obj) and "Example:" not in doc and not doc.strip():
        pytest.fail(f"mibounds.{module}.{name} has no docstring")
    # dataclasses of tasks are data, their constructors are the examples
    if module == "tasks" and inspect.isclass(obj) and not hasattr(obj, "forward"):
        return
    assert "Example:" in doc and ">>> " in doc, f"mibounds.{module}.{name} has no Example"


def _slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces to -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {
        _slug(line.lstrip("#")) for line in page.read_text().splitlines() if line.startswith("#")
    }


def citing_files() -> list[Path]:
    files = sorted((ROOT / "mibounds").rglob("*.py"))
    return [*files, ROOT / "README.md", *sorted((ROOT / "notebooks").glob("*.ipynb"))]


@pytest.mark.parametrize("path", citing_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_docs_citation_resolves(path: Path) -> None:
    for match in CITATION.finditer(path.read_text()):
        page = ROOT / "docs" / match.group(1)
        assert page.is_file(), f"{path.name} cites docs/{match.group(1)}, which does not exist"
        if match.group(2):
            anchor = match.group(2)[1:]
            assert anchor in _anchors(page), f"{path.name} cites a missing heading: {match[0]}"


def test_no_file_cites_the_reference_digest_outside_the_product() -> None:
    for path in citing_files():
        assert "shared/reference" not in path.read_text(), path


def test_the_anchor_rule_is_githubs() -> None:
    assert (
        _slug(" Two readings of the paper's Algorithm 1")
        == "two-readings-of-the-papers-algorithm-1"
    )
