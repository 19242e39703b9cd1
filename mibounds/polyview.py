"""Poly-view MI estimators on scores (the training loss on embeddings: ``polyview_loss``).

K samples with M views each (Shidani et al. 2024, "Poly-View Contrastive Learning", ICLR,
arXiv 2403.05490; docs/polyview.md). Conventions:

- ``S[..., i, a, j, b] = f(x_{i,a}, x_{j,b})``: a pairwise critic between every two views of
  every two samples, shape ``(..., K, M, K, M)``; anchors are ``(i, a)``.
- ``F[..., a, i, j] = F(x_{i,a}, X_{j,\\a})``: a set critic between one view and the *rest* of a
  sample, shape ``(..., M, K, K)``.
- Leading dimensions are batch dimensions; every estimator returns nats, of shape ``(...)``.

The bounds use *same-view candidates*: for anchor ``(i, a)`` and target view ``b != a`` the K
candidates are ``x_{j,b}, j = 1..K``. They are i.i.d. and exchangeable under the product of
marginals, which is what makes the per-pair likelihood ratio

    log r[i, a, b] = S[i, a, i, b] - logsumexp_j S[i, a, j, b] + log K

average to one, and so every quantity here called a bound a lower bound (docs/polyview.md).

The paper's Algorithm 1 reads its candidates differently: the positive ``(i, b)`` and *every
view of every other sample*, ``1 + M(K-1)`` candidates (``negatives="all_views"``). Its views of
one negative sample are correlated, so those candidates are not exchangeable: read with the
constant ``log(1 + M(K-1))`` the result is an **estimate, not a bound**, and it can exceed the
true MI (at the analytic optimal critic, K = 2, M = 16, rho = 0.95: about 1.69 nats against a
one-vs-rest MI of 1.47). ``multicrop``, ``arithmetic``, ``geometric``, ``contrastive_estimate``
and the training loss (``mibounds.polyview_loss``) take either candidate set (docs/polyview.md,
"Two readings of the paper's Algorithm 1").

All arithmetic runs in float32 at least (half precision is upcast), the diagonal ``a = b`` is
excluded by masking with ``-inf`` or by indexing, and nothing loops over K, M or view pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as nnf
from torch import Tensor

from mibounds._checks import (
    check_choice,
    check_finite,
    check_poly_scores,
    check_views,
    compute_dtype,
)
from mibounds._contrastive import _anchor_losses, _partition_from_negatives
from mibounds._numerics import cross_entropy, logsumexp
from mibounds.bounds import infonce

__all__ = [
    "AGGREGATES",
    "LOSS_AGGREGATES",
    "NEGATIVES",
    "arithmetic",
    "contrastive_estimate",
    "geometric",
    "multicrop",
    "one_vs_rest",
    "set_scores",
    "sufficient_statistics",
]

AGGREGATES = ("arithmetic", "geometric")
"""How the bounds and the set critic combine an anchor's target views ``b != a``."""
LOSS_AGGREGATES = (*AGGREGATES, "arithmetic_printed")
"""The aggregates of ``polyview_loss`` and ``contrastive_estimate``: the two above and
Algorithm 1's arithmetic line as printed (``logsumexp_b CE - log K``, a soft-max of the losses;
not a bound, see ``polyview_loss``)."""
NEGATIVES = ("all_views", "same_view", "view_pairs")
"""Candidate sets of an anchor ``(i, a)`` and target view ``b``: every view of every other
sample with the positive (Algorithm 1, ``1 + M(K-1)`` candidates), the K samples' view b (the
bounds), or view pair (a, b)'s NT-Xent (``2K - 1`` candidates, Multi-Crop's)."""

Bound = Callable[..., Tensor]
PairCritic = Callable[[Tensor, Tensor], Tensor]


# ------------------------------------------------------------------------------------ checks


