"""Sources with data of their own in the harness: the known-MI tasks (``task``,
``task_finite``) and a source whose MI is unknown; configs that take no rho, records that carry
the task's MI (or None), sweeps and their dry runs."""

from __future__ import annotations

import math

import pytest
import torch

from mibounds import plots
from mibounds.cli import main
from mibounds.harness import SOURCES, RunConfig, register_source, run_sweep, sweep_from_dict, train
from mibounds.harness.sources import TaskStream, task_dims
from mibounds.records import check_record
from mibounds.tasks import TASKS

pytestmark = pytest.mark.usefixtures("single_thread")

TINY = {"k": 8, "steps": 6, "eval_batches": 2, "curve_every": 3}
CRITIC = {"name": "separable", "hidden_dim": 8, "embed_dim": 4, "n_hidden": 1}
PAIR, VIEWS = "multinormal-dense-2-2-0.5", "views-normal-1-4-0.9"


def task_config(task: str = PAIR, objective: str = "infonce", **values) -> RunConfig:
    return RunConfig.from_dict(
        {"objective": objective, "source": {"name": "task", "task": task}, "critic": CRITIC,
         **TINY, **values}
    )  # fmt: skip


def test_a_task_sets_d_m_and_the_true_mi_and_takes_no_rho():
    pair, views = task_config(), task_config(VIEWS, "arithmetic")
    assert (pair.d, pair.m, pair.rho, pair.mi) == (2, None, None, None)
    assert (views.d, views.m) == (1, 4)  # the task's dimension and views fill the unset fields
    assert task_config(d=2).key() == pair.key()  # d given as the task's is the same setting
    assert "task(task=multinormal-dense-2-2-0.5)" in pair.label()
    (record,) = train(pair, [0])
    check_record(record)
    assert record["true_mi"] == record["mi_pairwise"] == TASKS[PAIR].mi
    assert record["gap"] == pytest.approx(TASKS[PAIR].mi - record["estimate_mean"])
    assert record["rho_final"] is None and math.isnan(record["mi_one_vs_rest"])
    (views_record,) = train(views, [0])
    # arithmetic estimates the one-vs-rest MI; I(x_a; x_b) is recorded beside it
    assert views_record["true_mi"] == views_record["mi_one_vs_rest"] == TASKS[VIEWS].mi
    assert views_record["mi_pairwise"] == TASKS[VIEWS].mi_pairwise < TASKS[VIEWS].mi


def test_a_task_seed_draws_the_same_batches_beside_other_seeds():
    source = SOURCES["task"].build(task_config(), [0, 1], torch.device("cpu"))
    alone = SOURCES["task"].build(task_config(), [1], torch.device("cpu"))
    batch, held_out = source.train_batch(0), source.eval_batches(3)
    assert batch.x.shape == (2, 8, 2) and held_out.x.shape == (2, 3, 8, 2)
    assert torch.equal(batch.y[1], alone.train_batch(0).y[0])
    assert torch.equal(held_out.x[1], alone.eval_batches(3).x[0])
    assert not torch.equal(batch.x[1], held_out.x[1, 0])  # training and held-out streams differ


def test_finite_task_visits_its_n_samples_once_per_epoch():
    config = task_config(source={"name": "task_finite", "task": PAIR, "n": 16})
    source = SOURCES["task_finite"].build(config, [0], torch.device("cpu"))
    epoch = torch.cat([source.train_batch(s).indices for s in (0, 1)], dim=1)
    assert sorted(epoch[0].tolist()) == list(range(16))
    assert torch.equal(source.train_batch(2).x[0], source.data[0][0, source.order(1)[0, :8]])
    (record,) = train(config, [0])
    assert record["true_mi"] == TASKS[PAIR].mi and record["estimate_on"] == "held-out"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"source": "gaussian"}, "give exactly one of rho (correlation), mi (pairwise MI in nats)"),
        ({"rho": 0.5}, "source 'task' draws data of its own, so it takes no ['rho']"),
        ({"source": {"name": "task", "task": "multinormal-dense-5-5"}}, "unknown task 'multinorm"),
        ({"source": {"name": "task"}}, "data source 'task' needs parameter(s) ['task']"),
        ({"d": 3}, "d = 3, but source 'task' gives samples of dimension 2; leave d unset"),
        ({"m": 3}, "m = 3, but source 'task' gives pairs; leave m unset"),
        ({"objective": "arithmetic"}, "needs M >= 2 views per sample; source 'task' gives pairs"),
        ({"objective": "nwj", "source": {"name": "task", "task": VIEWS}}, "source 'task' gives m"),
        ({"source": {"name": "task_finite", "task": PAIR, "n": 20}}, "multiple of K = 8"),
        ({"objective": "sogclr"}, "needs a finite dataset source"),
    ],
)
def test_bad_task_configs_are_one_clear_line(values, message):
    with pytest.raises(ValueError) as err:
        task_config(**values)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_source_without_a_true_mi_records_none_and_still_plots(tmp_path):
    register_source("test-unknown-mi", TaskStream, required=("task",), dims=task_dims)
    try:
        config = task_config(source={"name": "test-unknown-mi", "task": PAIR})
        (record,) = train(config, [0])
    finally:
        SOURCES.pop("test-unknown-mi")
    check_record(record)
    for name in ("true_mi", "mi_pairwise", "gap", "relative_mi", "gap_one_vs_rest"):
        assert record[name] is None, name
    assert math.isfinite(record["estimate_mean"])
    import pandas as pd

    path = plots.save(plots.results_figure(pd.DataFrame([record])), tmp_path / "unknown.png")
    assert path.stat().st_size > 0


SWEEP = f"""name = "tasks"
seeds = 2
[run]
k = 8
steps = 6
eval_batches = 2
curve_every = 3
critic = {{name = "separable", hidden_dim = 8, embed_dim = 4, n_hidden = 1}}
[grid]
objective = ["infonce", "nwj"]
source = [{{name = "task", task = "{PAIR}"}}, {{name = "task", task = "1v1-additive-0.1"}}]
"""


def test_a_task_sweep_runs_resumes_and_dry_runs(tmp_path, capsys):
    config = tmp_path / "tasks.toml"
    config.write_text(SWEEP)
    assert main(["sweep", str(config), "--out", str(tmp_path / "out"), "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "4 settings, 8 runs, 8 pending" in listing
    assert "nwj k=8 task(task=1v1-additive-0.1)  seeds [0, 1]" in listing
    assert not (tmp_path / "out").exists()
    sweep = sweep_from_dict(
        {"name": "tasks", "seeds": 2, "run": {**TINY, "critic": CRITIC},
         "grid": {"objective": ["infonce", "nwj"],
                  "source": [{"name": "task", "task": t} for t in (PAIR, "1v1-additive-0.1")]}}
    )  # fmt: skip
    frame = run_sweep(sweep, tmp_path / "results.jsonl", progress=False)
    assert len(frame) == 8
    tasks = frame["source_params"].map(lambda p: p["task"])
    assert (frame["true_mi"] == tasks.map(lambda t: TASKS[t].mi)).all()
    assert (frame["gap"] - (frame["true_mi"] - frame["estimate_mean"])).abs().max() < 1e-12
    again = run_sweep(sweep, tmp_path / "results.jsonl", progress=False, trainer=_refuse)
    assert len(again) == 8  # everything was done: nothing trains again
    path = plots.save(plots.results_figure(frame, title="tasks"), tmp_path / "tasks.png")
    assert path.stat().st_size > 0


def _refuse(*args, **kwargs):
    raise AssertionError("a finished run trained again")
