"""Sweeps that lose nothing: resume after a failure, partial last lines, other grids, shards."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from mibounds.harness import load_results, run_sweep, sweep_from_dict, train
from mibounds.harness.results import (
    CorruptRecordWarning,
    append_records,
    read_records,
    repair_tail,
)

# one torch thread: many tiny steps (conftest.single_thread)
pytestmark = pytest.mark.usefixtures("single_thread")


def make_sweep(**run):
    return sweep_from_dict(
        {
            "name": "resume",
            "seeds": 2,
            "run": {
                "k": 4,
                "d": 1,
                "rho": 0.5,
                "steps": 3,
                "eval_batches": 2,
                "curve_every": 3,
                "critic": {"name": "separable", "hidden_dim": 4, "embed_dim": 2, "n_hidden": 1},
                **run,
            },
            "grid": {"objective": ["infonce", "nwj", "js"], "k": [4, 6]},
        }
    )


class FailsAfter:
    """A trainer that trains ``n`` groups, then fails as a crash mid-sweep would."""

    def __init__(self, n: int) -> None:
        self.n, self.calls = n, []

    def __call__(self, setting, seeds, **kwargs):
        if len(self.calls) == self.n:
            raise RuntimeError("injected failure")
        self.calls.append((setting.key(), seeds))
        return train(setting, seeds, **kwargs)


def test_interrupted_sweep_resumes_with_every_run_exactly_once(tmp_path):
    sweep, results = make_sweep(), tmp_path / "results.jsonl"
    first = FailsAfter(2)
    with pytest.raises(RuntimeError, match="injected failure"):
        run_sweep(sweep, results, progress=False, trainer=first)
    assert len(read_records(results)) == 4  # two groups of two seeds were saved
    second = FailsAfter(10)
    frame = run_sweep(sweep, results, progress=False, trainer=second)
    assert len(second.calls) == 4  # only the 4 settings not done were trained
    assert not {key for key, _ in first.calls} & {key for key, _ in second.calls}
    assert sorted(frame["run_key"]) == sorted(
        f"{s.key()}/{seed}" for s in sweep.settings for seed in sweep.seeds
    )
    assert frame["run_key"].is_unique and len(frame) == sweep.n_runs
    # a finished sweep re-run trains nothing
    third = FailsAfter(0)
    assert len(run_sweep(sweep, results, progress=False, trainer=third)) == sweep.n_runs


def test_missing_seeds_of_a_setting_train_alone(tmp_path):
    sweep, results = make_sweep(), tmp_path / "results.jsonl"
    full = run_sweep(sweep, tmp_path / "full.jsonl", progress=False)
    # keep only seed 1 of the first setting, as if seed 0 had been lost
    keep = [r for r in read_records(tmp_path / "full.jsonl") if r["run_key"].endswith("/1")][:1]
    append_records(results, keep)
    trainer = FailsAfter(10)
    frame = run_sweep(sweep, results, progress=False, trainer=trainer)
    assert trainer.calls[0] == (sweep.settings[0].key(), (0,))
    merged = frame.set_index("run_key")["estimate_mean"].sort_index()
    reference = full.set_index("run_key")["estimate_mean"].sort_index()
    assert merged.to_numpy() == pytest.approx(reference.to_numpy(), abs=1e-5)


def test_truncated_last_line_is_skipped_with_a_warning_then_repaired(tmp_path):
    sweep, results = make_sweep(), tmp_path / "results.jsonl"
    with pytest.raises(RuntimeError):
        run_sweep(sweep, results, progress=False, trainer=FailsAfter(2))
    whole = results.read_bytes()
    results.write_bytes(whole + b'{"run_key": "half-writ')  # a writer killed mid-line
    with pytest.warns(CorruptRecordWarning, match=r"skipped 1 line\(s\).*line\(s\) 5"):
        records = read_records(results)
    assert len(records) == 4  # no earlier run is dropped
    with pytest.warns(CorruptRecordWarning, match="removed a partial last line"):
        frame = run_sweep(sweep, results, progress=False)
    assert len(frame) == sweep.n_runs and frame["run_key"].is_unique
    assert results.read_bytes().startswith(whole)
    # a last record missing only its newline is kept, not cut
    results.write_bytes(whole.rstrip(b"\n"))
    assert repair_tail(results) == 0 and results.read_bytes() == whole


def test_corrupt_middle_line_is_reported_not_fatal(tmp_path):
    results = tmp_path / "r.jsonl"
    append_records(results, [{"run_key": "a", "x": 1.0}])
    with results.open("ab") as f:
        f.write(b"garbage\n")
    append_records(results, [{"run_key": "b", "x": float("nan")}])
    with pytest.warns(CorruptRecordWarning, match=r"line\(s\) 2"):
        frame = load_results(results)
    assert list(frame["run_key"]) == ["a", "b"] and frame["x"].isna().tolist() == [False, True]
    assert json.loads(results.read_text().splitlines()[-1])["x"] is None  # NaN written as null


def test_results_of_another_grid_are_refused_before_training(tmp_path):
    results = tmp_path / "results.jsonl"
    with pytest.raises(RuntimeError):
        run_sweep(make_sweep(), results, progress=False, trainer=FailsAfter(1))
    never = FailsAfter(0)
    with pytest.raises(ValueError, match="holds runs of a different grid"):
        run_sweep(make_sweep(steps=6), results, progress=False, trainer=never)
    assert never.calls == []


def test_shards_partition_the_grid_and_concatenate(tmp_path):
    sweep = make_sweep()
    parts = [sweep.shard(i, 3) for i in range(3)]
    keys = [s.key() for part in parts for s in part.settings]
    assert sorted(keys) == sorted(s.key() for s in sweep.settings) and len(set(keys)) == 6
    assert {p.grid_hash for p in parts} == {sweep.grid_hash}
    for i, part in enumerate(parts):
        run_sweep(part, tmp_path / f"part{i}.jsonl", progress=False)
    merged = tmp_path / "merged.jsonl"
    merged.write_bytes(b"".join((tmp_path / f"part{i}.jsonl").read_bytes() for i in range(3)))
    assert len(run_sweep(sweep, merged, progress=False, trainer=FailsAfter(0))) == sweep.n_runs
    with pytest.raises(ValueError, match="empty"):
        sweep.shard(6, 7)
    with pytest.raises(ValueError, match=r"must lie in \[0, 3\)"):
        sweep.shard(3, 3)


def test_duplicate_runs_are_kept_once(tmp_path):
    results = tmp_path / "r.jsonl"
    append_records(results, [{"run_key": "a", "v": 1}, {"run_key": "a", "v": 2}])
    with pytest.warns(UserWarning, match="1 run"):
        frame = load_results(results)
    assert frame["v"].tolist() == [1]


def test_parallel_workers_give_the_same_records(tmp_path):
    sweep = sweep_from_dict(
        {
            "name": "jobs",
            "seeds": 2,
            "run": {"k": 4, "d": 1, "rho": 0.5, "steps": 3, "eval_batches": 2, "curve_every": 3},
            "grid": {"objective": ["infonce", "nwj"]},
        }
    )
    serial = run_sweep(sweep, tmp_path / "a.jsonl", progress=False)
    parallel = run_sweep(sweep, tmp_path / "b.jsonl", progress=False, jobs=2)
    a = serial.set_index("run_key")["estimate_mean"].sort_index()
    b = parallel.set_index("run_key")["estimate_mean"].sort_index()
    # the same code, seeds and one torch thread in each process: bitwise the same
    assert list(a.index) == list(b.index) and (a.to_numpy() == b.to_numpy()).all()


def fails_on_nwj(setting, seeds, **kwargs):
    """A worker-side failure (module level, so spawned workers can unpickle it)."""
    if setting.objective == "nwj":
        raise RuntimeError("worker failed")
    return train(setting, seeds, **kwargs)


def test_a_failing_worker_stops_the_pool_and_keeps_finished_runs(tmp_path):
    results = tmp_path / "r.jsonl"
    with pytest.raises(RuntimeError, match="worker failed"):
        run_sweep(make_sweep(), results, progress=False, jobs=2, trainer=fails_on_nwj)
    assert not multiprocessing.active_children()  # no worker left running
    done = read_records(results) if results.exists() else []
    assert all(r["objective"] != "nwj" for r in done)
    frame = run_sweep(make_sweep(), results, progress=False)
    assert len(frame) == 12 and frame["run_key"].is_unique