def _check_bound(bound: Bound) -> None:
    """A pairwise estimator is a function; its name (a string) is a mistake, not a choice here
    (``catalogue.entry(name).estimator()`` turns a name into one)."""
    if not callable(bound):
        raise ValueError(
            f"bound must be a pairwise estimator (a callable, e.g. mibounds.bounds.nwj), got "
            f"{bound!r}"
        )


def _check_estimate(value: Tensor, name: str, validate_args: bool) -> Tensor:
    """Exp-type bounds (NWJ, TUBA) overflow to -inf on large negatives' scores: say so."""
    if validate_args:
        check_finite(value, f"{name} (the pairwise bound overflowed: scores too large)")
    return value


# --------------------------------------------------------------------- shared building blocks


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


def _candidates_last(S: Tensor) -> Tensor:
    """``(..., K, M, N, M) -> (..., K, M, M, N)``, contiguous: the candidate axis j last.

    On CPU a reduction over a strided axis with a short inner axis (M) is 1.5-4x slower,
    forward + backward, than this copy; scores from ``mibounds.critics`` already have j
    innermost, and then the copy is free.
    """
    return S.transpose(-1, -2).contiguous()


def _logsumexp_same_view(S: Tensor) -> Tensor:
    """``(..., K, M, N, M) -> (..., K, M, M)``: ``logsumexp_j S[i, a, j, b]``, as ``[i, a, b]``."""
    return logsumexp(_candidates_last(S), -1)


def _same_view_cross_entropy(S: Tensor) -> Tensor:
    """``(..., K, M, K, M) -> (..., K, M, M)``: per anchor ``(i, a)`` and target view ``b``,
    ``CE[i, a, b] = logsumexp_j S[i, a, j, b] - S[i, a, i, b]`` (``log K - log r``)."""
    k, m = S.shape[-4], S.shape[-3]
    own_sample = torch.arange(k, device=S.device).view(k, 1, 1).expand(*S.shape[:-4], k, m, m)
    return cross_entropy(_candidates_last(S), own_sample)


def _positives(S: Tensor, offset: int = 0) -> Tensor:
    """``(..., K, M, N, M) -> (..., K, M, M)``: ``pos[i, a, b] = S[i, a, offset + i, b]``
    (a view of S, no copy)."""
    k = S.shape[-4]
    return S.narrow(-2, offset, k).diagonal(dim1=-4, dim2=-2).movedim(-1, -3)


def _other_samples(k: int, n: int, offset: int, device: torch.device) -> Tensor:
    """``(K, N)`` boolean, True where candidate row j is not anchor i's own row ``offset + i``."""
    return torch.arange(n, device=device) != offset + torch.arange(k, device=device)[:, None]


def _log_partition(S: Tensor, pos: Tensor, negatives: str) -> Tensor:
    """``S: (..., K, M, K, M)``, ``pos: (..., K, M, M)`` -> ``(..., K, M, M)``: the log
    partition of each anchor and target view over its candidate set (``NEGATIVES``)."""
    if negatives == "same_view":
        return _logsumexp_same_view(S)
    k = S.shape[-4]
    keep = _other_samples(k, k, 0, S.device)[:, None, :, None]
    neg = _logsumexp_same_view(S + _log_mask(keep, S.dtype))  # (..., K, M, M) over j != i
    return _partition_from_negatives(pos, neg, negatives)


def _log_candidates(n: int, m: int, negatives: str) -> float:
    """The log of the candidate count of one anchor and target view, the constant of the
    contrastive estimate: ``log N`` (same_view), ``log(1 + M(N-1))`` (all_views) or
    ``log(2N - 1)`` (view_pairs)."""
    count = {"same_view": n, "all_views": 1 + m * (n - 1), "view_pairs": 2 * n - 1}
    return math.log(count[negatives])


