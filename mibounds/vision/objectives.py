"""The image trainer's training losses on multi-view embeddings, built from the catalogue.

Every objective is an ``nn.Module`` with ``forward(z: (K, M, D), indices: (K,)) -> ()``, the
loss to minimise for K images with M views each (``indices`` are the images' dataset indices, for
objectives with per-item state, SogCLR's; the others ignore them). Its ``state_dict`` goes into
the checkpoint. ``build_objective(name, ctx, **params)`` makes one from the catalogue entry
``name`` (``mibounds.catalogue``), the same names and parameters as the Gaussian harness:

- an entry with an embedding-level ``loss`` (the poly-view readings through ``polyview_loss``,
  SogCLR, Barlow Twins) uses it;
- any other is minus its estimate on the cosine scores ``S[i,a,j,b] = <z_ia, z_jb> / tau``
  (unit-normalised embeddings): a pairwise estimator averaged over the view pairs
  (``polyview.multicrop`` with it as the bound; MINE with one moving average per view pair),
  a poly-view one on S, Sufficient Statistics with the cosine critic over tau.

Multi-process training: entries that gather negatives (``distributed = "gathered_negatives"``)
score the local anchors against candidates gathered from every process; the others are computed
on the gathered batch in every process (``EmbeddingLoss(..., global_batch=True)``): both give
the single-process gradient (``distributed`` module docstring). Per-item state (SogCLR's
``u_i``) is written in every process from every process's ``(index, log u)`` updates, so it is
the same in all of them after a step.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from mibounds import polyview
from mibounds._checks import check_positive
from mibounds.catalogue import Entry, LossContext, entry

__all__ = [
    "EmbeddingLoss",
    "LossContext",
    "build_objective",
    "check_objective",
    "cosine_scores",
]

Gather = Callable[[Tensor], tuple[Tensor, int]]


def cosine_scores(z: Tensor, temperature: float) -> Tensor:
    """Poly-view scores ``S[..., i, a, j, b] = <z_ia, z_jb> / (|z_ia| |z_jb| tau)``.

    Args:
        z: ``(..., K, M, D)``.
    Returns:
        ``S: (..., K, M, K, M)``.
    """
    u = nnf.normalize(z, dim=-1)
    return torch.einsum("...iad,...jbd->...iajb", u / temperature, u)


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


class _MinusEstimate(nn.Module):
    """``-estimate(S)`` with ``S = cosine_scores(z, tau)``; a stateful bound (MINE) is a
    submodule, so its buffers are saved with the objective."""

    def __init__(self, estimate: Callable[[Tensor], Tensor], temperature: float, state=None):
        super().__init__()
        self.estimate, self.temperature, self.state = estimate, temperature, state

    def forward(self, z: Tensor) -> Tensor:
        return -self.estimate(cosine_scores(z, self.temperature))


class _MinusSufficientStatistics(nn.Module):
    """``-I_SS``: the catalogue's ``sufficient_statistics`` on the unit-normalised embeddings with
    the cosine critic over tau."""

    def __init__(self, found: Entry, params: Mapping[str, Any], temperature: float) -> None:
        super().__init__()
        self.estimate = functools.partial(found.estimate, **params, validate_args=False)
        self.temperature = temperature

    def forward(self, z: Tensor) -> Tensor:
        def critic(x: Tensor, y: Tensor) -> Tensor:
            return x @ y.transpose(-1, -2) / self.temperature

        return -self.estimate(nnf.normalize(z, dim=-1), critic)


def _minus_estimate(found: Entry, params: Mapping[str, Any], ctx: LossContext) -> nn.Module:
    """Minus the entry's estimate on the cosine scores of the (gathered) batch."""
    if found.takes == "views_and_critic":
        return _MinusSufficientStatistics(found, params, ctx.temperature)
    if found.takes == "polyview_scores":
        estimate = functools.partial(found.estimate, **params, validate_args=False)
        return _MinusEstimate(estimate, ctx.temperature)
    # a pairwise estimator, averaged over the M(M-1) view pairs
    state = None
    if found.state is not None:  # one moving average per ordered view pair
        state = found.state(params, (ctx.views - 1, ctx.views), ctx.dataset_size)
        bound = state
    else:
        bound = found.estimator(params)
    estimate = functools.partial(polyview.multicrop, bound=bound, validate_args=False)
    return _MinusEstimate(estimate, ctx.temperature, state)


def build_objective(name: str, ctx: LossContext, **params: Any) -> nn.Module:
    """The training loss of catalogue entry ``name`` for ``ctx``; ``params`` override the
    entry's defaults.

    Raises ``ValueError`` for an unknown name, a parameter the entry does not take or cannot
    take, or a number of views M outside the entry's range (every objective here compares
    views, so needs M >= 2).
    """
    found = entry(name, "objective")
    checked = found.check_params(params)
    found.check_views(ctx.views)
    check_positive(ctx.temperature, "temperature")
    if found.per_item and found.loss is None:
        raise ValueError(f"objective {name!r} keeps per-item state on scores only (the harness)")
    module = None if found.loss is None else found.loss(ctx, checked)
    if module is not None and found.distributed == "gathered_negatives":
        return module  # its own gather hook: local anchors, gathered candidates
    if module is None:
        if found.estimate is None:
            raise ValueError(f"objective {name!r} has neither a loss nor an estimate")
        module = _minus_estimate(found, checked, ctx)
    return EmbeddingLoss(module, ctx.gather, global_batch=True)


def check_objective(name: str, views: int, temperature: float, params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless ``build_objective`` accepts this objective, M = ``views`` and
    ``params`` (names and values, e.g. Barlow Twins' beta >= 0).

    It builds the objective once and drops it, so that a bad option fails when the run is
    configured, before any data is read or process group joined; the builders allocate nothing
    that scales with the data except per-item state, which is sized here for two items.
    """
    build_objective(name, LossContext(temperature, views, dataset_size=2), **params)
