"""The reproductions' report logic on frames whose answers are known by construction: the
paper's Figure-2 sentence per reading and reference, the excess and its standard error, the
overshoot map's cells, and the packaged grids."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mibounds.harness.analytic import all_view_overshoot
from mibounds.reproductions import REPRODUCTIONS, grid_path, load_grid
from mibounds.reproductions.polyview_gaussian import (
    gap_changes,
    overshoot_cells,
    sentence_checks,
    with_readings,
)
from mibounds.reproductions.report import bound_violations, excess_over


def records(gaps: dict[tuple[str, str], tuple[float, float]], seeds: int = 4) -> pd.DataFrame:
    """Runs at M = 2 and M = 8 whose gaps to both references are given per (objective,
    negatives) as (gap at M = 2, gap at M = 8); seeds differ by +-0.01."""
    rows = []
    for (objective, negatives), (low, high) in gaps.items():
        label = objective if negatives == "same_view" else f"{objective}(negatives={negatives})"
        for m, gap in ((2, low), (8, high)):
            for seed in range(seeds):
                noise = 0.01 * (seed % 2 * 2 - 1)
                rows.append(
                    {
                        "objective": objective,
                        "objective_label": label,
                        "objective_params": {"negatives": negatives},
                        "k": 16,
                        "rho": 0.9,
                        "m": m,
                        "seed": seed,
                        "gap_one_vs_rest": gap + noise,
                        "gap_factor": 2 * gap + noise,
                    }
                )
    return with_readings(pd.DataFrame(rows))


def test_the_sentence_holds_only_where_multicrop_alone_fails_to_shrink():
    frame = records(
        {
            ("multicrop", "same_view"): (0.1, 0.3),  # grows
            ("arithmetic", "same_view"): (0.1, 0.2),  # grows: the sentence fails here
            ("multicrop", "all_views"): (0.1, 0.1),  # flat
            ("arithmetic", "all_views"): (0.3, 0.1),  # shrinks: the sentence holds here
            ("geometric", "all_views"): (0.3, 0.05),  # shrinks
        }
    )
    checks = sentence_checks(frame).set_index(["reading", "reference"])["holds"]
    assert checks[("all-view", "the one-vs-rest MI")] == True  # noqa: E712 (numpy bool)
    assert checks[("same-view", "the one-vs-rest MI")] == False  # noqa: E712
    changes = gap_changes(frame).set_index("objective_label")
    assert changes.loc["arithmetic(negatives=all_views)", "trend"] == "shrinks"
    assert changes.loc["multicrop(negatives=all_views)", "trend"] == "flat"
    assert changes.loc["arithmetic", "change"] == pytest.approx(0.1)


def test_the_sentence_is_undecided_without_multicrop():
    frame = records({("arithmetic", "all_views"): (0.3, 0.1)})
    assert sentence_checks(frame)["holds"].isna().all()


def excess_frame(means: list[float], sd: float, truth: float, is_bound: bool) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "setting_key": "s",
            "objective_label": "arithmetic",
            "k": 4,
            "m": 3,
            "rho": 0.9,
            "eval_batches": 100,
            "estimate_mean": means,
            "estimate_sd": sd,
            "true_mi": truth,
            "is_bound": is_bound,
        }
    )


def test_excess_and_its_standard_error_over_seeds_and_batches():
    frame = excess_frame([1.10, 1.14], sd=0.2, truth=1.0, is_bound=True)
    (row,) = excess_over(frame).itertuples()
    assert row.excess == pytest.approx(0.12)
    assert row.se == pytest.approx(0.2 / math.sqrt(2 * 100))  # sd / sqrt(R E)
    # 0.12 nats is 8.5 standard errors: a violated bound; estimates are never counted
    assert len(bound_violations(frame)) == 1
    assert bound_violations(frame.assign(is_bound=False)).empty
    assert bound_violations(excess_frame([1.0, 1.01], 0.2, 1.0, True)).empty


def test_overshoot_cells_star_what_exceeds_its_truth_beyond_three_standard_errors():
    analytic = all_view_overshoot((2,), (2, 16), (0.95,), scores_per_cell=2**16, seed=1)
    trained = excess_frame([1.6, 1.7], sd=0.1, truth=0.0, is_bound=False).assign(
        mi_one_vs_rest=1.466, mi_factor=1.498, k=2, m=16, rho=0.95
    )
    cells = overshoot_cells(analytic, trained).set_index(["panel", "k", "m"])
    # at K = 2 the optimal critic's all-view estimate is far below the MI at M = 2 and above it
    # at M = 16 (docs/polyview.md): the sign of the cells is the finding
    assert not cells.loc[("optimal critic vs the one-vs-rest MI", 2, 2), "over"]
    assert cells.loc[("optimal critic vs the one-vs-rest MI", 2, 16), "excess"] > 0
    trained_cell = cells.loc[("trained vs I(x_a; c)", 2, 16)]
    assert trained_cell["excess"] == pytest.approx(1.65 - 1.498) and trained_cell["over"]


def test_every_reproduction_ships_its_grid_and_unknown_names_are_refused():
    for name in REPRODUCTIONS:
        assert grid_path(name).is_file() and load_grid(name).name == name
    assert load_grid("eqco-toy", "eqco-toy-paper").settings[0].steps == 5000
    with pytest.raises(ValueError, match="no packaged grid 'nope'"):
        grid_path("nope")


# --------------------------------------------------------------------- the known-MI benchmark

KNOWN_MI = """name = "known-mi-tiny"
trainer = "estimate"
seeds = 2
[run]
n = 300
options = {steps = 20, eval_every = 10, patience = 2, batch_size = 32}
[[grid]]
task = ["1v1-normal-0.75", "student-identity-1-1-1"]
estimator = ["infonce", "cca"]
[[grid]]
task = ["views-normal-1-4-0.9"]
estimator = ["arithmetic", "ksg"]
"""


def test_known_mi_grid_covers_every_task_and_every_applicable_estimator():
    from mibounds.estimation import applicable_estimators
    from mibounds.harness.benchmark import CLASSICAL
    from mibounds.tasks import TASKS

    sweep = load_grid("known-mi")
    pairs = {(s.task, s.estimator) for s in sweep.settings}
    for name, task in TASKS.items():
        wanted = {*applicable_estimators(task.views is not None), *CLASSICAL}
        assert {e for t, e in pairs if t == name} == wanted, name
    assert {s.n for s in sweep.settings} == {5000} and len(sweep.seeds) >= 3
    assert load_grid("known-mi", quick=True).n_runs < sweep.n_runs / 10


def test_known_mi_writes_table_and_figure_and_resumes_without_redoing_runs(
    tmp_path, monkeypatch, single_thread
):
    from mibounds.cli import main
    from mibounds.harness.benchmark import train_group
    from mibounds.harness.interface import KINDS, Kind
    from mibounds.harness.results import read_records

    config, out = tmp_path / "tiny.toml", tmp_path / "out"
    config.write_text(KNOWN_MI)
    calls: list[tuple[str, tuple[int, ...]]] = []

    def dies_after_two(setting, seeds, **kwargs):
        if len(calls) == 2:
            raise RuntimeError("killed")
        calls.append((setting.label(), tuple(seeds)))
        return train_group(setting, seeds, **kwargs)

    args = ["reproduce", "known-mi", "--config", str(config), "--out", str(out), "--no-progress"]
    monkeypatch.setitem(
        KINDS, "estimate", Kind("estimate", KINDS["estimate"].config, dies_after_two)
    )
    with pytest.raises(RuntimeError, match="killed"):
        main([*args, "--debug"])
    first = read_records(out / "results.jsonl")
    assert len(first) == 4  # two (task, estimator) groups of two seeds, one line per seed
    monkeypatch.setitem(KINDS, "estimate", Kind("estimate", KINDS["estimate"].config, train_group))
    assert main(args) == 0
    records = read_records(out / "results.jsonl")
    assert records[:4] == first and len(records) == 12  # the finished lines were not redone
    assert len({r["run_key"] for r in records}) == 12
    table = (out / "known_mi.md").read_text()
    assert (out / "known_mi.png").stat().st_size > 0
    assert "Regenerate: `mibounds reproduce known-mi --config" in table
    assert "| views-normal-1-4-0.9 | 1.012 | — | " in table
    for r in records:  # each seed's sample is its own; the bias is against the task's MI
        assert r["bias"] == pytest.approx(r["value"] - r["true_mi"])
    cca = {r["seed"]: r["value"] for r in records if r["estimator"] == "cca"}
    assert len(set(cca.values())) == len(cca)


# ------------------------------------------------------------------- the digits reproductions

TINY_RUN = """
name = "{name}"
trainer = "vision"
seeds = 1  # one seed: the tables show means without sd, differences without standard errors

