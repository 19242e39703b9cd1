"""Tests of mibounds.barlow: multi-view Barlow Twins (Ghosh, Agrawal et al. 2024) against a loop
reference, its reduction to Barlow Twins (Zbontar et al. 2021) at M = 2 with lambda = beta, the
zero invariance term of identical views, invariances of the standardised loss, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mibounds.barlow import MultiViewBarlowLoss, multiview_barlow, multiview_barlow_terms

TIGHT = {"rtol": 1e-10, "atol": 1e-12}  # float64 against float64 references


def randn(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()


def views(k: int, m: int, d: int, seed: int) -> torch.Tensor:
    """Views sharing a component, with per-dimension offsets and scales to standardise away."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(k, 1, d, generator=g, dtype=torch.float64)
    noise = torch.randn(k, m, d, generator=g, dtype=torch.float64)
    scale = torch.linspace(0.5, 3.0, d, dtype=torch.float64)
    return ((common + 0.6 * noise) * scale + 2.0).requires_grad_()


def grad_of(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (g,) = torch.autograd.grad(f, x)
    return g


# ------------------------------------------------------------------------- references


def ref_multiview_barlow(z: torch.Tensor, beta: float, eps: float = 1e-5) -> torch.Tensor:
    """Loops over views and dimensions: each view against the mean of the others' standardised
    embeddings, sum_i (1 - C_ii)^2 + beta sum_{i!=j} C_ij^2, averaged over views."""
    k, m, d = z.shape
    zhat = []
    for a in range(m):
        columns = []
        for i in range(d):
            v = z[:, a, i]
            var = ((v - v.mean()) ** 2).mean()
            columns.append((v - v.mean()) / torch.sqrt(torch.clamp(var, min=eps)))
        zhat.append(torch.stack(columns, 1))
    total = 0.0
    for a in range(m):
        others = sum(zhat[b] for b in range(m) if b != a) / (m - 1)
        for i in range(d):
            for j in range(d):
                c = (zhat[a][:, i] * others[:, j]).sum() / k
                total = total + ((1 - c) ** 2 if i == j else beta * c**2)
    return total / m


def barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float) -> torch.Tensor:
    """Zbontar et al. 2021's loss: affine-free batch norm of each branch (biased variance),
    C = z1n^T z2n / K, L = sum_i (1 - C_ii)^2 + lambda sum_{i!=j} C_ij^2."""
    z1n = (z1 - z1.mean(0)) / z1.var(0, unbiased=False).sqrt()
    z2n = (z2 - z2.mean(0)) / z2.var(0, unbiased=False).sqrt()
    c = z1n.T @ z2n / z1.shape[0]
    off = ~torch.eye(c.shape[0], dtype=torch.bool)
    return (1 - c.diagonal()).pow(2).sum() + lambd * c[off].pow(2).sum()


# ------------------------------------------------------------------------- the required facts


@pytest.mark.parametrize("m", [2, 3, 5])
def test_identical_views_have_zero_invariance(m):
    """Identical views: every zbar_-a equals zhat_a, so C^a_ii = mean_k zhat^2 = 1."""
    z = randn(16, 1, 6, seed=m).detach().expand(16, m, 6)
    invariance, redundancy = multiview_barlow_terms(z)
    assert abs(float(invariance)) < 1e-24
    assert float(redundancy) > 0.01  # the penalty still sees the random correlations
    torch.testing.assert_close(multiview_barlow(z, beta=0.3), 0.3 * redundancy, **TIGHT)


@pytest.mark.parametrize(("k", "m", "d"), [(2, 2, 1), (6, 2, 4), (5, 3, 3), (7, 4, 4)])
@pytest.mark.parametrize("beta", [0.0, 0.0051, 1.7])
def test_loss_and_gradient_match_the_loop_reference(k, m, d, beta):
    z = views(k, m, d, seed=k * m * d)
    loss = multiview_barlow(z, beta)
    expected = ref_multiview_barlow(z, beta)
    torch.testing.assert_close(loss, expected, **TIGHT)
    torch.testing.assert_close(grad_of(loss, z), grad_of(expected, z), **TIGHT)


@pytest.mark.parametrize("beta", [0.0051, 0.5])
def test_two_views_is_barlow_twins_with_lambda_equal_to_beta(beta):
    z = views(32, 2, 8, seed=1)
    loss = multiview_barlow(z, beta)
    expected = barlow_twins(z[:, 0], z[:, 1], lambd=beta)
    torch.testing.assert_close(loss, expected, **TIGHT)
    torch.testing.assert_close(grad_of(loss, z), grad_of(expected, z), **TIGHT)


