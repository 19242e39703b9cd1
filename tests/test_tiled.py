"""Tests of mibounds.tiled: the tiled path against the dense one (values, gradients of both
inputs, gathered candidates, ragged blocks, float32 / float64 / half precision, gradcheck), the
memory the tiled path keeps, the losses built on it (polyview_loss for every candidate set and
aggregate, sogclr_loss) tiled against dense, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as nnf
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils._python_dispatch import TorchDispatchMode

from mibounds import polyview as P
from mibounds import sogclr
from mibounds.polyview_loss import polyview_loss
from mibounds.tiled import cosine_terms, negatives_logsumexp

# rounding of float32 / float64 logsumexps and matmuls over a few dozen terms; the brief of the
# tiled path is agreement with the dense one to 1e-5 (float32) and 1e-10 (float64)
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
DENSE = {"memory_budget": 2**40}  # block_size None and a budget everything fits: dense path


def embeddings(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float64):
    """Unit vectors over tau = 0.1 as anchors' scale: scores in [-10, 10], as in training."""
    g = torch.Generator().manual_seed(seed)
    return nnf.normalize(torch.randn(shape, generator=g, dtype=torch.float64), dim=-1).to(dtype)


def reference(anchors: torch.Tensor, candidates: torch.Tensor, offset: int) -> torch.Tensor:
    """``neg`` by the definition: torch.logsumexp over the scores with the own sample dropped
    (index_select of the other rows, no masking trick shared with the code under test)."""
    k, n = anchors.shape[-3], candidates.shape[-3]
    out = []
    for i in range(k):
        others = [j for j in range(n) if j != offset + i]
        c = candidates[..., others, :, :]
        s = torch.einsum("...ad,...jbd->...abj", anchors[..., i, :, :], c)
        out.append(torch.logsumexp(s, -1))
    return torch.stack(out, -3)


def values_and_grads(anchors, candidates, offset, seed, **kwargs):
    a = anchors.clone().requires_grad_()
    c = candidates.clone().requires_grad_()
    neg = negatives_logsumexp(a, c, offset, **kwargs)
    g = torch.Generator().manual_seed(seed + 1)
    weights = torch.randn(neg.shape, generator=g, dtype=neg.dtype)
    grads = torch.autograd.grad((neg * weights).sum(), (a, c))
    return neg.detach(), *grads


def assert_close(x: torch.Tensor, y: torch.Tensor, tol: float) -> None:
    torch.testing.assert_close(x, y, rtol=tol, atol=tol)


# ------------------------------------------------------------------------------ the two paths


@settings(max_examples=30, deadline=None)
@given(
    k=st.integers(1, 6),
    m=st.integers(1, 4),
    extra=st.integers(0, 7),
    offset_share=st.floats(0, 1),
    block=st.integers(1, 9),
    lead=st.sampled_from([(), (2,), (2, 1)]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    seed=st.integers(0, 2**16),
)
def test_tiled_equals_dense(k, m, extra, offset_share, block, lead, dtype, seed):
    """|tiled - dense| <= tol for the value and both gradients, for any block size (dividing N
    or not), gathered candidates (N > K) and offsets, with and without batch dims."""
    n = max(k + extra, 2)
    offset = round(offset_share * (n - k))
    anchors = embeddings((*lead, k, m, 5), seed, dtype) / 0.1
    candidates = embeddings((*lead, n, m, 5), seed + 7, dtype)
    dense = values_and_grads(anchors, candidates, offset, seed, **DENSE)
    tiled = values_and_grads(anchors, candidates, offset, seed, block_size=block)
    for x, y in zip(dense, tiled, strict=True):
        assert_close(x, y, TOLERANCE[dtype])


@pytest.mark.parametrize("which", [0, 1])
def test_gradient_of_one_input_only(which):
    """Candidates gathered without gradient (or fixed anchors): the other input's gradient is
    the dense one."""
    inputs = [embeddings((4, 3, 6), 30) / 0.1, embeddings((7, 3, 6), 31)]
    grads = []
    for kwargs in (DENSE, {"block_size": 3}):
        leaf = inputs[which].clone().requires_grad_()
        args = [leaf, inputs[1]] if which == 0 else [inputs[0], leaf]
        negatives_logsumexp(*args, 2, **kwargs).sum().backward()
        grads.append(leaf.grad)
    assert_close(grads[1], grads[0], 1e-10)


@pytest.mark.parametrize("offset, n", [(0, 4), (3, 9), (5, 9)])
def test_dense_matches_definition(offset, n):
    anchors = embeddings((4, 3, 6), 1) / 0.1
    candidates = embeddings((n, 3, 6), 2)
    expected = reference(anchors, candidates, offset)
    for kwargs in (DENSE, {"block_size": 2}):
        got = negatives_logsumexp(anchors, candidates, offset, **kwargs)
        assert_close(got, expected, 1e-12)


def test_gradcheck_tiled():
    """Finite differences in float64 (eps 1e-6: truncation error ~1e-12, far below atol)."""
    anchors = (embeddings((3, 2, 4), 3) / 0.5).requires_grad_()
    candidates = embeddings((5, 2, 4), 4).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda a, c: negatives_logsumexp(a, c, 1, block_size=2), (anchors, candidates)
    )


