"""mibounds.estimate: the held-out protocol, its accuracy on known MI, and its errors.

Statistical checks fix every seed; the tolerances are stated at each test and are about twice
the spread seen over other seeds, so the checks fail when the procedure breaks (a critic that
memorises, an estimate read on training rows), not by chance.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

import mibounds
from mibounds.estimation import Estimate, estimate, split
from mibounds.tasks import TASKS

FAST = dict(steps=300, eval_every=25, patience=6, progress=False, device="cpu")
SPARSE = TASKS["multinormal-sparse-3-3-2-2.0"]  # I = 1.022 nats


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # many tiny steps: fastest on one thread; a second OpenMP thread on a loaded machine
    # mostly spins (tests/conftest.py's single_thread, for the module-scoped runs too)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sparse_data():
    return SPARSE.sample(2000, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def sparse_run(sparse_data):
    return estimate(*sparse_data, seeds=2, **FAST)


def test_known_mi_is_recovered_within_0_15_nats(sparse_run) -> None:
    # 2,000 rows, 300 steps: seeds 0-1 land within 0.08 of 1.022; a critic read on its own
    # training rows would overshoot, one that memorised would fall far below
    assert abs(sparse_run.value - SPARSE.mi) < 0.15
    assert sparse_run.value <= SPARSE.mi + 0.05  # a lower bound, up to the readout noise
    assert 0 < sparse_run.stderr < 0.1


def test_independent_samples_give_about_zero() -> None:
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(2000, 3, generator=g), torch.randn(2000, 2, generator=g)
    result = estimate(x, y, seeds=1, **FAST)
    assert abs(result.value) < 0.05  # InfoNCE of a useless critic is 0 on held-out rows


def test_the_result_names_its_procedure(sparse_run) -> None:
    r = sparse_run
    assert isinstance(r, Estimate) and r.estimator == "infonce" and r.is_bound
    assert r.selection == "early_stopping" and r.estimates == "pairwise"
    assert r.n == 2000 and r.seeds == (0, 1) and len(r.values) == 2 and r.seconds > 0
    assert r.value == pytest.approx(np.mean(r.values))
    assert r.stderr == pytest.approx(np.std(r.values, ddof=1) / math.sqrt(2))
    text = str(r)
    assert text.startswith("I(x; y) ≈ ") and "nats (infonce, held-out, early stopping" in text
    assert "n=2000, 2 seeds" in text and "\n" not in text
    assert r.to_dict()["steps"] == list(r.steps)


def test_curves_have_one_row_per_seed_and_checkpoint(sparse_run) -> None:
    curves = sparse_run.curves
    assert list(curves.columns) == ["step", "seed", "train", "held_out", "test"]
    assert set(curves["seed"]) == {0, 1}
    for seed, part in curves.groupby("seed"):
        assert (part["step"].diff().dropna() == 25).all()
        chosen = sparse_run.steps[list(sparse_run.seeds).index(seed)]
        best = part.loc[part["held_out"].idxmax()]
        assert best["step"] == chosen  # early stopping: the best validation checkpoint
        assert sparse_run.values[seed] == pytest.approx(best["test"])


def test_max_checkpoint_is_at_least_early_stopping_on_the_same_run(sparse_data, sparse_run):
    optimistic = estimate(*sparse_data, seeds=2, selection="max_checkpoint", **FAST)
    assert optimistic.selection == "max_checkpoint" and "optimistic" in str(optimistic)
    for es, mc in zip(sparse_run.values, optimistic.values, strict=True):
        assert mc >= es
    # the same training up to early stopping's end: identical curves there
    shared = sparse_run.curves.merge(optimistic.curves, on=["step", "seed"])
    assert len(shared) == len(sparse_run.curves)
    np.testing.assert_allclose(shared["held_out_x"], shared["held_out_y"], rtol=1e-6)


def test_the_test_rows_never_touch_training_or_selection(sparse_data) -> None:
    x, y = sparse_data
    _, _, test = split(len(x), 0)
    scrambled = y.clone()
    scrambled[test] = y[test[torch.randperm(len(test), generator=torch.Generator().manual_seed(3))]]
    a = estimate(x, y, seeds=1, **FAST)
    b = estimate(x, scrambled, seeds=1, **FAST)
    # training and validation identical; only the readout of the test rows changes
    pd.testing.assert_frame_equal(
        a.curves[["step", "train", "held_out"]], b.curves[["step", "train", "held_out"]]
    )
    assert a.steps == b.steps and b.value < 0.1 < a.value


def test_standardisation_makes_units_irrelevant(sparse_data) -> None:
    x, y = sparse_data
    a = estimate(x, y, seeds=1, **FAST)
    b = estimate(1000 * x + 5, y / 100 - 3, seeds=1, **FAST)
    assert b.value == pytest.approx(a.value, abs=2e-3)


def test_split_is_disjoint_and_covers_every_row() -> None:
    train, val, test = split(1000, 7)
    assert (len(train), len(val), len(test)) == (560, 140, 300)
    assert torch.cat([train, val, test]).sort().values.equal(torch.arange(1000))
    assert not split(1000, 8)[2].equal(test)  # each seed its own split


def test_views_give_the_one_vs_rest_mi() -> None:
    task = TASKS["views-normal-1-4-0.9"]  # I(x_a; X_rest) = 1.012 nats
    views = task.sample(2000, generator=torch.Generator().manual_seed(0))
    result = estimate(views=views, seeds=1, batch_size=64, **FAST)
    assert result.estimator == "arithmetic" and result.estimates == "one_vs_rest"
    assert str(result).startswith("I(x_a; X_rest)")
    assert abs(result.value - task.mi) < 0.15  # seed 0: within 0.05


def test_any_pairwise_catalogue_estimator_and_its_params(sparse_data) -> None:
    x, y = sparse_data
    result = estimate(x, y, estimator="eqco", params={"alpha": 512}, seeds=1, **FAST)
    assert result.estimator == "eqco" and not result.is_bound  # alpha > K - 1
    assert math.isfinite(result.value)
    mine = estimate(x, y, estimator="mine", seeds=1, **FAST)  # a stateful entry
    assert math.isfinite(mine.value) and not mine.is_bound


def test_the_fitted_critic_scores_raw_data(sparse_run, sparse_data) -> None:
    x, y = sparse_data
    scores = sparse_run.critic(x[:8], y[:8])
    assert scores.shape == (8, 8)
    assert scores.diagonal().mean() > scores.mean()  # positives score higher


def test_estimate_is_exported_lazily() -> None:
    assert mibounds.estimate is estimate and mibounds.Estimate is Estimate


X, Y = np.random.default_rng(0).standard_normal((2, 600, 2))
BAD = [
    ("estimator", dict(estimator="infonc"), "unknown estimator 'infonc' (did you mean 'infonce'?)"),
    ("views-estimator", dict(estimator="arithmetic"), "cannot estimate from pairs x, y; use one"),
    ("per-item", dict(estimator="sogclr"), "cannot estimate from pairs"),
    ("param", dict(estimator="eqco"), "'eqco' needs parameter 'alpha'"),
    ("selection", dict(selection="best"), "selection must be one of"),
    ("batch", dict(batch_size=512), "each part needs at least batch_size = 512 rows"),
    ("seeds", dict(seeds=0), "seeds must be an integer >= 1"),
    ("seed-list", dict(seeds=[1, 1]), "seeds must be distinct"),
    ("fraction", dict(test_fraction=1.0), "test_fraction must be a number in (0, 1)"),
    ("lr", dict(lr=0), "lr must be a number in (0, inf)"),
    ("critic", dict(critic="mlp"), "unknown critic 'mlp'"),
    ("hidden", dict(critic="bilinear", hidden=8), "has no hidden width"),
    ("device", dict(device="tpu"), "--device must be one of"),
    ("dtype", dict(dtype=torch.int32), "dtype must be a floating-point torch.dtype"),
]


@pytest.mark.parametrize(("kw", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_settings_are_refused_before_training(kw, words) -> None:
    with pytest.raises(ValueError) as info:
        estimate(X, Y, progress=False, **kw)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_too_few_rows_for_a_held_out_estimate() -> None:
    with pytest.raises(ValueError, match="too few for a held-out estimate"):
        estimate(X[:30], Y[:30], progress=False)
    with pytest.raises(ValueError, match="cannot estimate from views"):
        estimate(views=np.random.default_rng(0).standard_normal((100, 3, 2)), estimator="nwj")


def test_gaussian_marginals_make_monotone_maps_irrelevant(sparse_data) -> None:
    # ranks are unchanged by strictly increasing maps per coordinate, and so is the MI
    x, y = sparse_data
    a = estimate(x, y, seeds=1, marginals="gaussian", **FAST)
    b = estimate(x**3, torch.sinh(y), seeds=1, marginals="gaussian", **FAST)
    assert b.value == pytest.approx(a.value, abs=1e-4)
    assert abs(a.value - SPARSE.mi) < 0.15


def test_dtype_sets_the_critic_and_its_scaling(sparse_data) -> None:
    x, y = sparse_data
    result = estimate(x[:600], y[:600], seeds=1, dtype=torch.float64, **{**FAST, "steps": 25})
    assert {p.dtype for p in result.critic.parameters()} == {torch.float64}
    assert result.critic.mean_x.dtype == torch.float64
