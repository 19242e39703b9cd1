"""Tests of mibounds.gaussian: the closed-form MIs against the log-det formula and the table of
docs/gaussian.md, Monte-Carlo checks of the analytic critics, the samplers' moments, seeds, dtypes
and devices, the staircase, independent float64 references for the log ratios, and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import multivariate_normal

from mibounds.gaussian import (
    equicorrelated_cov,
    gaussian_mi,
    mi_from_rho,
    multiview_log_ratio,
    one_vs_rest_log_ratio,
    one_vs_rest_mi,
    pair_log_ratio,
    rho_from_mi,
    sample_pairs,
    sample_views,
    staircase,
)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def full_views_cov(m: int, rho: float, d: int) -> torch.Tensor:
    """Covariance of all M d coordinates of M equicorrelated views, view-major: index a d + c."""
    return torch.kron(equicorrelated_cov(m, rho), torch.eye(d, dtype=torch.float64))


# ------------------------------------------------------------------------------- closed forms

# docs/gaussian.md: one-vs-rest MI, d = 1, to 4 decimals
TABLE = {
    0.5: {2: 0.1438, 4: 0.2350, 8: 0.2877, 10: 0.2989, 16: 0.3163, math.inf: 0.3466},
    0.9: {2: 0.8304, 4: 1.0119, 8: 1.0855, 10: 1.0992, 16: 1.1193, math.inf: 1.1513},
    0.99: {2: 1.9585, 4: 2.1592, 8: 2.2359, 10: 2.2500, 16: 2.2703, math.inf: 2.3026},
}


@pytest.mark.parametrize(
    ("rho", "m"), [(rho, m) for rho, row in TABLE.items() for m in row], ids=str
)
def test_one_vs_rest_mi_matches_the_table(rho: float, m: float) -> None:
    assert abs(one_vs_rest_mi(rho, 1, m) - TABLE[rho][m]) <= 0.5e-4


@pytest.mark.parametrize("rho", [0.0, 0.3, 0.8, 0.99])
@pytest.mark.parametrize("m", [2, 3, 5])
@pytest.mark.parametrize("d", [1, 3])
def test_one_vs_rest_and_pairwise_mi_equal_the_log_det_formula(rho: float, m: int, d: int) -> None:
    cov = full_views_cov(m, rho, d)
    view0, rest, view1 = range(d), range(d, m * d), range(d, 2 * d)
    assert one_vs_rest_mi(rho, d, m) == pytest.approx(gaussian_mi(cov, view0, rest), abs=1e-12)
    assert mi_from_rho(rho, d) == pytest.approx(gaussian_mi(cov, view0, view1), abs=1e-12)


@pytest.mark.parametrize("rho", [0.3, 0.9])
def test_one_vs_rest_limit_is_the_mi_with_the_common_factor(rho: float) -> None:
    """M -> inf gives I(x_a; c) with x_a = sqrt(rho) c + sqrt(1 - rho) eps: corr sqrt(rho)."""
    d = 2
    joint = torch.tensor([[1.0, math.sqrt(rho)], [math.sqrt(rho), 1.0]], dtype=torch.float64)
    cov = torch.kron(joint, torch.eye(d, dtype=torch.float64))
    limit = one_vs_rest_mi(rho, d, math.inf)
    assert limit == pytest.approx(gaussian_mi(cov, range(d), range(d, 2 * d)), abs=1e-12)
    assert limit - one_vs_rest_mi(rho, d, 10**6) == pytest.approx(0.0, abs=1e-5)


@settings(max_examples=60, deadline=None)
@given(rho=st.floats(0.0, 0.999), d=st.integers(1, 30), m=st.integers(2, 200))
def test_one_vs_rest_mi_grows_with_views_between_pairwise_and_common_factor(
    rho: float, d: int, m: int
) -> None:
    """Data processing (Cover & Thomas, ch. 2): x_b is a part of X_{\\a}, which is a part of
    X_{\\a} with one more view, and all of them are noisy copies of c, so
    I(x_a; x_b) <= I(x_a; X_{\\a}; M) <= I(x_a; X_{\\a}; M + 1) <= I(x_a; c)."""
    tol = 1e-9 * (1 + mi_from_rho(rho, d))
    chain = [
        mi_from_rho(rho, d),
        one_vs_rest_mi(rho, d, m),
        one_vs_rest_mi(rho, d, m + 1),
        one_vs_rest_mi(rho, d, math.inf),
    ]
    assert all(lo <= hi + tol for lo, hi in itertools.pairwise(chain))


def test_gaussian_mi_of_independent_blocks_is_zero_and_ignores_other_indices() -> None:
    cov = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
    assert gaussian_mi(cov, [0, 1], [3]) == pytest.approx(0.0, abs=1e-14)
    # a 2 x 2 block with correlation 0.6 embedded among unrelated coordinates (numpy input)
    cov = np.eye(4)
    cov[1, 3] = cov[3, 1] = 0.6
    assert gaussian_mi(cov, [1], [3]) == pytest.approx(mi_from_rho(0.6, 1), abs=1e-14)


@settings(max_examples=100, deadline=None)
@given(rho=st.floats(-0.9999, 0.9999), d=st.integers(1, 64))
def test_rho_from_mi_inverts_mi_from_rho(rho: float, d: int) -> None:
    """docs/gaussian.md: rho(I) = sqrt(1 - exp(-2 I / d)) inverts I(rho) = -(d/2) log(1 - rho^2) on
    rho >= 0; I depends on rho only through rho^2."""
    assert rho_from_mi(mi_from_rho(rho, d), d) == pytest.approx(abs(rho), rel=1e-9, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(mi=st.floats(0.0, 12.0), d=st.integers(1, 64))
def test_mi_from_rho_inverts_rho_from_mi(mi: float, d: int) -> None:
    assert mi_from_rho(rho_from_mi(mi, d), d) == pytest.approx(mi, rel=1e-6, abs=1e-12)


def test_staircase_levels_and_lengths() -> None:
    steps = staircase()
    assert steps.shape == (5 * 4000,)
    assert steps.dtype == torch.float64
    levels, counts = torch.unique_consecutive(steps, return_counts=True)
    assert levels.tolist() == [2.0, 4.0, 6.0, 8.0, 10.0]
    assert counts.tolist() == [4000] * 5
    assert staircase((1.0, 3.0), steps_per_level=2).tolist() == [1.0, 1.0, 3.0, 3.0]


def test_equicorrelated_cov_entries() -> None:
    cov = equicorrelated_cov(3, 0.4)
    expected = torch.tensor([[1.0, 0.4, 0.4], [0.4, 1.0, 0.4], [0.4, 0.4, 1.0]], dtype=cov.dtype)
    torch.testing.assert_close(cov, expected, rtol=0, atol=1e-15)


# --------------------------------------------------------------------------------- sampling


def test_pair_sample_moments() -> None:
    """x and y are N(0, I) with corr rho per coordinate and none across coordinates. N = 40000
    pairs: each sample covariance entry has standard error <= sqrt(2 / N) = 0.007; 0.03 is
    above 4 of them."""
    d, rho = 3, -0.7
    x, y = sample_pairs(40_000, d, rho, generator=seeded(1), dtype=torch.float64)
    joint = torch.cat([x, y], dim=-1)
    expected = torch.kron(
        torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64), torch.eye(d).double()
    )
    torch.testing.assert_close(joint.T.cov(), expected, rtol=0, atol=0.03)
    assert joint.mean(0).abs().max() < 0.03


@pytest.mark.parametrize(("m", "rho"), [(2, 0.5), (4, 0.9), (3, 0.0)])
def test_view_sample_covariance_matches_equicorrelated_cov(m: int, rho: float) -> None:
    """The covariance of all M d coordinates is equicorrelated_cov (x) I_d: views correlate by
    rho, coordinates not at all. N = 40000 samples: the standard error of an entry is at most
    sqrt(2 / N) = 0.007, so 0.03 is above 4 of them."""
    d = 3
    z = sample_views(40_000, m, d, rho, generator=seeded(2), dtype=torch.float64)
    assert z.shape == (40_000, m, d)
    sample_cov = z.flatten(-2).T.cov()
    torch.testing.assert_close(sample_cov, full_views_cov(m, rho, d), rtol=0, atol=0.03)


def test_same_seed_same_samples_other_seed_other_samples() -> None:
    a = sample_pairs(8, 3, 0.5, generator=seeded(7))
    b = sample_pairs(8, 3, 0.5, generator=seeded(7))
    c = sample_pairs(8, 3, 0.5, generator=seeded(8))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    v1 = sample_views(8, 3, 2, 0.5, generator=seeded(7))
    assert torch.equal(v1, sample_views(8, 3, 2, 0.5, generator=seeded(7)))
    assert not torch.equal(v1, sample_views(8, 3, 2, 0.5, generator=seeded(8)))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_samplers_respect_dtype_and_device(dtype: torch.dtype) -> None:
    x, y = sample_pairs(4, 3, 0.5, generator=seeded(0), device="cpu", dtype=dtype)
    z = sample_views(4, 3, 2, 0.5, generator=seeded(0), device=torch.device("cpu"), dtype=dtype)
    for t in (x, y, z):
        assert t.dtype == dtype
        assert t.device == torch.device("cpu")
    if dtype != torch.float64:  # half precision samples are float32 draws, rounded
        x32, _ = sample_pairs(4, 3, 0.5, generator=seeded(0))
        assert torch.equal(x, x32.to(dtype))


def test_samplers_place_samples_on_the_requested_device() -> None:
    """Samples are drawn on the generator's device and moved, so the target device is free (the
    meta device stands in for an accelerator on this CPU-only machine)."""
    x, y = sample_pairs(4, 3, 0.5, generator=seeded(0), device="meta")
    z = sample_views(4, 3, 2, 0.5, device="meta", dtype=torch.float64)
    assert x.device.type == y.device.type == z.device.type == "meta"
    assert z.shape == (4, 3, 2) and z.dtype == torch.float64


# ---------------------------------------------------------------------- analytic log ratios


def test_pair_log_ratio_expectation_is_the_mi() -> None:
    """E[f*(x, y)] over positive pairs is I(x; y) (f* = log p(y|x)/p(y)). d = 5 at 2 nats:
    Var[f*] = d rho^2 = 2.75 for Gaussian pairs, so N = 20000 positives give a standard error
    of 0.012 (checked below); the mean must lie within 4 of them."""
    d, mi = 5, 2.0
    rho = rho_from_mi(mi, d)
    x, y = sample_pairs(20_000, d, rho, generator=seeded(3), dtype=torch.float64)
    scores = pair_log_ratio(x.view(400, 50, d), y.view(400, 50, d), rho)
    positives = scores.diagonal(dim1=-2, dim2=-1).flatten()
    se = positives.std().item() / math.sqrt(positives.numel())
    assert se < 0.015
    assert abs(positives.mean().item() - mi) <= 4 * se


@pytest.mark.parametrize("m", [2, 5])
def test_one_vs_rest_log_ratio_expectation_is_the_one_vs_rest_mi(m: int) -> None:
    """E[F[a, i, i]] is I(x_a; X_{\\a}). d = 3, rho = 0.8 (1.5 and 2.1 nats). The views of one
    sample are correlated, so the standard error is taken over the N = 16000 per-sample means
    over views, which are i.i.d.: their sd is 1.1-1.4, the SE about 0.01 (checked below), and
    the mean must lie within 4 of them."""
    d, rho = 3, 0.8
    z = sample_views(16_000, m, d, rho, generator=seeded(4), dtype=torch.float64)
    F = one_vs_rest_log_ratio(z.view(320, 50, m, d), rho)  # (320, M, 50, 50)
    per_sample = F.diagonal(dim1=-2, dim2=-1).mean(-2).flatten()  # mean over views a
    se = per_sample.std().item() / math.sqrt(per_sample.numel())
    assert se < 0.015
    assert abs(per_sample.mean().item() - one_vs_rest_mi(rho, d, m)) <= 4 * se


def test_pair_log_ratio_matches_scipy_densities() -> None:
    """log p(x, y) - log p(x) - log p(y) with scipy's multivariate normal, float64, every pair."""
    d, rho, k = 2, -0.6, 4
    x, y = sample_pairs(k, d, rho, generator=seeded(5), dtype=torch.float64)
    joint = multivariate_normal(np.zeros(2 * d), full_pairs_cov(rho, d))
    marginal = multivariate_normal(np.zeros(d), np.eye(d))
    expected = np.array(
        [
            [
                joint.logpdf(np.concatenate([x[i], y[j]]))
                - marginal.logpdf(x[i].numpy())
                - marginal.logpdf(y[j].numpy())
                for j in range(k)
            ]
            for i in range(k)
        ]
    )
    np.testing.assert_allclose(pair_log_ratio(x, y, rho).numpy(), expected, rtol=1e-10, atol=1e-10)