# ------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    m=st.integers(2, 4),
    scale=st.floats(0.3, 5.0),
    shift=st.floats(-10.0, 10.0),
)
def test_standardisation_makes_the_loss_invariant(seed, m, scale, shift):
    """Per-view, per-dimension positive rescaling and shifts leave every C^a unchanged; so do
    permuting the samples jointly across views and permuting the views."""
    z = views(8, m, 3, seed=seed).detach()
    g = torch.Generator().manual_seed(seed)
    a = scale * (0.5 + torch.rand(1, m, 3, generator=g, dtype=torch.float64))
    transformed = z * a + shift
    reordered = z[torch.randperm(8, generator=g)][:, torch.randperm(m, generator=g)]
    base = multiview_barlow(z, 0.2)
    torch.testing.assert_close(multiview_barlow(transformed, 0.2), base, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(multiview_barlow(reordered, 0.2), base, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), m=st.integers(2, 5))
def test_each_cross_correlation_is_bounded_so_invariance_is_at_most_four_d(seed, m):
    """|C^a_ii| <= 1 by Cauchy-Schwarz (zhat_a has unit second moment, the mean of the others at
    most unit), so 0 <= invariance <= 4 D, and the redundancy is non-negative."""
    d = 3
    invariance, redundancy = multiview_barlow_terms(randn(6, m, d, seed=seed).detach())
    assert 0.0 <= float(invariance) <= 4 * d
    assert float(redundancy) >= 0.0


# ------------------------------------------------------------------------- shapes, dtypes, module


def test_leading_dimensions_are_batches():
    z = randn(3, 6, 3, 4, seed=2)
    loss = multiview_barlow(z, 0.1)
    assert loss.shape == (3,)
    for b in range(3):
        torch.testing.assert_close(loss[b], multiview_barlow(z[b], 0.1), **TIGHT)


def test_module_matches_the_function():
    z = views(10, 3, 5, seed=3)
    module = MultiViewBarlowLoss(beta=0.25)
    torch.testing.assert_close(module(z), multiview_barlow(z, 0.25), **TIGHT)
    assert "beta=0.25" in repr(module)


def test_constant_dimension_gives_finite_loss_and_gradient():
    z = views(8, 3, 4, seed=4).detach().clone()
    z[:, :, 2] = 1.5  # a collapsed dimension: variance 0, floored at eps
    z.requires_grad_()
    loss = multiview_barlow(z, 0.1)
    assert math.isfinite(float(loss.detach()))
    assert bool(torch.isfinite(grad_of(loss, z)).all())


def test_half_precision_is_computed_in_float32():
    z = views(16, 2, 4, seed=5).detach().float()
    loss16 = multiview_barlow(z.half(), 0.1)
    assert loss16.dtype == torch.float32
    torch.testing.assert_close(loss16, multiview_barlow(z, 0.1), rtol=2e-2, atol=2e-2)


# ------------------------------------------------------------------------- bad input

BAD_CALLS = {
    "beta < 0": lambda: multiview_barlow(torch.randn(4, 2, 3), beta=-0.1),
    "beta inf": lambda: MultiViewBarlowLoss(beta=math.inf),
    "beta NaN": lambda: MultiViewBarlowLoss(beta=math.nan),
    "M < 2": lambda: multiview_barlow(torch.randn(4, 1, 3), 0.1),
    "K < 2": lambda: multiview_barlow(torch.randn(1, 2, 3), 0.1),
    "2-D z": lambda: multiview_barlow(torch.randn(4, 3), 0.1),
    "NaN z": lambda: multiview_barlow(torch.full((4, 2, 3), math.nan), 0.1),
    "eps 0": lambda: multiview_barlow_terms(torch.randn(4, 2, 3), eps=0.0),
    "integer z": lambda: multiview_barlow(torch.ones(4, 2, 3, dtype=torch.long), 0.1),
}


@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_bad_input_raises_value_error(name):
    with pytest.raises(ValueError):
        BAD_CALLS[name]()


def test_error_messages_say_what_was_expected_and_what_came():
    with pytest.raises(ValueError, match=r"beta must be a finite number >= 0, got -0\.1"):
        MultiViewBarlowLoss(beta=-0.1)
    with pytest.raises(ValueError, match=r"M >= 2 views, got M = 1"):
        multiview_barlow(torch.randn(4, 1, 3), 0.1)