def _off_diagonal_view_pairs(s: Tensor) -> Tensor:
    """``(..., K, M, K, M) -> (..., M - 1, M, K, K)``: the ``S[:, a, :, b]`` for ``a != b``.

    One contiguous copy to ``(..., M*M, K, K)``; then, in the flattened ``(a, b)`` axis the
    diagonal sits at multiples of ``M + 1``, so dropping entry 0 and viewing the other ``M^2 - 1``
    as ``(M - 1, M + 1)`` puts every remaining diagonal entry in the last column. Slicing it off
    is a view, and its backward a plain copy (advanced indexing's scatter-add is several times
    slower).
    """
    m, k = s.shape[-1], s.shape[-2]
    flat = s.movedim((-3, -1), (-4, -3)).reshape(*s.shape[:-4], m * m, k, k)
    return flat[..., 1:, :, :].unflatten(-3, (m - 1, m + 1))[..., :m, :, :]


# ------------------------------------------------------------------------------- estimators


def multicrop(
    S: Tensor,
    bound: Bound = infonce,
    *,
    negatives: str = "same_view",
    validate_args: bool = True,
) -> Tensor:
    """Multi-Crop estimate of the pairwise MI ``I(x_a; x_b)``, in nats; Shidani et al. 2024, §2
    (Prop 2.1: the same bound as one view pair, with lower variance).

    ``I_MC = mean_{a != b} bound(S[:, a, :, b])``  (``negatives="same_view"``, a bound)

    With ``bound=infonce`` this equals ``geometric(S)`` to rounding, but it bounds the smaller
    pairwise MI. Any pairwise estimator of ``mibounds.bounds`` (or a ``functools.partial`` of one)
    can be plugged in; it is called once, on the M(M-1) view pairs stacked as
    ``(..., M - 1, M, K, K)`` (so a stateful ``MINE`` needs ``batch_shape=(..., M - 1, M)``).

    ``negatives="all_views"`` is the all-view reading (docs/polyview.md): each view pair's
    NT-Xent, whose anchor ``(i, a)`` sees the positive ``(i, b)`` and views a and b of every
    other sample, 2K - 1 candidates, read with their constant:
    ``log(2K - 1) - mean_{i, a != b} CE[i, a, b]``. An **estimate, not a bound** (views of one
    negative sample are correlated candidates); it takes no pairwise ``bound``.

    Args:
        S: ``(..., K, M, K, M)`` poly-view scores, ``S[i, a, j, b] = f(x_{i,a}, x_{j,b})``.
        bound: ``f(scores: (..., K, K), *, validate_args) -> (...)`` (same-view candidates).
        negatives: ``"same_view"`` (the bound) or ``"all_views"`` (the NT-Xent reading).
    Returns:
        ``(...)``: the mean over the ordered view pairs.

    Example:
        >>> import torch
        >>> from mibounds import polyview
        >>> from mibounds.gaussian import multiview_log_ratio, sample_views
        >>> z = sample_views(64, 4, 1, 0.9, generator=torch.Generator().manual_seed(0))
        >>> S = multiview_log_ratio(z, 0.9)  # the optimal pairwise critic, (64, 4, 64, 4)
        >>> bool(polyview.multicrop(S) <= polyview.multicrop(S, negatives="all_views"))
        True
    """
    check_choice(negatives, ("all_views", "same_view"), "negatives")
    s = check_poly_scores(S, validate_args)
    if negatives == "all_views":
        if bound is not infonce:
            raise ValueError(
                "multicrop with negatives='all_views' reads each view pair's NT-Xent (2K - 1 "
                f"candidates) and takes no pairwise bound, got bound={bound!r}"
            )
        return contrastive_estimate(s, "geometric", "view_pairs", validate_args=False)
    _check_bound(bound)
    value = bound(_off_diagonal_view_pairs(s), validate_args=False).mean((-2, -1))
    return _check_estimate(value, "multicrop", validate_args)


