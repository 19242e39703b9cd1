"""Contrastive log partitions over the other samples without the quadratic score tensor.

The poly-view training loss (``polyview_loss.polyview_loss``, every candidate set, Multi-Crop's
NT-Xent among them) and SogCLR's (``sogclr.sogclr_loss``) score K anchor
samples of M views against N candidate samples, ``S[i, a, j, b] = <A_ia, C_jb>``, but need from
the ``(K, M, N, M)`` scores only the positives ``pos[i, a, b] = S[i, a, offset + i, b]`` (a
``(K, M, M)`` entries) and the log partition of every anchor over the *other* samples' view b,

    neg[i, a, b] = logsumexp_{j != offset + i} S[i, a, j, b]          (K, M, M)

from which, per anchor ``(i, a)`` and target view ``b`` (the losses: docs/polyview.md,
docs/sogclr.md; the losses are written this way, and tests/test_polyview.py and
tests/test_sogclr.py check them against loop references):

- same-view candidates: ``CE = logaddexp(neg, pos) - pos``;
- all views of the other samples: ``others = logsumexp_b neg``, ``CE = logaddexp(others, pos)
  - pos``;
- NT-Xent of the view pair (a, b): ``CE = logsumexp(pos, neg[a, b], neg[a, a]) - pos``;
- SogCLR: ``log g = others - log(M (N - 1))``, and the surrogate's gradient is that of
  ``-exp(others - log u) / (M (N - 1))``.

``negatives_logsumexp`` computes ``neg``, ``cosine_terms`` both from embeddings (cosine scores
over a temperature). When the scores fit the memory budget they are built at once, in one
buffer that the logsumexp overwrites and the backward rescales, the positives read off it (a
custom autograd function, twice differentiable; about the cost of one matmul and one
logsumexp). Otherwise they are streamed over blocks of candidate rows with an online
logsumexp, in the style of memory-efficient attention (Rabe & Staats 2021, "Self-attention
does not need O(n^2) memory"; Dao et al. 2022, FlashAttention), and each block's scores are
recomputed in the backward: memory ``O((K + N) M D + K M^2 B)`` for blocks of B rows, instead
of about ``2 K M^2 N`` floats (dense), for one more matmul.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf
from torch import Tensor

from mibounds._checks import (
    check_at_least,
    check_candidates,
    check_finite,
    check_offset,
    check_positive,
    compute_dtype,
)
from mibounds._numerics import _floor

__all__ = ["cosine_terms", "negatives_logsumexp"]

# The default block: about BLOCK_BYTES of scores, so that on CPU its elementwise passes run in
# the last-level cache, and 16-128 candidate rows, so that the matmuls stay wide (M B columns)
# and the reductions over the block's rows long. benchmarks/bench_tiled.py on two CPU cores:
# 32-256 rows alike (within the noise, about 10%) at K M = 2048, 32-64 best at 8192 and 16384.
BLOCK_BYTES = 2**24
BLOCK_ROWS = (16, 128)

# Score-sized buffers alive at the peak: two for the dense path (measured by
# benchmarks/bench_memory.py, 2.05 |S| at K M = 8192 and 16384: the exponentials saved for the
# backward, and the softmax the backward makes of them), two block-sized ones for the tiled
# path (a block's scores, and the previous block's, released once the new ones are assigned).
_DENSE_BUFFERS = 2
_BLOCK_BUFFERS = 2


# ------------------------------------------------------------------------------------ checks


def _check_embeddings(t: Tensor, name: str, validate_args: bool) -> Tensor:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() < 3:
        raise ValueError(f"{name} must have shape (..., K, M, D), got shape {tuple(t.shape)}")
    if validate_args:
        check_finite(t, name)
    return compute_dtype(t)


def _check_pair(
    anchors: Tensor, candidates: Tensor, offset: int, validate_args: bool
) -> tuple[Tensor, Tensor]:
    a = _check_embeddings(anchors, "anchors", validate_args)
    c = _check_embeddings(candidates, "candidates", validate_args)
    m, d = a.shape[-2:]
    if c.shape[:-3] != a.shape[:-3] or c.shape[-2:] != (m, d):
        raise ValueError(
            f"candidates must have shape (..., N, M, D) = {(*a.shape[:-3], 'N', m, d)} to match "
            f"anchors {tuple(a.shape)}, got {tuple(c.shape)}"
        )
    if a.dtype != c.dtype:
        raise ValueError(
            f"candidates must have the dtype of anchors (half precision counts as float32), "
            f"got candidates {c.dtype}, anchors {a.dtype}"
        )
    k, n = a.shape[-3], c.shape[-3]
    if n < 2:
        raise ValueError(
            f"candidates need N >= 2 samples, so that every anchor has a negative, got N = {n}"
        )
    check_offset(offset, k, n)
    return a, c


# ------------------------------------------------------------------------ scores, in blocks


def _candidate_block(c: Tensor, start: int, stop: int) -> Tensor:
    """``(B, N, M, D) -> (B, M * (stop - start), D)``: the block's rows in ``(b, j)`` order, so
    that its scores come out ``[i a, b, j]`` with j innermost."""
    return c[:, start:stop].transpose(1, 2).reshape(c.shape[0], -1, c.shape[-1])


def _own_entries(x: Tensor, offset: int, start: int) -> Tensor:
    """The view of a block's scores ``x: (B, K, M, M, rows)`` (for candidates
    ``[start, start + rows)``) at each anchor's own sample, for filling in place."""
    k, rows = x.shape[1], x.shape[-1]
    first, last = max(0, start - offset), min(k, start + rows - offset)
    if first >= last:
        return x[:, :0, :, :, :0].diagonal(dim1=1, dim2=4)
    column = offset + first - start
    return x[:, first:last, :, :, column : column + last - first].diagonal(dim1=1, dim2=4)


