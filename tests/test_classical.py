"""Tests of mibounds.classical: cca_mi against closed-form Gaussian MI, canonical correlations
computed here by QR and SVD, its chi-square law at independence and affine invariance; ksg_mi
against a brute-force implementation of Kraskov et al.'s estimator 1 (ties included), against
known MIs, at independence, and its invariances; and bad input for both."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import digamma

from mibounds.classical import cca_mi, ksg_mi
from mibounds.tasks import TASKS, split_one_vs_rest


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def pair_of(name: str, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    task = TASKS[name]
    out = task.sample(n, generator=seeded(seed))
    x, y = split_one_vs_rest(out) if task.views is not None else out
    return x.numpy(), y.numpy()


def correlated(n: int, dim_x: int, dim_y: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian data with a random dependence between x and y."""
    g = np.random.default_rng(seed)
    z = g.standard_normal((n, dim_x + dim_y)) @ g.standard_normal((dim_x + dim_y,) * 2)
    return z[:, :dim_x], z[:, dim_x:]


# ------------------------------------------------------------------------------------- CCA


@pytest.mark.parametrize(
    "name", ["multinormal-dense-5-5-0.5", "multinormal-sparse-5-5-2-2.0", "views-normal-5-3-0.5"]
)
def test_cca_recovers_gaussian_mi(name: str) -> None:
    """n = 20000: bias about d_x d_y / (2n) <= 0.0013 nats and a standard deviation of 0.008
    (measured over 8 seeds); 0.035 is above 4 of them."""
    x, y = pair_of(name, 20_000, seed=1)
    assert abs(cca_mi(x, y) - TASKS[name].mi) < 0.035


def test_cca_is_the_sum_over_canonical_correlations() -> None:
    """r_i are the singular values of Q_x^T Q_y, Q the orthonormal bases of the centred data
    (Björck and Golub 1973), and I = -(1/2) sum log(1 - r_i^2)."""
    x, y = correlated(500, 3, 4, seed=2)
    q_x, _ = np.linalg.qr(x - x.mean(0))
    q_y, _ = np.linalg.qr(y - y.mean(0))
    r = np.linalg.svd(q_x.T @ q_y, compute_uv=False)
    assert cca_mi(x, y) == pytest.approx(-0.5 * np.log1p(-(r**2)).sum(), rel=1e-10)


def test_cca_is_invariant_to_invertible_affine_maps_of_each_side() -> None:
    x, y = correlated(300, 3, 2, seed=3)
    g = np.random.default_rng(4)
    a, b = g.standard_normal((3, 3)), g.standard_normal((2, 2))
    moved = cca_mi(x @ a + g.standard_normal(3), y @ b - 5.0)
    assert moved == pytest.approx(cca_mi(x, y), rel=1e-9)
    assert cca_mi(y, x) == pytest.approx(cca_mi(x, y), rel=1e-12)


def test_cca_at_independence_has_the_chi_square_law(single_thread) -> None:
    """Independent Gaussian blocks: 2 n I_hat -> chi^2 with d_x d_y = 9 degrees of freedom
    (Bartlett 1938), so I_hat is biased up by about d_x d_y / (2n). The mean of 200 draws of
    2 n I_hat has standard error sqrt(2 * 9 / 200) = 0.3; 1.2 is four of them. (One torch
    thread: the 6 x 6 Cholesky factorisations are tiny.)"""
    g = np.random.default_rng(5)
    n = 1000
    stats = [
        2 * n * cca_mi(g.standard_normal((n, 3)), g.standard_normal((n, 3))) for _ in range(200)
    ]
    assert abs(np.mean(stats) - 9) < 1.2


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(8, 60),
    dim_x=st.integers(1, 3),
    dim_y=st.integers(1, 3),
)
def test_cca_is_never_negative(seed: int, n: int, dim_x: int, dim_y: int) -> None:
    """Fischer's inequality det S <= det S_xx det S_yy (S positive definite) makes I_G >= 0."""
    x, y = correlated(n, dim_x, dim_y, seed)
    assert cca_mi(x, y) >= -1e-12