def full_pairs_cov(rho: float, d: int) -> np.ndarray:
    return np.kron(np.array([[1.0, rho], [rho, 1.0]]), np.eye(d))


@pytest.mark.parametrize(("m", "rho"), [(2, 0.7), (3, 0.5), (4, 0.95)])
def test_one_vs_rest_log_ratio_matches_scipy_densities(m: int, rho: float) -> None:
    """F[a, i, j] = log p(x_{i,a}, X_{j,\\a}) - log p(x_{i,a}) - log p(X_{j,\\a}) from the full
    (M d)-dimensional Gaussian density (scipy, float64): independent of the conditional-Gaussian
    formula the library uses."""
    k, d = 3, 2
    z = sample_views(k, m, d, rho, generator=seeded(6), dtype=torch.float64).numpy()
    cov = full_views_cov(m, rho, d).numpy()
    joint = multivariate_normal(np.zeros(m * d), cov)
    one = multivariate_normal(np.zeros(d), np.eye(d))
    rest = multivariate_normal(np.zeros((m - 1) * d), cov[d:, d:])  # exchangeable views
    expected = np.empty((m, k, k))
    for a in range(m):
        others = [b for b in range(m) if b != a]
        for i in range(k):
            for j in range(k):
                tail = z[j, others].ravel()
                expected[a, i, j] = (
                    joint.logpdf(np.concatenate([z[i, a], tail]))
                    - one.logpdf(z[i, a])
                    - rest.logpdf(tail)
                )
    F = one_vs_rest_log_ratio(torch.from_numpy(z), rho)
    np.testing.assert_allclose(F.numpy(), expected, rtol=1e-9, atol=1e-9)