def test_tiled_with_large_scores_and_one_row_blocks():
    """Scores of hundreds of nats (exp's floor and the online rescaling at work), blocks of one
    row (one of them holds only the own sample for K = 1)."""
    anchors = embeddings((1, 3, 4), 5) * 300.0
    candidates = embeddings((3, 3, 4), 6)
    dense = values_and_grads(anchors, candidates, 1, 0, **DENSE)
    tiled = values_and_grads(anchors, candidates, 1, 0, block_size=1)
    assert dense[0].isfinite().all()
    for x, y in zip(dense, tiled, strict=True):
        assert_close(x, y, 1e-10)
    # the first block holds only the own sample (no finite score: shift 0, and the clamp gives
    # it exp(floor) = exp(-144)), every other score is -300: the running sum must drop it when
    # the first finite score comes, not rescale it by e^300
    v = embeddings((1, 1, 4), 6).expand(2, 3, 4)
    neg = negatives_logsumexp(-300.0 * v[:1], v, 0, block_size=1)
    assert_close(neg, torch.full((1, 3, 3), -300.0, dtype=neg.dtype), 1e-10)


def test_automatic_choice_follows_the_budget():
    """Dense when two score-sized buffers fit the budget, else tiled: the same numbers."""
    anchors = embeddings((8, 2, 4), 7) / 0.1
    candidates = embeddings((8, 2, 4), 8)
    scores_bytes = 8 * 2 * 2 * 8 * 8
    dense = values_and_grads(anchors, candidates, 0, 0, memory_budget=2 * scores_bytes)
    tiled = values_and_grads(anchors, candidates, 0, 0, memory_budget=2 * scores_bytes - 1)
    for x, y in zip(dense, tiled, strict=True):
        assert_close(x, y, 1e-10)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("block_size", [None, 3])
def test_half_precision_is_upcast(dtype, block_size):
    anchors = (embeddings((4, 3, 8), 9) / 0.1).to(dtype).requires_grad_()
    candidates = embeddings((6, 3, 8), 10).to(dtype).requires_grad_()
    neg = negatives_logsumexp(anchors, candidates, 2, block_size=block_size)
    assert neg.dtype == torch.float32
    expected = negatives_logsumexp(anchors.float(), candidates.float(), 2, **DENSE)
    assert_close(neg, expected, 1e-5)
    neg.sum().backward()
    assert anchors.grad.dtype == dtype and candidates.grad.dtype == dtype


