"""Per-anchor pieces shared by the poly-view estimates on scores (``mibounds.polyview``) and the
embedding-level training loss (``mibounds.polyview_loss``), on ``(..., K, M, M)`` tensors indexed
``[i, a, b]`` (anchor sample i, anchor view a, target view b; docs/polyview.md). A leaf: it
imports only the other leaves.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mibounds._numerics import logsumexp


def _same_view(m: int, device: torch.device) -> Tensor:
    """``(M, M)`` boolean mask, True on the excluded diagonal ``a == b``."""
    return torch.eye(m, dtype=torch.bool, device=device)


def _log_mask(keep: Tensor, dtype: torch.dtype) -> Tensor:
    """``0`` where ``keep``, ``-inf`` elsewhere: added to scores, it drops candidates."""
    return torch.zeros(keep.shape, dtype=dtype, device=keep.device).masked_fill(~keep, -math.inf)


def _reduce_other_views(x: Tensor, same_view: Tensor, aggregate: str, dim: int = -1) -> Tensor:
    """Aggregate the target-view axis ``dim`` (b) over ``b != a``.

    arithmetic: ``log mean_{b!=a} exp(x)``; geometric: ``mean_{b!=a} x``. ``same_view`` is the
    diagonal mask, broadcastable to ``x`` with ``a`` and ``b`` on their axes.
    """
    m = x.shape[dim]
    if aggregate == "arithmetic":
        # an additive -inf mask costs one pass forward and none backward (masked_fill: two each)
        return logsumexp(x + _log_mask(~same_view, x.dtype), dim) - math.log(m - 1)
    return x.masked_fill(same_view, 0.0).sum(dim) / (m - 1)


def _partition_from_negatives(pos: Tensor, neg: Tensor, negatives: str) -> Tensor:
    """``(..., K, M, M)`` each -> ``(..., K, M, M)``: the log partition over the candidate set
    of anchor ``(i, a)`` and target view ``b``, from the positive ``pos[i, a, b]`` and
    ``neg[i, a, b] = logsumexp_{j != i} S[i, a, j, b]`` (the other samples' view b):

    - same_view: ``logaddexp(neg[i,a,b], pos[i,a,b])`` (K candidates);
    - all_views: ``logaddexp(logsumexp_n neg[i,a,n], pos[i,a,b])`` (1 + M(K-1));
    - view_pairs: ``logsumexp(pos[i,a,b], neg[i,a,b], neg[i,a,a])`` (2K - 1, NT-Xent's).
    """
    if negatives == "same_view":
        return torch.logaddexp(neg, pos)
    if negatives == "all_views":
        return torch.logaddexp(logsumexp(neg, -1, keepdim=True), pos)
    own_view = neg.diagonal(dim1=-2, dim2=-1).unsqueeze(-1)  # (..., K, M, 1): neg[i, a, a]
    return logsumexp(torch.stack(torch.broadcast_tensors(pos, neg, own_view)), 0)


def _anchor_losses(ce: Tensor, aggregate: str, n: int) -> Tensor:
    """``CE: (..., K, M, M) -> (..., K, M)``: the loss ``L[i, a]`` of each anchor from its
    per-target-view cross-entropies ``CE[i, a, b]``, over ``b != a`` (the diagonal is ignored):

    geometric ``mean_b CE``; arithmetic ``-log mean_b exp(-CE)``; arithmetic_printed
    ``logsumexp_b CE - log N`` (Algorithm 1's line as printed, N the candidate samples).
    """
    m = ce.shape[-1]
    same_view = _same_view(m, ce.device)
    if aggregate == "arithmetic_printed":
        # logsumexp_b CE - log N = log mean_b exp(CE) + log(M - 1) - log N
        return _reduce_other_views(ce, same_view, "arithmetic") + math.log((m - 1) / n)
    return -_reduce_other_views(-ce, same_view, aggregate)
