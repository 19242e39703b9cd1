"""The poly-view contrastive training loss on embeddings (Shidani et al. 2024, "Poly-View
Contrastive Learning", ICLR, arXiv 2403.05490, Algorithm 1; docs/polyview.md#polyview_loss).

``polyview_loss`` and its module ``PolyViewLoss`` take embeddings ``z: (..., K, M, D)`` rather
than scores: the cosine scores of every anchor view against every candidate view are never
needed as a ``(K, M, K, M)`` tensor, only the positives and each anchor's log partition over the
other samples (``mibounds.tiled``), so that memory can stay linear in ``K M``. The candidate sets
and aggregates are those of ``polyview.contrastive_estimate`` (``NEGATIVES``,
``LOSS_AGGREGATES``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from mibounds._checks import check_at_least, check_choice, check_positive
from mibounds._contrastive import _anchor_losses, _partition_from_negatives
from mibounds.polyview import LOSS_AGGREGATES, NEGATIVES
from mibounds.tiled import cosine_terms

__all__ = ["PolyViewLoss", "polyview_loss"]


def polyview_loss(
    z: Tensor,
    temperature: float = 0.1,
    aggregate: str = "arithmetic",
    negatives: str = "all_views",
    *,
    candidates: Tensor | None = None,
    offset: int = 0,
    memory_budget: int = 2**30,
    validate_args: bool = True,
) -> Tensor:
    """Poly-view contrastive training loss (Shidani et al. 2024, Algorithm 1), to minimise.

    Scores are cosine similarities over the temperature, ``S[i,a,j,b] = <z_ia, c_jb> / tau``
    (unit-normalised), with anchors ``z`` and candidates ``c`` (default ``z``). For anchor
    ``(i, a)`` and target view ``b != a``, ``CE[i,a,b] = -S[i,a,i,b] + logsumexp_{C(i,a,b)} S``:

    - ``"all_views"``: ``C(i,a,b)`` = the positive ``(i, b)`` and every view of every other
      sample, ``{(j, n): j != i}``; the anchor's other views are masked. At M = 2 this is
      SimCLR's NT-Xent over 2K anchors with 2K - 1 candidates each. It is a loss, **not** a
      bound: one negative sample's M views are correlated, so the candidates are not
      exchangeable, and ``log(M(K-1) + 1) - loss`` can exceed the true MI (docs/polyview.md).
    - ``"same_view"``: ``C(i,a,b) = {(j, b)}``, the candidates of the bounds; without extra
      candidates ``loss = log K - arithmetic(S)`` (or ``geometric(S)``), the cross-entropy form
      of the bound; with N candidates, ``log N`` minus the same bound with N - K extra negatives.
    - ``"view_pairs"``: ``C(i,a,b)`` = the positive and views a and b of every other sample,
      each view pair's NT-Xent (2K - 1 candidates): with the geometric aggregate, Multi-Crop's
      loss (Caron et al. 2020's multi-crop with SimCLR's loss), not a bound either.

    Per anchor, geometric: ``L = mean_{b!=a} CE``; arithmetic: ``L = -log mean_{b!=a} e^{-CE}``;
    arithmetic_printed: ``L = logsumexp_{b!=a} CE - log N``, Algorithm 1's arithmetic line as
    printed in the paper's pseudocode (a soft-max of the per-pair losses with a K constant, not
    the soft-min the arithmetic-mean bound needs; at M = 2 it is the other aggregates' loss minus
    log N). ``loss = mean_{i,a} L[i,a]``, in nats. ``i`` stands for the anchor's own candidate row
    ``offset + i`` throughout, N for the candidate samples (K without ``candidates``).

    Args:
        z: ``(..., K, M, D)`` anchor embeddings (need not be normalised).
        temperature: ``tau > 0``.
        aggregate: one of ``LOSS_AGGREGATES``.
        negatives: one of ``NEGATIVES``.
        candidates: ``(..., N, M, D)`` candidate embeddings, e.g. gathered from every process;
            default ``z``.
        offset: anchor ``i``'s positive is ``candidates[offset + i]``.
        memory_budget: bytes the ``(K, M, N, M)`` scores may take; beyond it they are computed
            in blocks of candidate rows and recomputed in the backward, so memory grows as
            ``K M (D + block)`` rather than ``(K M)^2`` (``mibounds.tiled``; same value and
            gradient to rounding).
    Returns:
        ``(...)``: the loss, a scalar for unbatched ``z``.

    Example:
        >>> import torch
        >>> from mibounds.polyview_loss import polyview_loss
        >>> z = torch.randn(32, 4, 16, generator=torch.Generator().manual_seed(0))
        >>> loss = polyview_loss(z, temperature=0.2)  # arithmetic, all-view candidates
        >>> bool(loss > 0), tuple(loss.shape)
        (True, ())
    """
    tau = check_positive(temperature, "temperature")
    check_choice(aggregate, LOSS_AGGREGATES, "aggregate")
    check_choice(negatives, NEGATIVES, "negatives")
    # the positives and the other samples' log partition per view, dense or in blocks
    pos, neg = cosine_terms(
        z,
        tau,
        candidates=candidates,
        offset=offset,
        memory_budget=memory_budget,
        validate_args=validate_args,
    )
    ce = _partition_from_negatives(pos, neg, negatives) - pos
    n = z.shape[-3] if candidates is None else candidates.shape[-3]
    return _anchor_losses(ce, aggregate, n).mean((-2, -1))


Gather = Callable[[Tensor], tuple[Tensor, int]]


class PolyViewLoss(nn.Module):
    """Poly-view contrastive loss as a module (``polyview_loss``, Shidani et al. 2024, Alg. 1).

    Holds the temperature, aggregate and negatives, and an optional ``gather`` hook for
    multi-process training: ``gather(z_local: (K, M, D)) -> (z_global: (N, M, D), offset)``,
    with this process's samples at rows ``[offset, offset + K)`` of ``z_global``. Anchors are the
    local rows, candidates the global ones; gradients reach other processes' rows only if the
    hook's all-gather is differentiable. ``memory_budget``: bytes the scores may take before
    they are computed in blocks (``polyview_loss``).

    With ``negatives="all_views"`` (the default, NT-Xent at M = 2) the value is a training loss,
    **not** an MI bound: the M views of one negative sample are correlated candidates, which
    breaks the exchangeability every contrastive bound needs, and ``log(M(K-1) + 1) - loss`` can
    exceed the true MI. ``negatives="same_view"`` gives ``log N`` minus a bound.

    ``forward(z: (..., K, M, D)) -> (...)``.

    Example:
        >>> import torch
        >>> from mibounds.polyview_loss import PolyViewLoss, polyview_loss
        >>> z = torch.randn(8, 4, 16, generator=torch.Generator().manual_seed(0))
        >>> loss = PolyViewLoss(temperature=0.2, aggregate="geometric")
        >>> bool(torch.isclose(loss(z), polyview_loss(z, 0.2, "geometric")))
        True
    """

    def __init__(
        self,
        temperature: float = 0.1,
        aggregate: str = "arithmetic",
        negatives: str = "all_views",
        gather: Gather | None = None,
        memory_budget: int = 2**30,
    ) -> None:
        super().__init__()
        self.temperature = check_positive(temperature, "temperature")
        self.aggregate = check_choice(aggregate, LOSS_AGGREGATES, "aggregate")
        self.negatives = check_choice(negatives, NEGATIVES, "negatives")
        self.gather = gather
        self.memory_budget = check_at_least(memory_budget, 1, "memory_budget")

    def forward(self, z: Tensor, *, validate_args: bool = True) -> Tensor:
        candidates, offset = (None, 0) if self.gather is None else self.gather(z)
        return polyview_loss(
            z,
            self.temperature,
            self.aggregate,
            self.negatives,
            candidates=candidates,
            offset=offset,
            memory_budget=self.memory_budget,
            validate_args=validate_args,
        )

    def extra_repr(self) -> str:
        return (
            f"temperature={self.temperature}, aggregate={self.aggregate!r}, "
            f"negatives={self.negatives!r}, gather={self.gather is not None}"
        )