def test_multiview_log_ratio_is_the_pair_critic_between_views() -> None:
    z = sample_views(4, 3, 2, 0.6, generator=seeded(9), dtype=torch.float64)
    S = multiview_log_ratio(z, 0.6)
    assert S.shape == (4, 3, 4, 3)
    for a in range(3):
        for b in range(3):
            torch.testing.assert_close(S[:, a, :, b], pair_log_ratio(z[:, a], z[:, b], 0.6))


def test_log_ratios_take_leading_batch_dims_and_upcast_half() -> None:
    z = sample_views(2 * 3 * 4, 3, 2, 0.5, generator=seeded(10), dtype=torch.float64)
    z = z.view(2, 3, 4, 3, 2)
    F, S = one_vs_rest_log_ratio(z, 0.5), multiview_log_ratio(z, 0.5)
    P = pair_log_ratio(z[..., 0, :], z[..., 1, :], 0.5)
    assert F.shape == (2, 3, 3, 4, 4) and S.shape == (2, 3, 4, 3, 4, 3) and P.shape == (2, 3, 4, 4)
    for idx in np.ndindex(2, 3):
        torch.testing.assert_close(F[idx], one_vs_rest_log_ratio(z[idx], 0.5))
        torch.testing.assert_close(S[idx], multiview_log_ratio(z[idx], 0.5))
        torch.testing.assert_close(P[idx], pair_log_ratio(z[idx][:, 0], z[idx][:, 1], 0.5))
    assert one_vs_rest_log_ratio(z.half(), 0.5).dtype == torch.float32
    assert pair_log_ratio(z[..., 0, :].bfloat16(), z[..., 1, :].bfloat16(), 0.5).dtype == (
        torch.float32
    )


