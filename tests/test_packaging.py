"""A wheel of the package, installed outside the checkout, reproduces from its own grids: the
grids ship as package data (importlib.resources), not as files beside a source checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The package built as a wheel and installed (without dependencies: those of this
    environment serve) into a directory of its own."""
    work = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run([*build, "-w", str(work), str(ROOT)], check=True, capture_output=True)
    wheel = next(work.glob("mibounds-*.whl"))
    site = work / "site"
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site)]
    subprocess.run([*install, str(wheel)], check=True, capture_output=True)
    return site


def run(site: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_wheel_reproduces_from_its_own_grids_outside_the_checkout(installed, tmp_path):
    where = run(installed, "-c", "import mibounds; print(mibounds.__file__)", cwd=tmp_path)
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stderr
    names = ("eqco-toy", "polyview-gaussian", "poole-staircase", "sogclr-gaussian")
    for name in (*names, "digits-polyview", "digits-baselines"):
        dry = run(
            installed, "-m", "mibounds", "reproduce", name, "--quick", "--dry-run", cwd=tmp_path
        )
        assert dry.returncode == 0, dry.stderr
        assert "pending" in dry.stdout
    quick = run(
        installed, "-m", "mibounds", "reproduce", "eqco-toy", "--quick", "--out", "q",
        "--no-progress", "--config", "eqco-toy", cwd=tmp_path,
    )  # fmt: skip
    assert quick.returncode == 0, quick.stderr
    table = (tmp_path / "q" / "eqco_toy.md").read_text()
    assert "mibounds/reproductions/grids/eqco-toy.toml" in table
