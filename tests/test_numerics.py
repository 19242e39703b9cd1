"""Tests of mibounds._numerics against torch: logsumexp and cross_entropy values and gradients,
rows of +-inf and NaN, keepdim, vmap, and the clamp that keeps exp fast."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as nnf
from hypothesis import given, settings
from hypothesis import strategies as st

from mibounds._numerics import cross_entropy, logsumexp


def randn(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@settings(max_examples=40, deadline=None)
@given(
    scale=st.sampled_from([1e-3, 1.0, 30.0, 300.0, 1e4]),
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    data=st.data(),
)
def test_value_and_gradient_are_torch_logsumexp(scale: float, shape: list[int], data) -> None:
    # at scale 300 most entries sit hundreds of nats below their row's maximum: the clamp at
    # 4 log(eps) must leave the value and the softmax gradient as torch computes them
    dim = data.draw(st.integers(-len(shape), len(shape) - 1))
    x = (randn(*shape, seed=len(shape)) * scale).requires_grad_()
    ours, theirs = logsumexp(x, dim), torch.logsumexp(x, dim)
    # float32 rounding of a sum of at most 6 terms and of log: a few ulps of the result
    torch.testing.assert_close(ours, theirs, rtol=2e-6, atol=1e-6)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-6)


def test_first_and_second_derivatives_in_float64() -> None:
    x = (randn(4, 5, dtype=torch.float64) * 20).requires_grad_()
    target = torch.tensor([0, 4, 2, 1])
    for fn in (lambda t: logsumexp(t, -1), lambda t: logsumexp(t, 0)):
        assert torch.autograd.gradcheck(fn, (x,))
        assert torch.autograd.gradgradcheck(fn, (x,))
    assert torch.autograd.gradcheck(lambda t: cross_entropy(t, target), (x,))
    assert torch.autograd.gradgradcheck(lambda t: cross_entropy(t, target), (x,))


@pytest.mark.parametrize("scale", [1.0, 300.0])
def test_cross_entropy_is_torch_cross_entropy(scale: float) -> None:
    x = (randn(3, 4, 7, seed=5) * scale).requires_grad_()
    target = torch.randint(0, 7, (3, 4), generator=torch.Generator().manual_seed(6))
    ours = cross_entropy(x, target)
    theirs = nnf.cross_entropy(x.reshape(-1, 7), target.reshape(-1), reduction="none")
    torch.testing.assert_close(ours, theirs.view(3, 4), rtol=2e-6, atol=1e-5)
    (g_ours,) = torch.autograd.grad(ours.sum(), x)
    (g_theirs,) = torch.autograd.grad(theirs.sum(), x)
    torch.testing.assert_close(g_ours, g_theirs, rtol=1e-5, atol=1e-6)


def test_rows_of_infinities_and_nan_are_what_torch_gives() -> None:
    inf, nan = math.inf, math.nan
    x = torch.tensor([[0.0, -inf, 1.0], [-inf, -inf, -inf], [inf, 1.0, 0.0], [nan, 1.0, 0.0]])
    ours = logsumexp(x, -1)
    torch.testing.assert_close(ours, torch.logsumexp(x, -1), equal_nan=True)
    assert ours[1] == -inf  # not the clamp's log(3) + 4 log(eps)


def test_far_below_the_maximum_adds_nothing() -> None:
    # exp(-200) underflows float32: the entry is clamped, and must not change the sum
    x = torch.tensor([[0.0, 0.0, -200.0], [0.0, 0.0, -1e30]])
    torch.testing.assert_close(logsumexp(x, -1), torch.full((2,), math.log(2.0)))


@pytest.mark.parametrize("keepdim", [False, True])
def test_keepdim_and_vmap(keepdim: bool) -> None:
    x = randn(3, 4, 5, seed=2)
    out = logsumexp(x, 1, keepdim=keepdim)
    assert out.shape == ((3, 1, 5) if keepdim else (3, 5))
    torch.testing.assert_close(out, torch.logsumexp(x, 1, keepdim=keepdim))
    mapped = torch.vmap(lambda t: logsumexp(t, -1, keepdim=keepdim))(x)
    torch.testing.assert_close(mapped, torch.logsumexp(x, -1, keepdim=keepdim))