def _block_scores(a: Tensor, block: Tensor, k: int, m: int) -> Tensor:
    """``(B, K M, D) x (B, M rows, D) -> (B, K, M, M, rows)`` scores in the compute dtype (an
    autocast matmul gives half precision; the logsumexp never runs below float32)."""
    x = torch.bmm(a, block.transpose(1, 2)).to(a.dtype)
    return x.view(a.shape[0], k, m, m, -1)


def _blocks(n: int, size: int) -> list[tuple[int, int]]:
    return [(start, min(start + size, n)) for start in range(0, n, size)]


def _autocast_state(device: torch.device) -> tuple[str, bool, torch.dtype]:
    """The autocast state of ``device``'s type, to recompute or back-propagate at the forward's
    matmul precision (the backward runs outside the forward's autocast context)."""
    kind = device.type
    return kind, torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)


def _matmul_grads(
    w: Tensor, rows: Tensor, block: Tensor, needs: tuple[bool, bool]
) -> tuple[Tensor | None, Tensor | None]:
    """The matmuls of the backward from ``w = d out / d scores: (B, K M, M rows)``: the
    gradients of the anchors' rows ``(B, K M, D)`` and of the block ``(B, M rows, D)``, or
    ``None`` for an input that needs none (candidates gathered from other processes)."""
    grad_rows = torch.bmm(w, block).to(rows.dtype) if needs[0] else None
    grad_block = torch.bmm(w.transpose(1, 2), rows).to(rows.dtype) if needs[1] else None
    return grad_rows, grad_block


def _unblock(grad_block: Tensor, m: int) -> Tensor:
    """``(B, M rows, D) -> (B, rows, M, D)``: a block's gradient back in candidate order (the
    inverse of ``_candidate_block``)."""
    return grad_block.view(grad_block.shape[0], m, -1, grad_block.shape[-1]).transpose(1, 2)