def test_autocast_runs_the_logsumexp_in_float32():
    """Under CPU bf16 autocast the matmuls run in bf16 and neg comes out float32; both paths
    agree to bf16's rounding of the scores (|s| <= 10, relative 2^-8: 0.04 nats)."""
    anchors = (embeddings((6, 2, 16), 11, torch.float32) / 0.1).requires_grad_()
    candidates = embeddings((6, 2, 16), 12, torch.float32)
    exact = negatives_logsumexp(anchors, candidates, **DENSE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        dense = negatives_logsumexp(anchors, candidates, **DENSE)
        tiled = negatives_logsumexp(anchors, candidates, block_size=4)
    assert dense.dtype == tiled.dtype == torch.float32
    assert_close(dense, exact, 0.1)
    assert_close(tiled, dense, 1e-5)
    (grad,) = torch.autograd.grad(tiled.sum(), anchors)
    (expected,) = torch.autograd.grad(dense.sum(), anchors)
    assert_close(grad, expected, 1e-2)


# ---------------------------------------------------------------------------------- memory


class LargestOutput(TorchDispatchMode):
    """Records the most elements any op produced while active (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def saved_elements(fn) -> tuple[int, torch.Tensor]:
    """Elements of the largest tensor autograd saves for the backward while ``fn`` runs, and
    ``fn``'s result."""
    largest = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal largest
        largest = max(largest, t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return largest, out


def test_tiled_never_holds_the_scores():
    """Tiled: no saved tensor larger than the inputs or the result, and no op in the forward
    or the backward producing more than one block of scores (K M^2 block elements); the dense
    path, checked the same way, saves all K M^2 N of them (so the checks can fail)."""
    k, m, n, d, block = 16, 4, 24, 8, 4
    anchors = (embeddings((k, m, d), 13) / 0.1).requires_grad_()
    candidates = embeddings((n, m, d), 14).requires_grad_()
    scores = k * m * m * n
    inputs = max(k * m * d, n * m * d, k * m * m)
    for kwargs, expect_saved in (({"block_size": block}, inputs), (DENSE, scores)):
        with LargestOutput() as mode:
            saved, neg = saved_elements(
                lambda kwargs=kwargs: negatives_logsumexp(anchors, candidates, 4, **kwargs)
            )
            neg.sum().backward()
        assert saved == expect_saved
        if kwargs is not DENSE:
            assert mode.largest <= k * m * m * block < scores
        else:
            assert mode.largest >= scores


# ------------------------------------------------------------------- the losses from (pos, neg)


def loss_and_grad(loss, k: int, m: int, seed: int, extra: int, **kwargs):
    """``loss`` and its gradient w.r.t. every embedding; with ``extra`` rows of other processes
    the anchors are rows ``[offset, offset + K)`` of the candidates (both carry gradients)."""
    every = embeddings((k + extra, m, 6), seed).requires_grad_()
    if extra:
        offset = extra // 2
        kwargs = {**kwargs, "candidates": every, "offset": offset}
        value = loss(every[offset : offset + k], **kwargs)
    else:
        value = loss(every, **kwargs)
    return value.detach(), *torch.autograd.grad(value, every)


def budget_for(k: int, m: int, rows: int) -> int:
    """A memory budget that leaves float64 scores in blocks of ``rows`` candidate rows (two
    block buffers of K M M rows doubles), far below the dense path's."""
    return 2 * 8 * k * m * m * rows


@pytest.mark.parametrize("negatives", P.NEGATIVES)
@pytest.mark.parametrize("aggregate", P.LOSS_AGGREGATES)
@pytest.mark.parametrize(("k", "extra"), [(5, 0), (4, 5), (1, 4)])
def test_polyview_loss_in_blocks_equals_the_dense_loss(negatives, aggregate, k, extra):
    """polyview_loss past its memory budget (blocks of 2 and 3 candidate rows) gives the dense
    loss's value and gradient, float64, to 1e-10 (with gathered candidates, K = 1 too)."""
    if k == 1 and not extra:
        pytest.skip("one anchor needs gathered candidates")
    args = {"temperature": 0.1, "aggregate": aggregate, "negatives": negatives}
    expected = loss_and_grad(polyview_loss, k, 3, 20, extra, **args)
    for rows in (2, 3):
        budget = {"memory_budget": budget_for(k, 3, rows)}
        got = loss_and_grad(polyview_loss, k, 3, 20, extra, **args, **budget)
        for x, y in zip(got, expected, strict=True):
            assert_close(x, y, 1e-10)


@pytest.mark.parametrize("extra", [0, 5])
def test_cosine_terms_dense_and_tiled_match_the_definition(extra):
    """pos and neg of cosine scores over a temperature, dense (the positives read off the same
    scores) and in blocks of 2 rows (their own matmul): the definition's values and the same
    gradients for every weighting of the two outputs (float64, 1e-10)."""
    k, m, tau = 4, 3, 0.2
    every = embeddings((k + extra, m, 5), 30) * 3.0  # not unit length: normalised inside
    offset = extra // 2
    u = nnf.normalize(every, dim=-1)
    anchors, own = u[offset : offset + k], u[offset : offset + k]
    expected_pos = torch.einsum("iad,ibd->iab", anchors, own) / tau
    expected_neg = reference(anchors / tau, u, offset)
    results = []
    for budget in (2**40, budget_for(k, m, 2)):
        z = every.clone().requires_grad_()
        pos, neg = cosine_terms(
            z[offset : offset + k] if extra else z,
            tau,
            **({"candidates": z, "offset": offset} if extra else {}),
            memory_budget=budget,
        )
        assert_close(pos, expected_pos, 1e-12)
        assert_close(neg, expected_neg, 1e-12)
        g = torch.Generator().manual_seed(31)
        weights = torch.randn((2, *pos.shape), generator=g, dtype=pos.dtype)
        for w_pos, w_neg in ((weights[0], weights[1]), (weights[0], 0.0), (0.0, weights[1])):
            (grad,) = torch.autograd.grad(
                (pos * w_pos).sum() + (neg * w_neg).sum(), z, retain_graph=True
            )
            results.append(grad)
    for dense, tiled in zip(results[:3], results[3:], strict=True):
        assert_close(dense, tiled, 1e-10)


def test_dense_terms_are_twice_differentiable():
    """gradgradcheck of the dense path with both outputs used (the positives' gradient is
    written at the own samples of the recomputed softmax under create_graph)."""
    anchors = (embeddings((3, 2, 4), 32) / 0.5).requires_grad_()
    candidates = embeddings((5, 2, 4), 33).requires_grad_()

    def both(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        pos, neg = cosine_terms(a, 0.5, candidates=c, offset=1)
        return (pos**2).sum() + (neg * pos).sum()

    assert torch.autograd.gradcheck(both, (anchors, candidates))
    assert torch.autograd.gradgradcheck(both, (anchors, candidates))


@pytest.mark.parametrize("aggregate", P.LOSS_AGGREGATES)
def test_excluded_target_views_get_exactly_zero_gradient(aggregate):
    """Same-view candidates: the scores S[i, a, j, a] (target view b = a, excluded from every
    aggregate) get a gradient of exactly 0, not exp(4 log eps)-sized numbers, which reached the
    embeddings' matmuls as float32 subnormals and slowed them on CPU."""
    s = torch.randn(6, 3, 6, 3, generator=torch.Generator().manual_seed(34)).requires_grad_()
    P.contrastive_estimate(s, aggregate, "same_view").backward()
    same_view = s.grad.diagonal(dim1=1, dim2=3)  # (K, K, M): [i, j, a] = grad S[i, a, j, a]
    assert (same_view == 0).all()
    per_view_pair = s.grad.abs().sum((0, 2))  # (M, M): [a, b]
    assert (per_view_pair > 0).sum() == 3 * 2  # every pair a != b does get gradient


@pytest.mark.parametrize("gamma", [1.0, 0.9])
@pytest.mark.parametrize("extra", [0, 4])
def test_sogclr_loss_in_blocks_equals_the_dense_loss(gamma, extra):
    """sogclr_loss past its memory budget: the dense loss's value, gradient and new log u."""
    k = 4
    log_u = torch.linspace(1.0, 3.0, k, dtype=torch.float64)
    visited = torch.tensor([True, False, True, True])
    state = {"log_u": log_u, "visited": visited, "gamma": gamma}

    def first(**budget):
        return lambda z, **kwargs: sogclr.sogclr_loss(z, **kwargs, **budget)[0]

    expected = loss_and_grad(first(), k, 3, 22, extra, **state)
    got = loss_and_grad(first(memory_budget=budget_for(k, 3, 2)), k, 3, 22, extra, **state)
    for x, y in zip(got, expected, strict=True):
        assert_close(x, y, 1e-10)
    every = embeddings((k + extra, 3, 6), 22)
    z = every[extra // 2 : extra // 2 + k]
    gathered = {"candidates": every, "offset": extra // 2} if extra else {}
    _, dense_log_u = sogclr.sogclr_loss(z, log_u, visited, gamma, **gathered)
    _, tiled_log_u = sogclr.sogclr_loss(
        z, log_u, visited, gamma, **gathered, memory_budget=budget_for(k, 3, 2)
    )
    assert_close(tiled_log_u, dense_log_u, 1e-12)


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "anchors, candidates, kwargs, match",
    [
        ("x", (4, 2, 3), {}, "anchors must be a torch.Tensor"),
        ((4, 3), (4, 2, 3), {}, r"anchors must have shape \(\.\.\., K, M, D\)"),
        ((4, 2, 3), (4, 3, 3), {}, "candidates must have shape"),
        ((4, 2, 3), (4, 2, 5), {}, "candidates must have shape"),
        ((2, 4, 2, 3), (3, 4, 2, 3), {}, "candidates must have shape"),
        ((1, 2, 3), (1, 2, 3), {}, "N >= 2"),
        ((4, 2, 3), (3, 2, 3), {}, "offset \\+ K must be <= N"),
        ((4, 2, 3), (6, 2, 3), {"offset": 3}, "offset \\+ K must be <= N"),
        ((4, 2, 3), (6, 2, 3), {"offset": -1}, "offset must be an integer >= 0"),
        ((4, 2, 3), (6, 2, 3), {"offset": 1.0}, "offset must be an integer >= 0"),
        ((4, 2, 3), (6, 2, 3), {"block_size": 0}, "block_size must be an integer >= 1"),
        ((4, 2, 3), (6, 2, 3), {"block_size": True}, "block_size must be an integer >= 1"),
        ((4, 2, 3), (6, 2, 3), {"memory_budget": 0}, "memory_budget must be an integer >= 1"),
        ((4, 2, 3), (6, 2, 3), {"memory_budget": 100}, "memory_budget must hold the scores"),
    ],
)
def test_bad_shapes_and_options(anchors, candidates, kwargs, match):
    def make(x):
        return torch.randn(x) if isinstance(x, tuple) else x

    with pytest.raises(ValueError, match=match):
        negatives_logsumexp(make(anchors), make(candidates), **kwargs)


def test_bad_values_and_dtypes():
    a, c = torch.randn(4, 2, 3), torch.randn(4, 2, 3)
    bad_a, bad_c = a.clone(), c.clone()
    bad_a[0, 0, 0] = math.nan
    bad_c[1] = math.inf
    with pytest.raises(ValueError, match="anchors has 1 non-finite"):
        negatives_logsumexp(bad_a, c)
    with pytest.raises(ValueError, match="candidates has 6 non-finite"):
        negatives_logsumexp(a, bad_c)
    # validate_args=False skips the value checks only
    assert negatives_logsumexp(a, c * math.nan, validate_args=False).isnan().all()
    with pytest.raises(ValueError, match="dtype of anchors"):
        negatives_logsumexp(a, c.double())
    with pytest.raises(ValueError, match="floating-point"):
        negatives_logsumexp(a.long(), c.long())


def test_higher_derivatives():
    """The dense path is twice differentiable (gradgradcheck); the tiled one says it is not."""
    anchors = (embeddings((3, 2, 4), 40) / 0.5).requires_grad_()
    candidates = embeddings((4, 2, 4), 41).requires_grad_()
    assert torch.autograd.gradgradcheck(
        lambda a, c: negatives_logsumexp(a, c, 1, **DENSE), (anchors, candidates)
    )
    neg = negatives_logsumexp(anchors, candidates, 1, block_size=2)
    (grad,) = torch.autograd.grad((neg**2).sum(), anchors, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable"):
        grad.sum().backward()