def contrastive_estimate(
    S: Tensor,
    aggregate: str = "arithmetic",
    negatives: str = "same_view",
    *,
    validate_args: bool = True,
) -> Tensor:
    """A poly-view contrastive estimate on scores, in nats: the log of the candidate count
    minus the loss of ``polyview_loss`` on ``S`` (Shidani et al. 2024, Algorithm 1;
    docs/polyview.md):

    ``I = log C - mean_{i,a} L[i,a]``,  ``CE[i,a,b] = logsumexp_{C(i,a,b)} S[i,a,.,.] - S[i,a,i,b]``

    with ``L`` the ``aggregate`` of ``CE`` over the target views ``b != a`` (geometric: the
    mean; arithmetic: ``-log mean_b exp(-CE)``; arithmetic_printed: ``logsumexp_b CE - log K``)
    and the candidate set and constant ``C`` of ``negatives``: same_view ``K`` (the bounds:
    ``arithmetic(S)``, ``geometric(S)``), all_views ``1 + M(K-1)``, view_pairs ``2K - 1``
    (``multicrop(S, negatives="all_views")``). Only same_view with the arithmetic or geometric
    aggregate is a bound; the others are estimates that can exceed the true MI.

    Args:
        S: ``(..., K, M, K, M)``.
        aggregate: one of ``LOSS_AGGREGATES``.
        negatives: one of ``NEGATIVES``.
    Returns:
        ``(...)``.

    Example:
        >>> import math, torch
        >>> from mibounds import polyview
        >>> S = torch.randn(8, 3, 8, 3, generator=torch.Generator().manual_seed(0))
        >>> value = polyview.contrastive_estimate(S, "geometric", "all_views")
        >>> bool(value <= math.log(1 + 3 * 7))  # the all-view constant caps it
        True
    """
    check_choice(aggregate, LOSS_AGGREGATES, "aggregate")
    check_choice(negatives, NEGATIVES, "negatives")
    s = check_poly_scores(S, validate_args)
    k, m = s.shape[-4], s.shape[-3]
    if negatives == "same_view":
        ce = _same_view_cross_entropy(s)  # the subtraction fused into the logsumexp
    else:
        pos = _positives(s)
        ce = _log_partition(s, pos, negatives) - pos
    return _log_candidates(k, m, negatives) - _anchor_losses(ce, aggregate, k).mean((-2, -1))


def arithmetic(S: Tensor, *, negatives: str = "same_view", validate_args: bool = True) -> Tensor:
    """Arithmetic PVC lower bound on the one-vs-rest MI ``I(x_a; X_{\\a})``, in nats;
    Shidani et al. 2024, Arithmetic PVC (docs/polyview.md).

    ``I_A = mean_{i,a} log( mean_{b!=a} r[i,a,b] )``,
    ``log r[i,a,b] = S[i,a,i,b] - logsumexp_j S[i,a,j,b] + log K``;  ``I_A <= log K``.

    A bound because NWJ with critic ``1 + log mean_b r_b`` is one and ``E[r_b] = 1`` for
    same-view candidates. ``arithmetic(S) >= geometric(S)`` on every batch (Jensen).

    ``negatives="all_views"`` is the paper's Algorithm 1 read as an estimate: candidates the
    positive and every view of every other sample, ``log(1 + M(K-1)) - L`` with the arithmetic
    aggregate of ``contrastive_estimate``. It is **not a bound**: at the analytic optimal pairwise
    critic with K = 2, M = 16, rho = 0.95 (d = 1) it reads about 1.69 nats against a one-vs-rest
    MI of 1.47 (docs/polyview.md).

    Args:
        S: ``(..., K, M, K, M)``.
        negatives: ``"same_view"`` (the bound) or ``"all_views"`` (the all-view estimate).
    Returns:
        ``(...)``.

    Example:
        >>> import math, torch
        >>> from mibounds import polyview
        >>> S = torch.randn(8, 3, 8, 3, generator=torch.Generator().manual_seed(0))
        >>> bool(polyview.geometric(S) <= polyview.arithmetic(S) <= math.log(8))
        True
    """
    check_choice(negatives, ("all_views", "same_view"), "negatives")
    return contrastive_estimate(S, "arithmetic", negatives, validate_args=validate_args)


