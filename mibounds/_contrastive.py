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


def _other_views(x: Tensor) -> Tensor:
    """``(..., M, M) -> (..., M, M - 1)``: ``x[..., a, b]`` for ``b != a``, in order (a copy).

    In the flattened ``(a, b)`` axis the diagonal sits at multiples of ``M + 1``: dropping entry
    0 and viewing the other ``M^2 - 1`` as ``(M - 1, M + 1)`` puts every remaining diagonal
    entry in the last column. The diagonal then gets an exactly zero gradient (an additive
    ``-inf`` mask would give it ``exp(4 log eps)`` times the row's, tiny numbers that can
    reach the scores' gradient as subnormals and slow the matmuls several times on CPU).
    """
    m = x.shape[-1]
    flat = x.flatten(-2)[..., 1:].unflatten(-1, (m - 1, m + 1))[..., :m]
    return flat.reshape(*x.shape[:-2], m, m - 1)


def _anchor_losses(ce: Tensor, aggregate: str, n: int) -> Tensor:
    """``CE: (..., K, M, M) -> (..., K, M)``: the loss ``L[i, a]`` of each anchor from its
    per-target-view cross-entropies ``CE[i, a, b]``, over ``b != a`` (the diagonal is ignored):

    geometric ``mean_b CE``; arithmetic ``-log mean_b exp(-CE)``; arithmetic_printed
    ``logsumexp_b CE - log N`` (Algorithm 1's line as printed, N the candidate samples).
    """
    other = _other_views(ce)
    if aggregate == "geometric":
        return other.mean(-1)
    if aggregate == "arithmetic_printed":
        return logsumexp(other, -1) - math.log(n)
    return math.log(other.shape[-1]) - logsumexp(-other, -1)
