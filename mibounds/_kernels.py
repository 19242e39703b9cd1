"""Fused forward/backward kernels behind the pairwise estimators of ``mibounds.bounds``: one pass
over the ``(..., K, K)`` scores for what would otherwise be several (a leaf: it imports only the
other leaves).

- ``_RowLogSumExp`` (via ``_row_logsumexp``): each row's logsumexp with the positive dropped or
  weighted, and the diagonal, in one forward and one backward, with no mask tensor;
- ``_JSGradient``: zero in value, the Jensen-Shannon f-GAN gradient (one sigmoid pass);
- ``_InterpolatedTerms``: Poole's I_alpha leave-one-out terms in O(K^2) without a mask.

Their exponentials keep CPU ``exp`` on its fast path the way ``mibounds._numerics`` does (entries
far below the row maximum clamped; the sums unchanged to rounding). They give first derivatives.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from mibounds._numerics import _floor


def _positives(s: Tensor) -> Tensor:
    """``(..., K, N) -> (..., K)``: the critic on the positive pairs ``s[..., i, i]`` (a view)."""
    return s.diagonal(dim1=-2, dim2=-1)


def _shifted_exp(u: Tensor, diagonal: float) -> tuple[Tensor, Tensor, Tensor]:
    """In place on ``u: (..., K, K)``, a buffer the caller owns: add ``diagonal`` to its diagonal
    (``-inf`` drops the positives), then turn it into ``t = exp(u - m)``, ``m`` each row's maximum.

    Returns ``(t, m, lse)``, ``m, lse: (..., K)``, ``lse_i = log sum_j exp(u_ij)``. The maximum is
    taken after the diagonal is set, so it is the maximum of exactly the terms summed. As in
    ``mibounds._numerics``, ``u - m`` is clamped at ``4 log(eps)`` to keep CPU ``exp`` on its fast
    path (a clamped term changes the sum by less than ``eps^4``); the dropped positives are
    zeroed again afterwards. Rows of ``-inf`` give ``-inf``, rows with ``+inf`` or NaN propagate.
    """
    if diagonal == -math.inf:
        _positives(u).fill_(-math.inf)
    else:
        _positives(u).add_(diagonal)
    top = u.amax(-1, keepdim=True)
    # rows of -inf or with a +inf entry: shift by 0, as torch.logsumexp does
    m = torch.where(top.isfinite(), top, torch.zeros((), dtype=u.dtype, device=u.device))
    t = u.sub_(m).clamp_min_(_floor(u.dtype)).exp_()
    if diagonal == -math.inf:
        _positives(t).zero_()
    lse = (m + t.sum(-1, keepdim=True).log()).masked_fill_(top == -math.inf, -math.inf)
    return t, m.squeeze(-1), lse.squeeze(-1)


def _zeros_for_none(grad: Tensor | None, like: Tensor) -> Tensor:
    """The gradient of an output, zeros where autograd passed ``None`` (the output was unused)."""
    return torch.zeros_like(like) if grad is None else grad


class _RowLogSumExp(torch.autograd.Function):
    """``(s: (..., K, K), diagonal: float) -> (lse, positives)``, both ``(..., K)``:
    ``lse_i = log sum_j exp(s_ij + diagonal [j == i])`` and ``positives_i = s_ii``.

    One pass for both, so that an estimator built from them costs one K x K buffer forward
    (``exp(s - m)``, kept for the backward, which only rescales it) and one backward, without a
    mask tensor or the K x K zeros that autograd's ``diagonal`` backward would add. First
    derivatives only. ``t`` and ``m`` are returned as non-differentiable outputs so that they can
    be saved (and ``torch.vmap`` still works); callers use ``_row_logsumexp``.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(s: Tensor, diagonal: float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        t, m, lse = _shifted_exp(s.clone(memory_format=torch.contiguous_format), diagonal)
        return lse, _positives(s).clone(), t, m

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        lse, _, t, m = output
        ctx.mark_non_differentiable(t, m)
        # no K x K zeros for the gradients of t (and of unused outputs): None instead
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(t, m, lse)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_lse: Tensor | None, grad_positives: Tensor | None, *_: None):
        t, m, lse = ctx.saved_tensors
        grad_lse = _zeros_for_none(grad_lse, lse)
        # d lse_i / d s_ij = exp(s_ij + diagonal [j == i] - lse_i) = t_ij exp(m_i - lse_i)
        grad = t * (grad_lse * (m - lse).exp()).unsqueeze(-1)
        if grad_positives is not None:
            _positives(grad).add_(grad_positives)
        return grad, None


