"""Training objectives for the Gaussian harness, built from the catalogue (``mibounds.catalogue``).

An objective is called as ``objective(critic, batch, *, validate_args) -> (R, ...)``: the
estimate in nats for each of the R seeds (and any extra batch axes of ``batch``); training
maximises it. ``critic(x, y=None)`` maps seed-stacked inputs to seed-stacked scores: pairs
``(R, ..., K, d), (R, ..., K, d) -> (R, ..., K, K)``, views ``(R, ..., K, M, d) ->
(R, ..., K, M, K, M)``. The estimator itself runs once on the stacked scores, outside any vmap.

``build_objective(entry, params, n_seeds, n_items)`` makes one from a catalogue entry, by what
the entry takes: pairwise scores of ``critic(x, y)``, poly-view scores of ``critic(x)``, or the
raw views with the critic itself (Sufficient Statistics). Stateful entries (MINE's moving
average; SogCLR's per-item partitions keyed by ``batch.indices``, which need a finite dataset
source) become ``nn.Module``s; the trainer moves them to the device and switches them to
``eval()`` for the final estimate. A new objective is a new catalogue entry.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mibounds._checks import check_params, suggest
from mibounds.catalogue import Entry, entry
from mibounds.harness.interface import Batch, BatchedCritic, Objective

__all__ = [
    "PairwiseObjective",
    "StatefulObjective",
    "SufficientStatisticsObjective",
    "ViewsObjective",
    "build_critic",
    "build_objective",
    "check_critic",
    "data_kind",
    "harness_entry",
]


def harness_entry(name: str) -> Entry:
    """The catalogue entry ``name``, if the harness can train it (not an embeddings-only loss)."""
    found = entry(name, "objective")
    if found.takes == "embeddings":
        raise ValueError(
            f"objective {name!r} is a loss on image embeddings (mibounds vision train), not an "
            "estimator on a critic's scores"
        )
    return found


def data_kind(found: Entry) -> str:
    """``"pairs"`` for an entry on pairwise scores, ``"views"`` for one on M views."""
    return "pairs" if found.takes == "scores" else "views"


class PairwiseObjective:
    """``estimator(critic(x, y))``: a pairwise estimate on the ``(R, ..., K, K)`` scores."""

    def __init__(self, estimator: Callable[..., Tensor]) -> None:
        self.estimator = estimator

    def __call__(self, critic: BatchedCritic, batch: Batch, *, validate_args: bool) -> Tensor:
        return self.estimator(critic(batch.x, batch.y), validate_args=validate_args)


class ViewsObjective:
    """``estimator(critic(views))``: a poly-view estimate on ``(R, ..., K, M, K, M)`` scores."""

    def __init__(self, estimator: Callable[..., Tensor]) -> None:
        self.estimator = estimator

    def __call__(self, critic: BatchedCritic, batch: Batch, *, validate_args: bool) -> Tensor:
        return self.estimator(critic(batch.x), validate_args=validate_args)


class SufficientStatisticsObjective:
    """The catalogue's ``sufficient_statistics`` on the raw views: the critic's pairwise form
    scores one view against the mean of the sample's other views, ``F[a,i,j] = f(x_ia,
    mean_{b!=a} x_jb)``; for equicorrelated Gaussians that mean is a sufficient statistic of the
    rest (docs/gaussian.md)."""

    def __init__(self, estimator: Callable[..., Tensor]) -> None:
        self.estimator = estimator

    def __call__(self, critic: BatchedCritic, batch: Batch, *, validate_args: bool) -> Tensor:
        return self.estimator(batch.x, critic, validate_args=validate_args)


class StatefulObjective(nn.Module):
    """A stateful entry on pairwise scores: its state module (``Entry.state``, one state per
    seed, ``batch_shape = (R,)``) gives the training value; with the critic frozen
    (``eval()``), the entry's ``estimate`` if it has one (MINE: the DV value, which is MINE's
    value without the state), else the state module read in ``eval()`` mode, which does not
    move the state (SogCLR's global estimate ``mean_i [s_ii - log u_i]`` with the stored u,
    docs/sogclr.md).

    A per-item state is keyed by ``batch.indices: (R, K)``; held-out batches ``(R, B, K, d)``
    are read one batch at a time, ``(R, B)`` estimates.
    """

    def __init__(self, found: Entry, params: Mapping[str, Any], n_seeds: int, n_items: int) -> None:
        super().__init__()
        self.state = found.state(params, (n_seeds,), n_items)
        self.per_item = found.per_item
        self.name = found.name
        self.read = found.estimate  # a stateful entry's parameters belong to its state

    def _value(self, scores: Tensor, indices: Tensor | None, validate_args: bool) -> Tensor:
        if not self.training and self.read is not None:
            return self.read(scores, validate_args=validate_args)
        if self.per_item:
            return self.state(scores, indices, validate_args=validate_args)
        return self.state(scores, validate_args=validate_args)

    def forward(self, critic: BatchedCritic, batch: Batch, *, validate_args: bool) -> Tensor:
        if self.per_item and batch.indices is None:
            raise ValueError(
                f"objective {self.name!r} needs batch.indices (the rows' dataset indices), got "
                "None: its data source must be a finite dataset"
            )
        scores = critic(batch.x, batch.y)
        if scores.dim() == 3:
            return self._value(scores, batch.indices, validate_args)
        parts = [
            self._value(
                scores[:, b], None if batch.indices is None else batch.indices[:, b], validate_args
            )
            for b in range(scores.shape[1])
        ]
        return torch.stack(parts, dim=1)


def build_objective(
    found: Entry, params: Mapping[str, Any], n_seeds: int, n_items: int = 0
) -> Objective:
    """The harness objective of catalogue entry ``found`` with checked ``params`` for
    ``n_seeds`` seeds (and ``n_items`` dataset items, for a per-item state)."""
    if found.state is not None:
        return StatefulObjective(found, params, n_seeds, n_items)
    estimator = found.estimator(params)
    if found.takes == "scores":
        return PairwiseObjective(estimator)
    if found.takes == "polyview_scores":
        return ViewsObjective(estimator)
    return SufficientStatisticsObjective(estimator)


# ---------------------------------------------------------------------------- critics


def check_critic(name: str, params: Mapping[str, Any], d: int) -> type[nn.Module]:
    """The critic class ``CRITICS[name]``, after checking ``params`` against its signature
    (every argument but the data dimension) and their values: the critic is built once on the
    meta device, so its own checks run and nothing is allocated."""
    from mibounds.critics import CRITICS

    if name not in CRITICS:
        raise ValueError(
            f"unknown critic {name!r}{suggest(str(name), CRITICS)}; "
            f"expected one of {sorted(CRITICS)}"
        )
    cls = CRITICS[name]
    arguments = list(inspect.signature(cls).parameters.values())[1:]
    defaults = {p.name: p.default for p in arguments if p.default is not inspect.Parameter.empty}
    required = [p.name for p in arguments if p.default is inspect.Parameter.empty]
    check_params(f"critic {name!r}", params, defaults, required)
    try:
        with torch.device("meta"):
            cls(d, **params)
    except ValueError as err:
        raise ValueError(f"critic {name!r}: {err}") from None
    return cls


def build_critic(name: str, params: Mapping[str, Any], d: int) -> nn.Module:
    """``CRITICS[name](d, **params)``, checked."""
    return check_critic(name, params, d)(d, **params)