[run]
image_size = 8
subset = 16
batch_size = 8
proj_hidden = 16
proj_dim = 8
optimizer = "adamw"
lr = 1e-3
warmup_epochs = 0.0
flip_p = 0.0
workers = 0
probe_epochs = 2
knn_k = 5
epochs = 1
"""
TINY_GRIDS = {
    "digits-polyview": """
[[grid]]
objective = "simclr"
epochs = [1, 2]
[[grid]]
objective = {name = "arithmetic", negatives = "all_views"}
views = 4
[[grid]]
objective = "simclr"
epochs = 0
""",
    "digits-baselines": """
[[grid]]
objective = ["simclr", {name = "sogclr", gamma = 0.9}]
[[grid]]
objective = {name = "barlow_multiview", beta = 0.08}
proj_dim = 16
views = [2, 4]
[[grid]]
objective = {name = "barlow_multiview", beta = 0.0051}
proj_hidden = 32
proj_dim = 32
[[grid]]
objective = "simclr"
epochs = 0
""",
}


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("name", sorted(TINY_GRIDS))
def test_a_tiny_digits_reproduction_writes_its_table_and_figure(tmp_path, capsys, name):
    from mibounds.cli import main

    config = tmp_path / "tiny.toml"
    config.write_text(TINY_RUN.format(name=name) + TINY_GRIDS[name])
    common = ["reproduce", name, "--config", str(config), "--out", str(tmp_path / "out")]
    common += ["--device", "cpu", "--no-progress"]
    assert main([*common, "--dry-run"]) == 0
    listing = capsys.readouterr().out
    runs = load_grid(name, config).n_runs
    assert f"{runs} runs, {runs} pending" in listing and "epochs=0" in listing
    assert main(common) == 0
    table, figure = {
        "digits-polyview": ("vision_digits.md", "vision_digits.png"),
        "digits-baselines": ("vision_digits_baselines.md", "vision_digits_baselines.png"),
    }[name]
    text = (tmp_path / "out" / table).read_text()
    assert (tmp_path / "out" / figure).stat().st_size > 10_000
    assert "Untrained encoder (floor): kNN " in text and f"`mibounds reproduce {name}" in text
    assert f"]({figure})" in text  # the figure beside the table
    if name == "digits-polyview":
        # one comparison row: Arithmetic at M = 4 (K fixed, relative compute 2) against SimCLR
        # at 2 epochs; SimCLR's rows show 1 and 2 epochs at relative compute 1 and 2
        assert "| 2.0 | Arithmetic PVC | 4 | K fixed |" in text
        assert "| SimCLR | 2 | 8 | both | 2 | 2 | 4 |" in text
    else:
        assert "| SogCLR | 1 | 2 | 8 | 1 |" in text
        assert "D 16, beta 0.08 - D 32, beta 0.0051" in text
        assert "A --quick run" not in text and "has no SimCLR rows" in text
    assert main([*common, "--dry-run"]) == 0  # a rerun trains nothing
    assert f"{runs} runs, 0 pending" in capsys.readouterr().out


def test_the_digits_grids_are_the_scripts_runs():
    """The packaged grids hold the 60 + 3 and 33 + 3 runs of the two former scripts, 3 seeds."""
    polyview, baselines = load_grid("digits-polyview"), load_grid("digits-baselines")
    assert (polyview.n_runs, baselines.n_runs) == (63, 36) and polyview.seeds == (0, 1, 2)
    kxm = {(s.views, s.batch_size) for s in polyview.settings if s.views > 2}
    assert kxm == {(4, 32), (8, 32), (4, 16), (8, 8)}
    assert {s.objective_params.get("negatives") for s in polyview.settings if s.views > 2} == {
        "all_views",
        None,
    }
    barlow = {
        (s.proj_dim, s.objective_params["beta"], s.views)
        for s in baselines.settings
        if s.objective == "barlow_multiview"
    }
    assert barlow == {
        (64, 0.08, 2),
        (64, 0.08, 4),
        (1024, 0.0051, 2),
        (1024, 0.0051, 4),
        (64, 0.0051, 2),
    }
    for sweep in (polyview, baselines, load_grid("digits-polyview", quick=True)):
        assert sum(s.epochs == 0 for s in sweep.settings) == 1  # the floor


def _digits_records(rows: list[tuple[str, int, int, int, str]]) -> pd.DataFrame:
    """Records of trained digits runs: ``(objective, views, batch_size, seed, setting_key)``."""
    return pd.DataFrame(
        {
            "objective": objective,
            "views": views,
            "batch_size": batch,
            "seed": seed,
            "setting_key": key,
            "epochs": 1,
            "relative_compute": views / 2,
            "knn_top1": 0.9 + seed / 100,
            "linear_top1": 0.95,
            "wall_time_s": 1.0,
            "probe_seconds": 1.0,
            "final_loss": 1.0,
            "steps": 10,
            "config": {"objective_params": {}},
        }
        for objective, views, batch, seed, key in rows
    )


def test_digits_tables_list_runs_in_grid_order_and_count_seeds_per_setting():
    """Records come in the order runs finished (``--jobs 2`` interleaves them); the tables'
    rows must not, and two settings that differ only in a parameter (Barlow Twins' beta) are
    not one setting of twice the seeds."""
    from mibounds.reproductions.digits_polyview import digits_runs, seeds_per_setting

    rows = [
        (objective, views, 16 if views == 4 else 32, seed, key)
        for objective, views, key in [
            ("simclr", 2, "s"),
            ("sufficient_statistics", 4, "ss4"),
            ("multicrop", 4, "mc4"),
            ("barlow_multiview", 2, "bt-strong"),
            ("barlow_multiview", 2, "bt-weak"),
        ]
        for seed in (0, 1, 2)
    ]
    finished = _digits_records(rows[::-1])  # the reverse of the grid's order
    trained, _, _ = digits_runs(finished)
    listed = list(zip(trained["objective"], trained["seed"], strict=True))
    assert listed[:6] == [("simclr", 0), ("simclr", 1), ("simclr", 2)] + [
        ("multicrop", s) for s in range(3)
    ]
    assert [o for o, _ in listed[6:9]] == ["sufficient_statistics"] * 3
    assert seeds_per_setting(trained) == 3
    assert seeds_per_setting(trained.iloc[1:]) == 3 and seeds_per_setting(trained.iloc[:2]) == 2