def _row_logsumexp(s: Tensor, diagonal: float) -> tuple[Tensor, Tensor]:
    """``(..., K, K) -> (lse, positives)``, see ``_RowLogSumExp``."""
    lse, positives, _, _ = _RowLogSumExp.apply(s, diagonal)
    return lse, positives


class _JSGradient(torch.autograd.Function):
    """``(..., K, K) -> (...)``: zero in value; its gradient is that of the Jensen-Shannon f-GAN
    objective of Nowozin et al. 2016, ``mean_i -softplus(-s_ii) - mean_{i!=j} softplus(s_ij)``,
    which is ``sigmoid(-s_ii) / K`` on the diagonal and ``-sigmoid(s_ij) / (K (K - 1))`` off it.

    Added to a detached value it trains with JS gradients while reporting that value, in one
    K x K pass (the sigmoid) and without evaluating the objective itself. First derivatives only.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(s: Tensor) -> Tensor:
        return s.new_zeros(s.shape[:-2])

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        ctx.save_for_backward(inputs[0])

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> Tensor:
        (s,) = ctx.saved_tensors
        k = s.shape[-1]
        ds = torch.sigmoid(s).mul_((grad / -(k * (k - 1)))[..., None, None])
        _positives(ds).copy_(torch.sigmoid(-_positives(s)) * (grad / k).unsqueeze(-1))
        return ds


def _put_at(t: Tensor, column: Tensor, value: Tensor | float) -> None:
    """In place on a contiguous ``t: (..., K, K)``: ``t[..., i, column_i] = value_i`` (``column,
    value: (..., K)``, or one number). Through ``index_put_`` on the flat view, which, unlike
    ``scatter_``, has a ``torch.vmap`` batching rule."""
    k = t.shape[-1]
    flat = column.flatten() + torch.arange(0, column.numel() * k, k, device=t.device)
    value = torch.as_tensor(value, dtype=t.dtype, device=t.device)
    t.view(-1).index_put_((flat,), value.flatten() if value.dim() else value)


def _sum_of_logs(mu: Tensor, group: int = 64) -> Tensor:
    """``(..., K) -> (...)``: ``sum_j log mu_j`` for ``mu`` in ``[1/2, 1]``, as the logs of
    products of ``group`` entries. A product of 64 such entries is at least ``2^-64``, far from
    underflow, and its rounding error is of the order of the sum of logs'; on CPU it costs about
    a third of an elementwise log, and leaves ``mu`` intact for the backward.
    """
    k = mu.shape[-1]
    whole = k - k % group
    total = mu[..., :whole].unflatten(-1, (whole // group, group)).prod(-1).log().sum(-1)
    return total + mu[..., whole:].prod(-1).log()


class _InterpolatedTerms(torch.autograd.Function):
    """The K x K part of ``interpolated``, in few passes each way (the ``exp(s - m)`` and ``mu``
    buffers are kept for the backward).

    ``(s: (..., K, K), log_b: (..., K), log_w: float) -> (lse, positives, J)``, all ``(..., K)``:
    ``lse_i = log sum_{j!=i} e^{s_ij}`` (the negatives), ``positives_i = s_ii`` and
    ``J_i = sum_{j!=i} log m_ij`` with ``m_ij = w sum_{k!=j} e^{s_ik} + b_i``.

    Stable at any scale: with ``L_i = log(w sum_k e^{s_ik} + b_i)``, ``m_ij = e^{L_i} mu_ij`` and
    ``mu_ij = 1 - w e^{s_ij - L_i}``. That form is accurate (``w e^{s_ij - L_i} <= 1/2``) except
    at the row's largest negative ``j*``, where it can cancel to ``log 0``; there ``mu_ij*`` is
    taken from the others, ``e^{s_ii}`` and the negatives but ``j*``. So ``j*`` is set aside
    before the exponentials, which are taken relative to the second largest negative: the sum of
    the others is then exact even when ``j*`` dominates it by more than the clamp's ``4 log(eps)``.
    Gradient, with ``rho_i = sum_{j!=i} 1 / mu_ij``:
    ``dJ_i/ds_ik = w e^{s_ik - L_i} (rho_i - [k != i] / mu_ik)`` and
    ``dJ_i/d log_b_i = e^{log_b_i - L_i} rho_i``, with the ``j*`` term of ``rho`` kept apart.
    First derivatives only.
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(s: Tensor, log_b: Tensor, log_w: float):
        u = s.clone(memory_format=torch.contiguous_format)
        _positives(u).fill_(-math.inf)
        top_score, top = u.max(-1)  # s_ij* and j*
        _put_at(u, top, -math.inf)
        # t_ij = e^{s_ij - shift_i} for j not in {i, j*}, shift_i the second largest negative
        t, shift, log_rest = _shifted_exp(u, -math.inf)
        _put_at(t, top, 0.0)
        lse = torch.logaddexp(top_score, log_rest)
        positives = _positives(s).clone()
        log_all = torch.logaddexp(log_w + torch.logaddexp(positives, lse), log_b)  # L_i
        gamma = (log_w + shift - log_all).exp()  # w e^{s_ij - L_i} = gamma_i t_ij
        # mu_ij = 1 - gamma_i t_ij, in [1/2, 1]; 1 at j = i and at j*, where t = 0
        mu = torch.addcmul(
            torch.ones((), dtype=t.dtype, device=t.device), t, gamma[..., None], value=-1
        )
        log_mu = _sum_of_logs(mu)
        log_m_top = torch.logaddexp(log_w + torch.logaddexp(positives, log_rest), log_b)
        joint = (s.shape[-1] - 2) * log_all + log_mu + log_m_top
        return lse, positives, joint, t, mu, top, shift, top_score, gamma, log_all, log_m_top

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        _, log_b, log_w = inputs
        lse, positives, _, *kept = output
        ctx.mark_non_differentiable(*kept)
        # no K x K zeros for the gradients of t and mu (and of unused outputs): None instead
        ctx.set_materialize_grads(False)
        ctx.log_w = log_w
        ctx.save_for_backward(lse, positives, log_b, *kept)

    @staticmethod
    @once_differentiable
    def backward(
        ctx,
        grad_lse: Tensor | None,
        grad_positives: Tensor | None,
        grad_joint: Tensor | None,
        *_: None,
    ):
        lse, positives, log_b, t, mu, top, shift, top_score, gamma, log_all, log_m_top = (
            ctx.saved_tensors
        )
        grad_lse, grad_positives, grad_joint = (
            _zeros_for_none(g, lse) for g in (grad_lse, grad_positives, grad_joint)
        )

        def over_m_top(log_numerator: Tensor) -> Tensor:
            return (log_numerator - log_m_top).exp()

        # ds_ik = t_ik (a_i - b_i / mu_ik), a_i = a_rest_i + b_i rho_i; t is 0 at k = i and
        # k = j*, filled in below. rho_i sums 1 / mu_ij over j not in {i, j*} (mu is 1 at both):
        # j* enters through 1 / m_ij*, which can overflow on its own (when j* dominates the row)
        # but not as e^{s_ik} / m_ij* for k != j*
        inverse_mu = mu.reciprocal()
        rho = inverse_mu.sum(-1) - 2.0
        b = grad_joint * gamma
        a = grad_lse * (shift - lse).exp() + grad_joint * over_m_top(ctx.log_w + shift) + b * rho
        grad = inverse_mu.mul_(-b.unsqueeze(-1)).add_(a.unsqueeze(-1)).mul_(t)
        grad_top = grad_lse * (top_score - lse).exp()
        grad_top += grad_joint * (ctx.log_w + top_score - log_all).exp() * rho
        _put_at(grad, top, grad_top)
        log_w_positives = ctx.log_w + positives
        _positives(grad).copy_(
            grad_positives
            + grad_joint * ((log_w_positives - log_all).exp() * rho + over_m_top(log_w_positives))
        )
        grad_log_b = grad_joint * ((log_b - log_all).exp() * rho + over_m_top(log_b))
        return grad, grad_log_b, None