# -------------------------------------------------------------------------------- bad input

X = torch.zeros(4, 3)
Z = torch.zeros(4, 3, 2)
BAD = {
    "rho = 1": (lambda: mi_from_rho(1.0, 2), "rho must lie in \\(-1, 1\\)"),
    "rho nan": (lambda: sample_pairs(4, 2, math.nan), "rho must lie"),
    "negative views rho": (lambda: one_vs_rest_mi(-0.1, 2, 3), "rho must lie in \\[0, 1\\)"),
    "views rho = 1": (lambda: sample_views(4, 3, 2, 1.0), "rho must lie in \\[0, 1\\)"),
    "cov rho": (lambda: equicorrelated_cov(3, -0.2), "rho must lie in \\[0, 1\\)"),
    "d = 0": (lambda: rho_from_mi(1.0, 0), "d must be an integer >= 1"),
    "negative mi": (lambda: rho_from_mi(-1.0, 2), "mi must be a finite number >= 0"),
    "mi too large": (lambda: rho_from_mi(1000.0, 1), "needs rho = 1"),
    "m = 1": (lambda: one_vs_rest_mi(0.5, 2, 1), "m must be an integer >= 2 or math.inf"),
    "m float": (lambda: one_vs_rest_mi(0.5, 2, 2.5), "m must be an integer >= 2"),
    "k = 1": (lambda: sample_pairs(1, 2, 0.5), "k must be an integer >= 2"),
    "views m = 1": (lambda: sample_views(4, 1, 2, 0.5), "m \\(views per sample\\)"),
    "int dtype": (lambda: sample_pairs(4, 2, 0.5, dtype=torch.int64), "floating-point"),
    "steps": (lambda: staircase(steps_per_level=0), "steps_per_level must be"),
    "levels": (lambda: staircase(levels=()), "levels must be a non-empty"),
    "pair shapes": (lambda: pair_log_ratio(X, torch.zeros(5, 3), 0.5), "same shape"),
    "pair K = 1": (lambda: pair_log_ratio(X[:1], X[:1], 0.5), "needs K >= 2, got K = 1"),
    "pair 1-D": (lambda: pair_log_ratio(X[0], X[0], 0.5), "must have shape \\(..., K, d\\)"),
    "pair ints": (lambda: pair_log_ratio(X.long(), X.long(), 0.5), "floating-point"),
    "views M = 1": (lambda: one_vs_rest_log_ratio(Z[:, :1], 0.5), "needs M >= 2, got M = 1"),
    "views 2-D": (lambda: multiview_log_ratio(X, 0.5), "must have shape \\(..., K, M, d\\)"),
    "views rho < 0": (lambda: multiview_log_ratio(Z, -0.5), "rho must lie in \\[0, 1\\)"),
    "cov not square": (lambda: gaussian_mi(torch.eye(3)[:2], [0], [1]), "square"),
    "cov asymmetric": (lambda: gaussian_mi(torch.tensor([[1, 0.5], [0, 1]]), [0], [1]), "symm"),
    "cov not PD": (lambda: gaussian_mi(torch.ones(2, 2), [0], [1]), "positive definite"),
    "overlap": (lambda: gaussian_mi(torch.eye(3), [0, 1], [1]), "disjoint"),
    "index range": (lambda: gaussian_mi(torch.eye(3), [0], [3]), "distinct indices in \\[0, 3\\)"),
    "empty index": (lambda: gaussian_mi(torch.eye(3), [], [1]), "non-empty"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_value_error_saying_what_was_expected(case: str) -> None:
    fn, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        fn()