# ------------------------------------------------------------------------------------- KSG


def ksg_brute_force(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Kraskov et al. 2004, eq. 8, from the full distance matrices: eps_i is the k-th smallest
    joint max-norm distance to another point, n_x(i) counts j != i with d_x(i, j) < eps_i."""
    d_x = np.abs(x[:, None] - x[None]).max(-1)
    d_y = np.abs(y[:, None] - y[None]).max(-1)
    d = np.maximum(d_x, d_y)
    for m in (d, d_x, d_y):
        np.fill_diagonal(m, np.inf)
    eps = np.sort(d, axis=1)[:, k - 1]
    assert (eps > 0).all()
    n_x, n_y = (d_x < eps[:, None]).sum(1), (d_y < eps[:, None]).sum(1)
    return digamma(k) + digamma(len(x)) - np.mean(digamma(n_x + 1) + digamma(n_y + 1))


@pytest.mark.parametrize("k", [1, 3, 5])
def test_ksg_equals_brute_force_on_continuous_data(k: int) -> None:
    x, y = correlated(300, 2, 3, seed=6)
    assert ksg_mi(x, y, k, standardize=False) == pytest.approx(ksg_brute_force(x, y, k), abs=1e-12)


@pytest.mark.parametrize("k", [1, 3])
def test_ksg_counts_strictly_inside_the_radius_when_distances_tie(k: int) -> None:
    """Distinct points of an integer grid: many marginal distances equal eps_i exactly, and
    those points must not be counted (a count with <= gives another number on this data)."""
    cells = np.random.default_rng(7).choice(30 * 30, size=150, replace=False)
    x = (cells // 30).astype(float)[:, None]
    y = x + (cells % 30)[:, None]
    expected = ksg_brute_force(x, y, k)
    assert ksg_mi(x, y, k, standardize=False) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("name", "tolerance"),
    [
        # per-seed sd at n = 5000 (8 seeds): 0.015, 0.005, 0.007, 0.010, so the mean of 4
        # seeds has sd <= 0.0075; the tolerance is 4 of them, plus the measured bias of the
        # 0.1-noise task (-0.02: y's density jumps at the ends, which KSG smooths over)
        ("1v1-normal-0.75", 0.03),
        ("1v1-additive-0.75", 0.03),
        ("1v1-additive-0.1", 0.05),
        ("views-normal-1-4-0.9", 0.03),
    ],
)
def test_ksg_recovers_low_dimensional_mi(name: str, tolerance: float) -> None:
    estimates = [ksg_mi(*pair_of(name, 5000, seed)) for seed in range(20, 24)]
    assert abs(np.mean(estimates) - TASKS[name].mi) < tolerance


def test_ksg_at_independence_is_about_zero() -> None:
    """KSG 1 is nearly unbiased at independence; its sd at n = 2000 in 2 + 2 dimensions is
    0.011 (8 seeds), and 0.05 is above four of them."""
    g = np.random.default_rng(8)
    assert abs(ksg_mi(g.standard_normal((2000, 2)), g.standard_normal((2000, 2)))) < 0.05


def test_ksg_with_standardizing_is_invariant_to_per_coordinate_affine_maps() -> None:
    """Standardizing undoes x_j -> a_j x_j + b_j up to rounding (max-norm distances are
    symmetric, so a negative a_j is undone too); without it the scale matters."""
    x, y = correlated(1000, 2, 2, seed=9)
    scaled_x, scaled_y = x * np.array([100.0, -0.01]) + 3.0, y * np.array([-7.0, 2.0])
    base = ksg_mi(x, y)
    assert ksg_mi(scaled_x, scaled_y) == pytest.approx(base, rel=1e-9)
    assert ksg_mi(scaled_x, scaled_y, standardize=False) != pytest.approx(base, abs=1e-3)
    unit_x, unit_y = ((a - a.mean(0)) / a.std(0) for a in (x, y))
    assert ksg_mi(unit_x, unit_y, standardize=False) == pytest.approx(base, rel=1e-12)


def test_ksg_is_symmetric_and_ignores_sample_order_but_not_nonlinear_maps() -> None:
    """Swapping x and y or permuting samples leaves every count as it was. A monotone
    nonlinear map keeps the MI but moves the neighbours, so the estimate changes (measured:
    by about 0.02 nats here); KSG is consistent, not invariant."""
    x, y = correlated(1000, 1, 2, seed=10)
    base = ksg_mi(x, y)
    order = np.random.default_rng(11).permutation(1000)
    assert ksg_mi(y, x) == pytest.approx(base, abs=1e-12)
    assert ksg_mi(x[order], y[order]) == pytest.approx(base, abs=1e-12)
    assert abs(ksg_mi(np.exp(x), y) - base) > 1e-3


def test_ksg_workers_do_not_change_the_answer() -> None:
    x, y = correlated(500, 2, 2, seed=12)
    assert ksg_mi(x, y, workers=-1) == ksg_mi(x, y, workers=1)


# ------------------------------------------------------------------------------- bad input


ESTIMATORS = [cca_mi, ksg_mi]


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_one_dimensional_tensor_and_list_input_are_accepted(estimator) -> None:
    x, y = correlated(200, 1, 1, seed=13)
    reference = estimator(x, y)
    assert estimator(x[:, 0], y[:, 0]) == reference
    assert estimator(torch.from_numpy(x), torch.from_numpy(y[:, 0])) == reference
    assert estimator(x.tolist(), y.tolist()) == reference
    assert isinstance(reference, float)


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_bad_samples_are_rejected(estimator) -> None:
    x, y = correlated(50, 2, 2, seed=14)
    nan = x.copy()
    nan[3, 1] = math.nan
    cases = [
        ((x, y[:40]), "same number of samples"),
        ((nan, y), "1 non-finite entries"),
        ((x, np.full(y.shape, np.inf)), "y has 100 non-finite entries"),
        ((x > 0, y), "x must hold real numbers"),
        ((x, np.array(["a"] * 50)), "y must hold real numbers"),
        ((x, y + 1j), "y must hold real numbers"),
        ((x[None], y), r"x must have shape \(n, d\)"),
        ((np.zeros((50, 0)), y), r"x must have shape \(n, d\) with d >= 1"),
    ]
    for args, message in cases:
        with pytest.raises(ValueError, match=message):
            estimator(*args)


def test_cca_needs_more_samples_than_dimensions() -> None:
    x, y = correlated(5, 2, 3, seed=15)
    with pytest.raises(ValueError, match=r"n > d_x \+ d_y = 5"):
        cca_mi(x, y)
    assert math.isfinite(cca_mi(*correlated(6, 2, 3, seed=15)))


def test_ksg_rejects_bad_k_and_options_and_degenerate_samples() -> None:
    x, y = correlated(10, 1, 1, seed=16)
    for k in (0, 2.5, True):
        with pytest.raises(ValueError, match="k must be an integer >= 1"):
            ksg_mi(x, y, k)
    with pytest.raises(ValueError, match="n > k samples, got n = 10 and k = 10"):
        ksg_mi(x, y, 10)
    assert math.isfinite(ksg_mi(x, y, 9))
    with pytest.raises(ValueError, match="standardize must be a bool"):
        ksg_mi(x, y, standardize=1)
    with pytest.raises(ValueError, match="workers must be"):
        ksg_mi(x, y, workers=0)
    with pytest.raises(ValueError, match=r"x has constant coordinates \[1\]"):
        ksg_mi(np.hstack([x, np.ones_like(x)]), y)
    repeated = np.repeat(x[:3], 4, axis=0)
    with pytest.raises(ValueError, match="equal to at least k = 3 others"):
        ksg_mi(repeated, repeated)