def geometric(S: Tensor, *, negatives: str = "same_view", validate_args: bool = True) -> Tensor:
    """Geometric PVC lower bound on the one-vs-rest MI ``I(x_a; X_{\\a})``, in nats;
    Shidani et al. 2024, Geometric PVC (docs/polyview.md).

    ``I_G = mean_{i,a} mean_{b!=a} log r[i,a,b]``  (``log r`` as in ``arithmetic``),
    ``I_G <= I_A <= log K``. The same number as ``multicrop(S)``, reported against the larger
    one-vs-rest MI.

    ``negatives="all_views"``: ``log(1 + M(K-1)) - mean_{i,a,b!=a} CE`` over Algorithm 1's
    candidates, an estimate, not a bound (see ``arithmetic``); unlike the same-view numbers it
    differs from Multi-Crop's all-view reading, whose constant stays ``log(2K - 1)``.

    Args:
        S: ``(..., K, M, K, M)``.
        negatives: ``"same_view"`` (the bound) or ``"all_views"`` (the all-view estimate).
    Returns:
        ``(...)``.

    Example:
        >>> import torch
        >>> from mibounds import polyview
        >>> S = torch.randn(8, 3, 8, 3, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose(polyview.geometric(S), polyview.multicrop(S)))
        True
    """
    check_choice(negatives, ("all_views", "same_view"), "negatives")
    return contrastive_estimate(S, "geometric", negatives, validate_args=validate_args)


def set_scores(S: Tensor, aggregate: str = "arithmetic", *, validate_args: bool = True) -> Tensor:
    """A set critic from a pairwise one: aggregate the scores against the rest of a sample;
    Shidani et al. 2024 (the critics behind Arithmetic / Geometric PVC).

    arithmetic: ``F[a,i,j] = log mean_{b!=a} exp S[i,a,j,b]``;
    geometric:  ``F[a,i,j] = mean_{b!=a} S[i,a,j,b]``.

    ``one_vs_rest(set_scores(S, ...))`` is a bound on ``I(x_a; X_{\\a})`` for every aggregate.
    It is not ``arithmetic(S)``: that normalises every target view separately before averaging,
    this aggregates the critic and normalises once.

    Args:
        S: ``(..., K, M, K, M)``.
        aggregate: ``"arithmetic"`` or ``"geometric"``.
    Returns:
        ``F: (..., M, K, K)``.

    Example:
        >>> import torch
        >>> from mibounds import polyview
        >>> S = torch.randn(8, 3, 8, 3, generator=torch.Generator().manual_seed(0))
        >>> F = polyview.set_scores(S)  # (M, K, K) = (3, 8, 8)
        >>> tuple(F.shape), bool(polyview.one_vs_rest(F) <= torch.log(torch.tensor(8.0)))
        ((3, 8, 8), True)
    """
    check_choice(aggregate, AGGREGATES, "aggregate")
    s = check_poly_scores(S, validate_args)
    m = s.shape[-1]
    # one copy to (..., a, b, i, j): the reduction over b then runs over whole contiguous
    # (K, K) blocks instead of over runs of M, and F comes out contiguous
    by_view_pair = s.movedim((-3, -1), (-4, -3)).contiguous()
    same_view = _same_view(m, s.device)[:, :, None, None]
    return _reduce_other_views(by_view_pair, same_view, aggregate, dim=-3)


