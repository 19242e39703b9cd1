"""Figures: seed bands, reference lines and labelled axes, on results of tiny real sweeps."""

from __future__ import annotations

import matplotlib
import pytest
import torch

matplotlib.use("Agg")

from mibounds import plots
from mibounds.harness import run_sweep, sweep_from_dict

CRITIC = {"name": "separable", "hidden_dim": 8, "embed_dim": 4, "n_hidden": 1}


def _run(tmp_path_factory, name, run, grid, seeds=2):
    torch.set_num_threads(1)
    sweep = sweep_from_dict({"name": name, "seeds": seeds, "run": run, "grid": grid})
    return run_sweep(sweep, tmp_path_factory.mktemp(name) / "r.jsonl", progress=False)


@pytest.fixture(scope="module")
def views(tmp_path_factory):
    run = {"d": 1, "k": 8, "rho": 0.9, "steps": 6, "eval_batches": 3, "curve_every": 2}
    grid = {"objective": ["multicrop", "arithmetic"], "m": [2, 4], "k": [8, 16]}
    return _run(tmp_path_factory, "views", {**run, "critic": CRITIC}, grid, seeds=3)


@pytest.fixture(scope="module")
def staircase(tmp_path_factory):
    run = {
        "d": 2,
        "k": 8,
        "mi_levels": [1.0, 2.0],
        "steps": 20,
        "eval_batches": 2,
        "curve_every": 2,
        "critic": CRITIC,
    }
    return _run(tmp_path_factory, "stairs", run, {"objective": ["infonce", "nwj"]}, seeds=1)


def lines(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_polyview_figure_has_both_references_with_units(views):
    fig = plots.polyview_figure(views[views["k"] == 8], loss_m=4, title="t")
    a, b, c, d, e, f = fig.axes[:6]
    assert a.get_ylabel() == "true MI (nats)" and b.get_xlabel() == "M (views per sample)"
    assert "one-vs-rest" in b.get_ylabel() and "I(x_a; c)" in c.get_ylabel()
    assert all("nats" in ax.get_ylabel() for ax in (b, c, d))
    assert "estimate" in e.get_ylabel() and "I(x_a; c) / estimate" == f.get_ylabel()
    truth = lines(a)["true one-vs-rest MI"].get_ydata()
    assert truth[1] > truth[0]  # I(x_a; X_rest) grows with M (docs/gaussian.md)
    # ... towards I(x_a; c) = -(1/2) log(1 - rho), its limit, drawn flat above it
    limit = lines(a)["I(x_a; c), the M -> inf limit"].get_ydata()
    assert limit[0] == limit[1] > truth[1]
    # log 8 = 2.08 is over 1.5 times the largest MI (1.15 nats): named in a note, not drawn
    assert "log K" not in lines(a) and "log K = 2.08" in a.texts[0].get_text()
    # a band (the sd over 3 seeds) per objective, and the tight-ratio reference line
    assert len(e.collections) >= 2 and "tight (ratio 1)" in lines(e)
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"multicrop", "arithmetic", "true one-vs-rest MI"} <= set(legend)


def test_overshoot_figure_marks_the_cells_beyond_three_standard_errors():
    import pandas as pd

    cells = pd.DataFrame(
        {
            "panel": ["p"] * 4,
            "rho": [0.9] * 4,
            "k": [2, 2, 4, 4],
            "m": [2, 8, 2, 8],
            "excess": [-0.5, 0.2, -0.1, 0.01],
            "over": [False, True, False, False],
        }
    )
    fig = plots.overshoot_figure(cells, title="t")
    texts = sorted(t.get_text() for t in fig.axes[0].texts)
    assert texts == sorted(["-0.50", "+0.20*", "-0.10", "+0.01"])


def test_polyview_figure_draws_log_k_when_it_is_near_the_mis(views):
    near = views[views["k"] == 8].assign(log_k=1.2)
    a = plots.polyview_figure(near, loss_m=4).axes[0]
    assert lines(a)["log K"].get_ydata()[0] == pytest.approx(1.2) and not a.texts


def test_facet_and_generic_figures(views, tmp_path):
    fig = plots.facet_figure(views, "m", "k", title="per K")
    assert len(fig.axes) == 4 and [ax.get_title() for ax in fig.axes[:2]] == ["K = 8", "K = 16"]
    fig = plots.results_figure(views)
    assert fig.axes[0].get_xlabel() == "M (views per sample)"
    assert "true pairwise MI" in lines(fig.axes[0])
    path = plots.save(fig, tmp_path / "f.png")
    assert path.stat().st_size > 10_000


def test_staircase_figure_tracks_the_true_levels(staircase):
    fig = plots.staircase_figure(staircase, span=4)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["infonce", "nwj"]
    truth = lines(fig.axes[0])["true MI"].get_ydata()
    assert list(truth[:10]) == [1.0] * 10 and list(truth[10:]) == [2.0] * 10
    assert fig.axes[0].get_ylabel() == "estimate (nats)"
    assert plots.results_figure(staircase).axes[0].get_title() == "infonce"
