"""Training objectives for the image trainer: a registry of losses on multi-view embeddings.

Every objective is an ``nn.Module`` with ``forward(z: (K, M, D), indices: (K,)) -> ()``, the
loss to minimise for K images with M views each (``indices`` are the images' dataset indices, for
objectives with per-item state, SogCLR's; the others ignore them). Its ``state_dict`` goes into
the checkpoint. ``OBJECTIVES`` maps a name to an ``Objective``: a builder, its extra
hyperparameters (each becomes a ``--flag`` of ``mibounds vision train``) and the view counts it
accepts. Adding one is a builder and a ``register`` call, as the SogCLR and Barlow Twins
entries at the end of this module::

    register("barlow-multiview", _barlow, "...", params={"beta": 0.0051})

Scores are cosine similarities over the temperature, ``S[i,a,j,b] = <z_ia, z_jb> / tau`` with
unit-normalised embeddings (Barlow Twins has no scores and ignores the temperature).

Multi-process training: a builder gets ``ctx.gather`` (``None`` in one process). Losses over
local anchors and gathered candidates take it directly (``PolyViewLoss``, ``SogCLRLoss``);
losses that need the whole ``(K, M, K, M)`` score tensor, or statistics over the whole batch
(Barlow Twins' standardisation), are wrapped in ``EmbeddingLoss(..., global_batch=True)``, which
computes them on the gathered batch in every process; both give the single-process gradient
(``distributed`` module docstring). Per-item state (SogCLR's ``u_i``) is written in every process
from every process's ``(index, log u)`` updates, so it is the same in all of them after a step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from mibounds import polyview
from mibounds._checks import check_positive
from mibounds.barlow import MultiViewBarlowLoss
from mibounds.bounds import MINE, PAIRWISE
from mibounds.polyview import PolyViewLoss
from mibounds.sogclr import SogCLRLoss

__all__ = [
    "OBJECTIVES",
    "EmbeddingLoss",
    "Objective",
    "ObjectiveContext",
    "build_objective",
    "check_objective",
    "check_views",
    "cosine_scores",
    "register",
]

Gather = Callable[[Tensor], tuple[Tensor, int]]


@dataclass(frozen=True)
class ObjectiveContext:
    """What a builder may use: the temperature tau, the views per image M, the number of items
    n in the training split (for per-item state) and the multi-process ``gather`` hook."""

    temperature: float = 0.1
    views: int = 2
    dataset_size: int = 0
    gather: Gather | None = None


@dataclass(frozen=True)
class Objective:
    """A registry entry: ``build(ctx, **params) -> nn.Module`` with
    ``forward(z: (K, M, D), indices: (K,)) -> ()``; ``params`` name -> default of its extra
    hyperparameters; ``views`` the accepted range of M (``None``: no upper limit)."""

    build: Callable[..., nn.Module]
    help: str
    params: Mapping[str, float] = field(default_factory=dict)
    views: tuple[int, int | None] = (2, None)


OBJECTIVES: dict[str, Objective] = {}


def register(
    name: str,
    build: Callable[..., nn.Module],
    help: str,
    *,
    params: Mapping[str, float] | None = None,
    views: tuple[int, int | None] = (2, None),
) -> None:
    """Add an objective to ``OBJECTIVES`` (see the module docstring)."""
    if name in OBJECTIVES:
        raise ValueError(f"objective {name!r} is already registered")
    OBJECTIVES[name] = Objective(build, help, dict(params or {}), views)


def check_views(name: str, views: int) -> None:
    """Raise unless objective ``name`` accepts ``views`` views per image (M)."""
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {tuple(OBJECTIVES)}, got {name!r}")
    low, high = OBJECTIVES[name].views
    if views < low or (high is not None and views > high):
        allowed = f"M >= {low}" if high is None else f"{low} <= M <= {high}"
        kind = "a poly-view objective" if high is None else "defined for these views only"
        raise ValueError(
            f"objective {name!r} is {kind}: it needs {allowed} views per image, got M = {views}"
        )


def build_objective(name: str, ctx: ObjectiveContext, **params: float) -> nn.Module:
    """Build objective ``name`` for ``ctx``; ``params`` override the entry's defaults.

    Raises ``ValueError`` for an unknown name, a parameter the objective does not take, or a
    number of views M outside the objective's range (every objective here compares views, so
    needs M >= 2).
    """
    if name not in OBJECTIVES:
        raise ValueError(f"objective must be one of {tuple(OBJECTIVES)}, got {name!r}")
    entry = OBJECTIVES[name]
    unknown = sorted(set(params) - set(entry.params))
    if unknown:
        takes = ", ".join(entry.params) or "none"
        raise ValueError(f"objective {name!r} takes no parameter {unknown} (it takes: {takes})")
    check_views(name, ctx.views)
    check_positive(ctx.temperature, "temperature")
    return entry.build(ctx, **{**entry.params, **params})


def check_objective(name: str, views: int, temperature: float, params: Mapping[str, float]) -> None:
    """Raise ``ValueError`` unless ``build_objective`` accepts this objective, M = ``views`` and
    ``params`` (names and values, e.g. Barlow Twins' beta >= 0).

    It builds the objective once and drops it, so that a bad option fails when the run is
    configured, before any data is read or process group joined; the builders allocate nothing
    that scales with the data except per-item state, which is sized here for two items.
    """
    build_objective(name, ObjectiveContext(temperature, views, dataset_size=2), **params)


# ----------------------------------------------------------------------- losses on embeddings


def cosine_scores(z: Tensor, temperature: float) -> Tensor:
    """Poly-view scores ``S[..., i, a, j, b] = <z_ia, z_jb> / (|z_ia| |z_jb| tau)``.

    Args:
        z: ``(..., K, M, D)``.
    Returns:
        ``S: (..., K, M, K, M)``.
    """
    u = nnf.normalize(z, dim=-1)
    return torch.einsum("...iad,...jbd->...iajb", u / temperature, u)


def _bound_loss(estimate: Callable[[Tensor], Tensor], temperature: float, z: Tensor) -> Tensor:
    """``-estimate(S)`` with ``S = cosine_scores(z, tau)``: a bound's training loss."""
    return -estimate(cosine_scores(z, temperature))


def _sufficient_statistics_loss(temperature: float, z: Tensor) -> Tensor:
    """``-I_SS``: ``polyview.sufficient_statistics`` with the cosine critic over tau (the rest's
    mean re-normalised to unit length)."""
    u = nnf.normalize(z, dim=-1)
    return -polyview.sufficient_statistics(
        u,
        lambda x, y: x @ y.transpose(-1, -2) / temperature,
        normalize=True,
        validate_args=False,
    )


class EmbeddingLoss(nn.Module):
    """Adapts ``loss(z: (K, M, D), **kwargs) -> ()`` (a function, or a module whose state is then
    saved with this one's) to the trainer's ``forward(z, indices)``; ``indices`` are ignored.

    With ``global_batch=True`` and a ``gather`` hook, ``z`` is first gathered from every process
    and the loss computed on the global batch in each of them (for losses that need every
    sample's scores against every other's, such as the bounds on ``(K, M, K, M)``).
    ``kwargs`` are passed to every call of ``loss``.
    """

    def __init__(
        self,
        loss: Callable[..., Tensor] | nn.Module,
        gather: Gather | None = None,
        *,
        global_batch: bool = False,
        **kwargs: object,
    ) -> None:
        super().__init__()
        self.loss = loss
        self.gather = gather if global_batch else None
        self.kwargs = kwargs

    def forward(self, z: Tensor, indices: Tensor | None = None) -> Tensor:
        if self.gather is not None:
            z, _ = self.gather(z)
        return self.loss(z, **self.kwargs)


def _local_anchors(module: nn.Module) -> EmbeddingLoss:
    """A loss module with its own ``gather`` hook, called without argument checks (they sync
    with the device on every step; the trainer checks the loss is finite)."""
    return EmbeddingLoss(module, validate_args=False)


def _mine(ctx: ObjectiveContext, mine_momentum: float) -> EmbeddingLoss:
    mine = MINE(mine_momentum, batch_shape=(ctx.views - 1, ctx.views))
    loss = _BoundModule(mine, ctx.temperature)
    return EmbeddingLoss(loss, ctx.gather, global_batch=True)


class _BoundModule(nn.Module):
    """``-multicrop(S, bound)`` for a stateful bound (MINE), whose buffers it owns."""

    def __init__(self, bound: nn.Module, temperature: float) -> None:
        super().__init__()
        self.bound = bound
        self.temperature = temperature

    def forward(self, z: Tensor) -> Tensor:
        estimate = functools.partial(polyview.multicrop, bound=self.bound, validate_args=False)
        return _bound_loss(estimate, self.temperature, z)


def _sogclr(ctx: ObjectiveContext, gamma: float) -> SogCLRLoss:
    """SogCLR keyed by the training split's indices (``ctx.dataset_size`` items).

    Under DDP each process passes its own images' dataset indices (global item ids, from its
    share of the global batch) and the all-gather hook: its anchors' negatives span the global
    batch (its own images are rows ``[rank K / W, (rank + 1) K / W)`` of the gathered
    candidates), and ``SogCLRLoss`` gathers every process's ``(index, log u)`` updates and
    writes them all, so the ``log_u`` and ``visited`` buffers stay identical in every process
    (and in the checkpoint, which process 0 writes). Argument checks stay on: reading the
    indices' range costs one device sync a step, and buys a clear error instead of a scatter
    out of bounds.
    """
    return SogCLRLoss(ctx.dataset_size, ctx.temperature, gamma, ctx.gather)


def _barlow(ctx: ObjectiveContext, beta: float) -> EmbeddingLoss:
    """Multi-view Barlow Twins on the global batch: its standardisation and cross-correlations
    are statistics over all K images, so every process computes them on the gathered batch."""
    return EmbeddingLoss(
        MultiViewBarlowLoss(beta), ctx.gather, global_batch=True, validate_args=False
    )


def _global(ctx: ObjectiveContext, loss: Callable[[Tensor], Tensor]) -> EmbeddingLoss:
    return EmbeddingLoss(loss, ctx.gather, global_batch=True)


def _pairwise(name: str) -> Callable[..., EmbeddingLoss]:
    def build(ctx: ObjectiveContext, **params: float) -> EmbeddingLoss:
        bound = functools.partial(PAIRWISE[name], **params)
        estimate = functools.partial(polyview.multicrop, bound=bound, validate_args=False)
        return _global(ctx, functools.partial(_bound_loss, estimate, ctx.temperature))

    return build


def _polyview(
    aggregate: str, negatives: str = "all_views"
) -> Callable[[ObjectiveContext], EmbeddingLoss]:
    def build(ctx: ObjectiveContext) -> EmbeddingLoss:
        return _local_anchors(PolyViewLoss(ctx.temperature, aggregate, negatives, ctx.gather))

    return build


def _polyview_bound(aggregate: str) -> Callable[[ObjectiveContext], EmbeddingLoss]:
    estimate = functools.partial(getattr(polyview, aggregate), validate_args=False)

    def build(ctx: ObjectiveContext) -> EmbeddingLoss:
        return _global(ctx, functools.partial(_bound_loss, estimate, ctx.temperature))

    return build


register(
    "simclr",
    _polyview("geometric"),
    "SimCLR's NT-Xent (Chen et al. 2020): 2K anchors, 2K - 1 candidates each; M = 2 only",
    views=(2, 2),
)
register(
    "multicrop",
    _polyview("geometric", "view_pairs"),
    "NT-Xent averaged over the M(M-1) ordered view pairs (Multi-Crop; Caron et al. 2020's "
    "multi-crop with SimCLR's loss): polyview_loss over view-pair candidates",
)
register(
    "arithmetic",
    _polyview("arithmetic"),
    "Arithmetic PVC training loss, all-view negatives (Shidani et al. 2024, Alg. 1)",
)
register(
    "geometric",
    _polyview("geometric"),
    "Geometric PVC training loss, all-view negatives (Shidani et al. 2024, Alg. 1)",
)
register(
    "arithmetic-printed",
    _polyview("arithmetic_printed"),
    "Algorithm 1's arithmetic line as printed (Shidani et al. 2024): logsumexp_b CE - log K, a "
    "soft-max of the per-pair losses, all-view negatives; not a bound",
)
register(
    "sufficient-statistics",
    lambda ctx: _global(ctx, functools.partial(_sufficient_statistics_loss, ctx.temperature)),
    "minus the sufficient-statistics bound I_SS, cosine critic (Shidani et al. 2024, Alg. 2)",
)
register(
    "arithmetic-bound",
    _polyview_bound("arithmetic"),
    "minus the Arithmetic PVC bound (same-view candidates)",
)
register(
    "geometric-bound",
    _polyview_bound("geometric"),
    "minus the Geometric PVC bound (same-view candidates)",
)
for _name, _params in (
    ("infonce", {}),
    ("nwj", {}),
    ("js", {}),
    ("dv", {}),
    ("smile", {"clip": 5.0}),
    ("interpolated", {"alpha": 0.01}),
):
    register(
        _name,
        _pairwise(_name),
        f"minus polyview.multicrop(S, bounds.{_name}): the pairwise estimate averaged over view "
        "pairs",
        params=_params,
    )
register(
    "mine",
    _mine,
    "minus polyview.multicrop(S, MINE): DV value, moving-average gradient (state saved)",
    params={"mine_momentum": 0.99},
)
register(
    "sogclr",
    _sogclr,
    "SogCLR (Yuan et al. 2022): decoupled contrastive loss with a moving-average partition u_i "
    "per training image (weight gamma, state saved), all-view negatives",
    params={"gamma": 0.9},
)
register(
    "barlow-multiview",
    _barlow,
    "multi-view Barlow Twins (Ghosh, Agrawal et al. 2024): each view's standardised embedding "
    "against the mean of the others, invariance + beta * off-diagonal cross-correlation; not "
    "an MI objective, ignores the temperature; projector widths: --proj-hidden, --proj-dim",
    params={"beta": 0.0051},
)
