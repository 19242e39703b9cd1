"""The ``mibounds`` command line end to end (subprocesses), on a tiny config."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import pytest

TINY = """
name = "tiny"
seeds = 2
[run]
k = 4
d = 1
rho = 0.5
steps = 4
eval_batches = 2
curve_every = 2
critic = {name = "separable", hidden_dim = 4, embed_dim = 2, n_hidden = 1}
[grid]
objective = ["infonce", "nwj", {name = "eqco", alpha = 8}]
k = [4, 6]
"""


def mibounds(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mibounds", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def keys(path) -> list[str]:
    return [json.loads(line)["run_key"] for line in path.read_text().splitlines()]


def test_sweep_shards_plot_end_to_end(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    whole = mibounds("sweep", str(config), "--out", "all", "--no-progress", "--plot", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    full = keys(tmp_path / "all" / "results.jsonl")
    assert len(full) == 12 == len(set(full))
    assert (tmp_path / "all" / "results.png").stat().st_size > 10_000

    for i in range(2):
        part = mibounds(
            "sweep",
            str(config),
            "--shard",
            f"{i}/2",
            "--out",
            "shards",
            "--no-progress",
            cwd=tmp_path,
        )
        assert part.returncode == 0, part.stderr
    parts = [tmp_path / "shards" / f"results-shard{i}of2.jsonl" for i in range(2)]
    assert sorted(keys(parts[0]) + keys(parts[1])) == sorted(full)  # concatenation = the grid
    assert not set(keys(parts[0])) & set(keys(parts[1]))

    again = mibounds("sweep", str(config), "--out", "all", "--no-progress", cwd=tmp_path)
    assert again.returncode == 0 and "12 runs" in again.stdout  # nothing new trained

    plot = mibounds("plot", "shards", "--out", "merged.pdf", cwd=tmp_path)
    assert plot.returncode == 0, plot.stderr
    assert (tmp_path / "merged.pdf").read_bytes().startswith(b"%PDF")


def test_bad_input_fails_before_training_with_one_clear_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text(TINY.replace("rho = 0.5", "rho = 1.5"))
    bad = mibounds("sweep", str(config), "--out", "o", cwd=tmp_path)
    assert bad.returncode == 2
    assert "rho must lie in [0, 1), got 1.5" in bad.stderr and "Traceback" not in bad.stderr
    assert not (tmp_path / "o").exists()

    config.write_text(TINY)
    shard = mibounds("sweep", str(config), "--shard", "2/2", cwd=tmp_path)
    assert shard.returncode == 2 and "0 <= i < n" in shard.stderr

    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "results.jsonl").write_text('{"run_key": "x", "grid_hash": "other"}\n')
    other = mibounds("sweep", str(config), "--out", "o", cwd=tmp_path)
    assert other.returncode == 2 and "different grid" in other.stderr


def test_help_explains_every_option():
    from mibounds.cli import harness

    parser = argparse.ArgumentParser(prog="mibounds")
    harness.register(parser.add_subparsers(dest="command"))
    for name in ("sweep", "reproduce", "plot", "analytic"):
        with pytest.raises(SystemExit):
            parser.parse_args([name, "--help"])
    for sub in parser._subparsers._group_actions[0].choices.values():
        for action in sub._actions:
            assert action.help, f"{sub.prog} {action.dest} has no help"
    args = parser.parse_args(["reproduce", "polyview-gaussian", "--quick", "--jobs", "2"])
    assert (args.name, args.quick, args.jobs, args.device) == ("polyview-gaussian", True, 2, "auto")
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "no-such-paper"])


# A SIGINT sent from an atexit hook lands where a late Ctrl-C does: after the command has
# returned, while the interpreter tears down. Left to Python it raises KeyboardInterrupt there
# (a traceback, or exit -2 once the handlers are reset); the program ignores it.
LATE_CTRL_C = """
import atexit, os, signal, sys
atexit.register(os.kill, os.getpid(), signal.SIGINT)
sys.argv = ["mibounds", *sys.argv[1:]]
from mibounds.cli import entry
entry()
"""


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["plot", "no-such-results.jsonl"], 2), (["--help"], 0)],
    ids=["a command's return", "argparse's exit"],
)
def test_ctrl_c_after_the_command_returned_changes_nothing(tmp_path, argv, code) -> None:
    out = subprocess.run(
        [sys.executable, "-c", LATE_CTRL_C, *argv], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == code, out.stderr
    assert "KeyboardInterrupt" not in out.stderr