class _DenseNegatives(torch.autograd.Function):
    """``(B, K, M, D), (B, N, M, D) -> (neg, pos)``, both ``(B, K, M, M)``: ``neg`` from all the
    scores at once, and the positives ``pos[i, a, b] = S[i, a, offset + i, b]`` read off them, in
    one score-sized buffer: the matmul's output, turned in place into ``t = exp(s - max)``
    (exactly 0 at each anchor's own sample) and kept, so that the backward's softmax is one
    rescaling of it, ``t exp(max - neg)``, with the positives' gradient written at the own
    samples, before the two matmuls. No mask tensor, no separate matmul for the positives, and
    two elementwise passes fewer each way than a masked logsumexp. Twice differentiable: under
    ``create_graph`` the backward recomputes the scores with differentiable operations. ``t``
    and the shift are returned as non-differentiable outputs so that they can be saved (and
    ``torch.vmap`` works); callers use ``_terms``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(a: Tensor, c: Tensor, offset: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        batch, k, m, d = a.shape
        x = _block_scores(a.reshape(batch, k * m, d), _candidate_block(c, 0, c.shape[1]), k, m)
        own = _own_entries(x, offset, 0)  # (B, M, M, K): x[:, i, a, b, offset + i]
        pos = own.movedim(-1, 1).clone(memory_format=torch.contiguous_format)
        own.fill_(-math.inf)
        top = x.amax(-1, keepdim=True)
        # rows of -inf (non-finite inputs, unchecked) or with a +inf entry: shift by 0
        shift = torch.where(top.isfinite(), top, top.new_zeros(()))
        # the clamp keeps CPU exp on its fast path, as in _numerics; then the own sample is 0
        t = x.sub_(shift).clamp_min_(_floor(x.dtype)).exp_()
        own.fill_(0.0)
        out = (shift + t.sum(-1, keepdim=True).log()).masked_fill_(top == -math.inf, -math.inf)
        return out.squeeze(-1), pos, t, shift.squeeze(-1)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        a, c, offset = inputs
        out, _, t, shift = output
        ctx.mark_non_differentiable(t, shift)
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(a, c, t, shift, out)
        ctx.offset, ctx.autocast = offset, _autocast_state(a.device)

    @staticmethod
    def backward(
        ctx, grad: Tensor | None, grad_pos: Tensor | None, *_: None
    ) -> tuple[Tensor | None, Tensor | None, None]:
        a, c, t, shift, out = ctx.saved_tensors
        batch, k, m, d = a.shape
        n = c.shape[1]
        rows, block = a.reshape(batch, k * m, d), _candidate_block(c, 0, n)
        device, enabled, dtype = ctx.autocast
        if torch.is_grad_enabled():
            # create_graph: the softmax from recomputed scores, out of place, differentiable
            own_rows = ctx.offset + torch.arange(k, device=a.device)  # anchor i's own sample
            own = torch.arange(n, device=a.device) == own_rows[:, None, None, None]  # K,1,1,N
            w = torch.zeros_like(t)
            if grad is not None:
                with torch.autocast(device, dtype=dtype, enabled=enabled):
                    x = _block_scores(rows, block, k, m)
                w = (x.masked_fill(own, -math.inf) - out.unsqueeze(-1)).exp() * grad.unsqueeze(-1)
            if grad_pos is not None:
                w = torch.where(own, grad_pos.unsqueeze(-1), w)
        else:
            w = (
                torch.zeros_like(t)
                if grad is None
                else t * (grad * (shift - out).exp()).unsqueeze(-1)
            )
            if grad_pos is not None:
                _own_entries(w, ctx.offset, 0).copy_(grad_pos.movedim(1, -1))
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            grad_rows, grad_block = _matmul_grads(
                w.view(batch, k * m, -1), rows, block, ctx.needs_input_grad[:2]
            )
        grad_a = None if grad_rows is None else grad_rows.view_as(a)
        return grad_a, None if grad_block is None else _unblock(grad_block, m), None


def _terms(
    a: Tensor, c: Tensor, offset: int, block_size: int | None, positives: bool
) -> tuple[Tensor, Tensor | None]:
    """``(B, K, M, D), (B, N, M, D) -> (neg, pos)``, both ``(B, K, M, M)``: all scores at once
    (``block_size=None``) or in blocks of ``block_size`` candidate rows (the positives then, if
    asked, by their own small matmul; ``None`` if not)."""
    if block_size is None:
        neg, pos, _, _ = _DenseNegatives.apply(a, c, offset)
        return neg, pos
    # the positives first: autograd then runs their small backward after the blocks', so that
    # its (K, M, D) gradients are not held while the blocks are recomputed
    own = c.narrow(1, offset, a.shape[1])
    pos = torch.einsum("xiad,xibd->xiab", a, own) if positives else None
    return _TiledNegatives.apply(a, c, offset, block_size), pos


class _TiledNegatives(torch.autograd.Function):
    """``(B, K, M, D), (B, N, M, D) -> (B, K, M, M)``: ``neg`` one block of candidate rows at a
    time. Saves the inputs and the result; the backward recomputes each block's scores."""

    @staticmethod
    def forward(ctx, a: Tensor, c: Tensor, offset: int, block_size: int) -> Tensor:
        batch, k, m, d = a.shape
        n = c.shape[1]
        rows = a.reshape(batch, k * m, d)
        floor = _floor(a.dtype)
        top = torch.full((batch, k, m, m), -math.inf, dtype=a.dtype, device=a.device)
        total = torch.zeros_like(top)
        for start, stop in _blocks(n, block_size):
            x = _block_scores(rows, _candidate_block(c, start, stop), k, m)
            _own_entries(x, offset, start).fill_(-math.inf)
            new_top = torch.maximum(top, x.amax(-1))
            # no finite score yet (a one-row block holding only the own sample): shift by 0
            shift = torch.where(new_top.isfinite(), new_top, new_top.new_zeros(()))
            # the clamp lifts the own sample's -inf to exp(floor), at most eps^4 of the row's
            # largest term, as in _numerics; before any finite score (top = -inf) the next
            # finite block's rescaling exp(top - shift) = 0 drops it
            e = x.sub_(shift.unsqueeze(-1)).clamp_min_(floor).exp_()
            total = total.mul_((top - shift).exp_()).add_(e.sum(-1))
            top = new_top
        out = top + total.log()
        ctx.save_for_backward(a, c, out)
        ctx.offset, ctx.block_size = offset, block_size
        ctx.autocast = _autocast_state(a.device)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        a, c, out = ctx.saved_tensors
        batch, k, m, d = a.shape
        n = c.shape[1]
        rows = a.reshape(batch, k * m, d)
        floor = _floor(a.dtype)
        # candidates gathered from other processes often need no gradient: skip their matmul
        need_a, need_c = ctx.needs_input_grad[:2]
        grad_rows = torch.zeros_like(rows) if need_a else None
        grad_c = torch.empty_like(c) if need_c else None
        device, enabled, dtype = ctx.autocast
        # the forward's matmul precision, so that the recomputed scores are the forward's
        with torch.autocast(device, dtype=dtype, enabled=enabled):
            for start, stop in _blocks(n, ctx.block_size):
                block = _candidate_block(c, start, stop)
                x = _block_scores(rows, block, k, m)
                # d neg / d s = softmax over the other samples: exp(s - neg), 0 at the own one
                w = x.sub_(out.unsqueeze(-1)).clamp_min_(floor).exp_().mul_(grad.unsqueeze(-1))
                _own_entries(w, offset=ctx.offset, start=start).fill_(0.0)
                w = w.view(batch, k * m, -1)
                # each product added as it comes: no second (K M, D) buffer alive with the blocks
                if grad_rows is not None:
                    grad_rows += torch.bmm(w, block)
                if grad_c is not None:
                    grad_c[:, start:stop] = _unblock(torch.bmm(w.transpose(1, 2), rows), m)
        return None if grad_rows is None else grad_rows.view_as(a), grad_c, None, None


