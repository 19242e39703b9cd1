"""``mibounds estimate FILE``: one line, --json, --plot, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from mibounds.cli import main
from mibounds.tasks import TASKS

TASK = TASKS["multinormal-sparse-3-3-2-2.0"]  # I = 1.022 nats
FAST = ["--seeds", "1", "--steps", "400", "--no-progress", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    x, y = (t.numpy() for t in TASK.sample(1500, generator=torch.Generator().manual_seed(0)))
    np.savez(root / "pairs.npz", x=x, y=y, other=y)
    frame = pd.DataFrame(np.hstack([x, y]), columns=["a", "b", "c", "t0", "t1", "t2"])
    frame["label"] = "z"
    frame.to_csv(root / "table.csv", index=False)
    return root


def test_npz_gives_one_line(data, capsys) -> None:
    assert main(["estimate", str(data / "pairs.npz"), *FAST]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    found = re.fullmatch(
        r"I\(x; y\) ≈ (-?[0-9.]+) ± [0-9.]+ nats \(infonce, held-out, early stopping, "
        r"n=1500, 1 seed, \d+ s\)",
        out[0],
    )
    assert found, out[0]
    assert abs(float(found.group(1)) - TASK.mi) < 0.2  # 1,500 rows: seed 0 within 0.1


def test_csv_columns_json_and_plot(data, tmp_path, capsys) -> None:
    png = tmp_path / "curves.png"
    argv = ["estimate", str(data / "table.csv"), "--x", "a,b,c", "--y", "t", "--json"]
    assert main([*argv, "--plot", str(png), *FAST]) == 0
    record = json.loads(capsys.readouterr().out)
    assert {"value", "stderr", "estimator", "is_bound", "selection", "n", "seconds"} <= set(record)
    assert record["n"] == 1500 and record["estimator"] == "infonce" and record["is_bound"]
    assert record["selection"] == "early_stopping"
    assert png.stat().st_size > 10_000  # a real figure, not an empty file


def test_estimator_and_params_from_the_command_line(data, capsys) -> None:
    argv = ["estimate", str(data / "pairs.npz"), "--y", "other", "--estimator", "smile"]
    assert main([*argv, "--param", "clip=2.0", "--json", *FAST]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["estimator"] == "smile" and record["is_bound"] is False


BAD = [
    (["missing.npz"], "'missing.npz' is no such file"),
    (["pairs.npz", "--x", "inputs"], "has no array 'inputs' for x; it has ['other', 'x', 'y']"),
    (["table.csv", "--x", "label", "--y", "t"], "x has non-numeric columns ['label']"),
    (["table.csv", "--x", "a", "--y", "target"], "has no column 'target' nor columns target0"),
    (["pairs.npz", "--estimator", "geometric"], "cannot estimate from pairs x, y"),
    (["pairs.npz", "--batch-size", "1024"], "each part needs at least batch_size = 1024"),
    (["pairs.npz", "--seeds", "0"], "seeds must be an integer >= 1"),
]


@pytest.mark.parametrize(("args", "words"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_input_is_one_line_and_exit_2(data, monkeypatch, capsys, args, words) -> None:
    monkeypatch.chdir(data)
    assert main(["estimate", *args, "--no-progress"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mibounds estimate: error: "), captured.err
    assert words in lines[0] and captured.out == ""