def one_vs_rest(F: Tensor, bound: Bound = infonce, *, validate_args: bool = True) -> Tensor:
    """One-vs-rest lower bound on ``I(x_a; X_{\\a})``, in nats; Shidani et al. 2024 (Thm 2.1 for
    ``bound=nwj``: the generalized NWJ).

    ``I_1vR = mean_a bound(F[a])``

    Every pairwise bound carries over: it is applied to the pair ``(x_a, X_{\\a})`` with K i.i.d.
    tuples (docs/polyview.md#why-the-bounds-hold).

    Args:
        F: ``(..., M, K, K)`` set scores, ``F[a, i, j] = F(x_{i,a}, X_{j,\\a})``.
        bound: ``f(scores: (..., K, K), *, validate_args) -> (...)``.
    Returns:
        ``(...)``.

    Example:
        >>> import torch
        >>> from mibounds import bounds, critics, gaussian, polyview
        >>> z = gaussian.sample_views(256, 4, 1, 0.9, generator=torch.Generator().manual_seed(0))
        >>> F = critics.AnalyticOneVsRestCritic(0.9)(z)  # the exact set critic, (4, 256, 256)
        >>> estimate = polyview.one_vs_rest(F, bounds.infonce)
        >>> bool(0.9 < estimate < gaussian.one_vs_rest_mi(0.9, 1, 4) + 0.05)
        True
    """
    if not isinstance(F, Tensor):
        raise ValueError(f"F must be a torch.Tensor, got {type(F).__name__}")
    shape = tuple(F.shape)
    if F.dim() < 3 or shape[-2] != shape[-1]:
        raise ValueError(f"F must have shape (..., M, K, K), got shape {shape}")
    if shape[-3] < 2:
        raise ValueError(f"F needs M >= 2 views, got M = {shape[-3]} (shape {shape})")
    if shape[-1] < 2:
        raise ValueError(f"F needs K >= 2 samples, got K = {shape[-1]} (shape {shape})")
    _check_bound(bound)
    if validate_args:
        check_finite(F, "F")
    value = bound(compute_dtype(F), validate_args=False).mean(-1)
    return _check_estimate(value, "one_vs_rest", validate_args)


def _dot(x: Tensor, y: Tensor) -> Tensor:
    return x @ y.transpose(-1, -2)


def sufficient_statistics(
    z: Tensor,
    critic: PairCritic | None = None,
    *,
    normalize: bool = False,
    bound: Bound = infonce,
    validate_args: bool = True,
) -> Tensor:
    """Sufficient-statistics lower bound on ``I(x_a; X_{\\a})``, in nats; Shidani et al. 2024,
    Thm 2.4 and Algorithm 2.

    ``T[j,a] = mean_{b!=a} z[j,b]`` (optionally re-normalised to unit length),
    ``F[a,i,j] = critic(z[i,a], T[j,a])``,  ``I_SS = one_vs_rest(F, bound)``.

    A bound for any critic; tight when the critic is the optimal one and the rest enters it
    only through its mean (as for equicorrelated Gaussians, docs/gaussian.md#analytic-critics).

    Args:
        z: ``(..., K, M, D)`` embeddings (or data) of K samples with M views.
        critic: ``(x: (..., K, D), y: (..., K, D)) -> (..., K, K)``, called once with the view
            axis among the leading dims (``x, y: (..., M, K, D)``); default the dot product.
        normalize: re-normalise ``T`` to unit length (for cosine-similarity embeddings).
        bound: the pairwise bound passed to ``one_vs_rest``.
    Returns:
        ``(...)``.

    Example:
        >>> import torch
        >>> from mibounds import polyview
        >>> z = torch.randn(16, 4, 8, generator=torch.Generator().manual_seed(0))
        >>> value = polyview.sufficient_statistics(z, normalize=True)  # the dot-product critic
        >>> bool(value <= torch.log(torch.tensor(16.0)))
        True
    """
    _check_bound(bound)
    x = check_views(z, validate_args)
    m = x.shape[-2]
    rest = (x.sum(-2, keepdim=True) - x) / (m - 1)
    if normalize:
        rest = nnf.normalize(rest, dim=-1)
    scores = (critic or _dot)(x.movedim(-2, -3), rest.movedim(-2, -3))
    expected = (*x.shape[:-3], m, x.shape[-3], x.shape[-3])
    if tuple(scores.shape) != expected:
        raise ValueError(
            f"critic must map x, y: (..., M, K, D) to (..., M, K, K) = {expected}, "
            f"got shape {tuple(scores.shape)}"
        )
    return one_vs_rest(scores, bound, validate_args=validate_args)