# ------------------------------------------------------------------------------------ public


def _score_bytes(a: Tensor, rows: int) -> int:
    """Bytes of the scores of every anchor against ``rows`` candidate rows."""
    k, m = a.shape[-3:-1]
    return math.prod(a.shape[:-3]) * k * m * m * rows * a.element_size()


def _default_block_size(a: Tensor, memory_budget: int) -> int:
    """Candidate rows per block: about ``BLOCK_BYTES`` of scores, within ``BLOCK_ROWS`` and the
    budget."""
    row_bytes = _score_bytes(a, 1)
    if _BLOCK_BUFFERS * row_bytes > memory_budget:
        raise ValueError(
            f"memory_budget must hold the scores of one candidate row, "
            f"{_BLOCK_BUFFERS * row_bytes} bytes for anchors {tuple(a.shape)}, got {memory_budget}"
        )
    fast = min(max(BLOCK_BYTES // row_bytes, BLOCK_ROWS[0]), BLOCK_ROWS[1])
    return min(fast, memory_budget // (_BLOCK_BUFFERS * row_bytes))


def negatives_logsumexp(
    anchors: Tensor,
    candidates: Tensor,
    offset: int = 0,
    *,
    block_size: int | None = None,
    memory_budget: int = 2**30,
    validate_args: bool = True,
) -> Tensor:
    """Log partition of every anchor view over the other samples' view b, in nats; the
    negatives' term of the poly-view, Multi-Crop and SogCLR losses (docs/polyview.md).

    ``neg[..., i, a, b] = logsumexp_{j != offset + i} <anchors[..., i, a], candidates[..., j, b]>``

    Anchors come already scaled (``u / tau`` for cosine scores over a temperature). Anchor i's
    own sample, candidate row ``offset + i``, is left out: with ``pos[i, a, b] = <A_ia,
    C_{offset+i, b}>``, ``logaddexp(neg, pos)`` is the same-view partition and
    ``logsumexp_b neg`` the partition over every view of every other sample.

    The dense path builds the ``(..., K, M, M, N)`` scores at once, and at its peak holds two
    score-sized buffers. When those do not fit ``memory_budget`` bytes, or when
    ``block_size`` is given, the scores are streamed over blocks of ``block_size`` candidate
    rows with an online logsumexp, and recomputed block by block in the backward: memory
    ``O((K + N) M D + K M^2 block_size)``, for about one more matmul of time. Values and
    gradients agree to rounding (exp's floor as in ``mibounds._numerics``). The tiled path is
    differentiable once (``torch.autograd.grad(..., create_graph=True)`` needs the dense one).
    Under autocast the score matmuls run in its dtype and the logsumexp in float32, on both
    paths; the tiled backward recomputes the scores at the forward's precision.

    Args:
        anchors: ``(..., K, M, D)``, K >= 1 anchor samples of M views.
        candidates: ``(..., N, M, D)``, N >= 2, rows ``[offset, offset + K)`` the anchors' own
            samples (``candidates = anchors`` for one process, gathered rows for several).
        offset: anchor i's own sample is ``candidates[..., offset + i]``.
        block_size: candidate rows per block; ``None`` chooses: dense if it fits
            ``memory_budget``, else tiled with blocks of about ``BLOCK_BYTES`` (16-128 rows,
            fewer if the budget asks).
        memory_budget: bytes the score buffers may take when ``block_size`` is ``None``.
        validate_args: check that both inputs are finite (one device sync); shapes, dtypes and
            ``offset`` are always checked.
    Returns:
        ``neg: (..., K, M, M)`` in the compute dtype (half precision upcast to float32).

    Example:
        >>> import torch
        >>> from mibounds.tiled import negatives_logsumexp
        >>> u = torch.nn.functional.normalize(torch.randn(6, 3, 8, dtype=torch.float64), dim=-1)
        >>> neg = negatives_logsumexp(u / 0.1, u)
        >>> neg.shape
        torch.Size([6, 3, 3])
        >>> tiled = negatives_logsumexp(u / 0.1, u, block_size=4)
        >>> bool(torch.allclose(neg, tiled, rtol=1e-12, atol=1e-12))
        True
    """
    if block_size is not None:
        check_at_least(block_size, 1, "block_size")
    check_at_least(memory_budget, 1, "memory_budget")
    a, c = _check_pair(anchors, candidates, offset, validate_args)
    return _batched_terms(a, c, offset, block_size, memory_budget, positives=False)[0]


def _batched_terms(
    a: Tensor,
    c: Tensor,
    offset: int,
    block_size: int | None,
    memory_budget: int,
    positives: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """``(neg, pos)`` for checked ``(..., K, M, D)`` anchors and ``(..., N, M, D)`` candidates:
    dense if ``block_size`` is ``None`` and the dense buffers fit ``memory_budget``, else in
    blocks (of ``block_size`` rows, or of the default size within the budget)."""
    if block_size is None and _DENSE_BUFFERS * _score_bytes(a, c.shape[-3]) > memory_budget:
        block_size = _default_block_size(a, memory_budget)
    lead, batch = a.shape[:-3], math.prod(a.shape[:-3])
    # one leading batch axis, for bmm
    a, c = a.reshape(batch, *a.shape[-3:]), c.reshape(batch, *c.shape[-3:])
    neg, pos = _terms(a, c, offset, block_size, positives)
    neg = neg.view(*lead, *neg.shape[-3:])
    return neg, None if pos is None else pos.view(*lead, *pos.shape[-3:])


def cosine_terms(
    z: Tensor,
    temperature: float,
    *,
    candidates: Tensor | None = None,
    offset: int = 0,
    memory_budget: int = 2**30,
    validate_args: bool = True,
) -> tuple[Tensor, Tensor]:
    """The positives and the other samples' log partition of cosine scores over a temperature,
    in nats: all the poly-view, Multi-Crop and SogCLR losses take from their scores
    (docs/polyview.md#polyview_loss).

    ``S[i, a, j, b] = <u_ia, v_jb> / tau`` with ``u``, ``v`` the unit-normalised ``z`` and
    ``candidates`` (default ``z``); ``pos[i, a, b] = S[i, a, offset + i, b]`` and
    ``neg[i, a, b] = logsumexp_{j != offset + i} S[i, a, j, b]`` (``negatives_logsumexp`` of
    ``u / tau`` and ``v``). Dense where two score-sized buffers fit ``memory_budget``
    bytes, the positives then read off the same scores (one matmul for everything); else in
    blocks of candidate rows, memory linear in ``K M``. Same values and gradients either way.

    Args:
        z: ``(..., K, M, D)`` anchor embeddings (need not be normalised); K >= 2 without
            candidates.
        temperature: ``tau > 0``.
        candidates: ``(..., N, M, D)``, rows ``[offset, offset + K)`` the anchors' own samples.
        offset: anchor i's own sample is ``candidates[..., offset + i]``.
        memory_budget: bytes the score buffers may take.
        validate_args: check that the embeddings are finite (one device sync).
    Returns:
        ``(pos, neg)``, both ``(..., K, M, M)`` in the compute dtype.

    Example:
        >>> import torch
        >>> from mibounds.tiled import cosine_terms
        >>> z = torch.randn(6, 3, 8, generator=torch.Generator().manual_seed(0)).double()
        >>> pos, neg = cosine_terms(z, 0.1)
        >>> u = torch.nn.functional.normalize(z, dim=-1)
        >>> bool(torch.allclose(pos[2, 0, 1], u[2, 0] @ u[2, 1] / 0.1))
        True
        >>> pos_t, neg_t = cosine_terms(z, 0.1, memory_budget=2 * 8 * 6 * 3 * 3 * 2)  # blocks
        >>> bool(torch.allclose(neg, neg_t)) and bool(torch.allclose(pos, pos_t))
        True
    """
    tau = check_positive(temperature, "temperature")
    check_at_least(memory_budget, 1, "memory_budget")
    x, c = check_candidates(z, candidates, offset, validate_args)
    c = nnf.normalize(c, dim=-1)
    # 1/tau on the (K, M, D) anchors, not on the (K, M, N, M) scores
    anchors = (c if candidates is None else nnf.normalize(x, dim=-1)) / tau
    a, c = _check_pair(anchors, c, offset, validate_args=False)
    neg, pos = _batched_terms(a, c, offset, None, memory_budget)
    return pos, neg
