"""The ``file`` data source: a user's samples for ``mibounds sweep``, split and standardised per
seed, with no true MI in its records."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from mibounds.cli import main
from mibounds.harness import RunConfig, train
from mibounds.harness.files import FileDataset
from mibounds.tasks import TASKS

TASK = TASKS["multinormal-sparse-3-3-2-2.0"]  # I = 1.022 nats


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    x, y = (t.numpy() for t in TASK.sample(1000, generator=torch.Generator().manual_seed(0)))
    np.savez(root / "pairs.npz", x=x, y=y[:, :2])  # d_x = 3, d_y = 2: padded to d = 3
    frame = pd.DataFrame(np.hstack([x, y]) * 10 + 3, columns=["a", "b", "c", "t0", "t1", "t2"])
    frame.to_csv(root / "table.csv", index=False)
    return root


def _config(path, **kw) -> RunConfig:
    params = {"path": str(path), **kw.pop("params", {})}
    base = dict(steps=200, k=50, eval_batches=8, curve_every=50)
    return RunConfig("infonce", source="file", source_params=params, **{**base, **kw})


def test_d_and_m_come_from_the_file_and_the_record_has_no_truth(files, single_thread) -> None:
    config = _config(files / "table.csv", params={"x": "a,b,c", "y": "t"})
    assert (config.d, config.m) == (3, None)
    (record,) = train(config, [0])
    assert record["true_mi"] is None and record["gap"] is None and record["relative_mi"] is None
    assert record["estimate_on"] == "held-out"
    assert 0.6 < record["estimate_mean"] < TASK.mi + 0.1  # 700 train rows, 200 steps: ~0.85


def test_held_out_rows_are_disjoint_from_the_train_rows_and_scaled_by_them(files) -> None:
    config = _config(files / "pairs.npz")
    assert config.d == 3  # max(3, 2)
    source = FileDataset(config, [0, 1], torch.device("cpu"))
    assert source.n_items == 700 and source.held[0].shape[:2] == (2, 300)
    for r in range(2):
        train_rows = {tuple(row) for row in source.data[0][r].tolist()}
        held_rows = {tuple(row) for row in source.held[0][r].tolist()}
        assert not train_rows & held_rows and len(train_rows) == 700
        assert source.data[0][r].std(0).sub(1).abs().max() < 1e-5  # the train rows' scaling
        assert source.data[1][r][:, 2].abs().max() == 0  # y padded with a zero column
    assert not torch.equal(source.held[0][0], source.held[0][1])  # each seed its own split
    batch = source.eval_batches(4)
    assert batch.x.shape == (2, 4, 50, 3)
    for seed_batches in batch.x:  # rows distinct within a batch: no sample its own negative
        for rows in seed_batches:
            assert len({tuple(row) for row in rows.tolist()}) == 50


BAD = [
    (dict(params={"x": "nope"}), "has no array 'nope' for x; it has ['x', 'y']"),
    (dict(params={"held_out": 0}), "held_out must be a number in (0, 1)"),
    (dict(params={"rows": 3}), "got unknown parameter 'rows'"),
    (dict(k=400), "each needs at least K = 400 rows"),
    (dict(rho=0.5), "takes no ['rho']"),
    (dict(m=3), "but source 'file' gives pairs"),
]


@pytest.mark.parametrize(("kw", "words"), BAD, ids=[w for _, w in BAD])
def test_bad_file_settings_are_refused(files, kw, words) -> None:
    with pytest.raises(ValueError) as info:
        _config(files / "pairs.npz", **kw)
    assert words in str(info.value)


def test_missing_file_is_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="is not a file"):
        _config(tmp_path / "none.npz")


def test_a_sweep_over_a_file(files, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(files)
    (tmp_path / "sweep.toml").write_text(
        'name = "mine"\nseeds = 1\n[run]\nsteps = 20\nk = 50\neval_batches = 2\n'
        'curve_every = 10\nsource = {name = "file", path = "pairs.npz"}\n'
        '[grid]\nobjective = ["infonce", "nwj"]\n'
    )
    out = tmp_path / "out"
    argv = ["sweep", str(tmp_path / "sweep.toml"), "--out", str(out), "--no-progress"]
    assert main([*argv, "--threads", "1"]) == 0
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert sorted(r["objective"] for r in records) == ["infonce", "nwj"]
    assert all(r["gap"] is None and r["true_mi"] is None for r in records)
