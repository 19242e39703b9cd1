"""Data sources for the trainer: R seeds' batches stacked along a leading seed axis.

A source gives ``train_batch(step)`` (one batch per seed) and ``eval_batches(n, k=None)`` (n
held-out batches per seed, stacked after the seed axis). Each seed draws from its own
``torch.Generator``, so a seed's numbers do not depend on which other seeds train beside it:
batched training equals training each seed alone.

Sources are pluggable: ``register_source(name, build, defaults)`` adds one that a
``RunConfig(source=name, source_params=...)`` then selects. Two are built in, sharing one
sampler (docs/gaussian.md):

- ``gaussian`` (``GaussianStream``): a fresh batch every step, an unlimited stream;
- ``gaussian_finite`` (``GaussianDataset``, ``source_params = {n = ...}``): n items drawn once
  per seed, shuffled into epochs, rows tagged with their dataset index (``Batch.indices``), for
  objectives that keep per-item state (SogCLR). Its held-out batches are fresh draws, as
  the stream's are.

A source may also draw data of its own rather than the Gaussians that a config's ``rho`` /
``mi`` / ``mi_levels`` set: it registers ``dims`` (the shape of its samples) and, when their MI
is known, ``truth``; ``mibounds.harness.sources`` registers the known-MI tasks
(``mibounds.tasks``) this way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mibounds._checks import add_once, check_at_least, check_params
from mibounds.harness.interface import Batch, DataSource

if TYPE_CHECKING:
    from mibounds.harness.config import RunConfig

__all__ = [
    "SOURCES",
    "Batch",
    "DataSource",
    "GaussianDataset",
    "GaussianStream",
    "SourceSpec",
    "check_finite_config",
    "derive_seed",
    "register_source",
    "seed_generator",
]


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one run seed and one purpose ("init", "train", "eval", ...): streams
    derived by hashing, so no two purposes of one seed share numbers."""
    digest = hashlib.sha256(f"mibounds/{seed}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_generator(seed: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``derive_seed(seed, purpose)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, purpose))


class GaussianStream:
    """Correlated Gaussians with known MI, a fresh batch every step (docs/gaussian.md).

    Pairs (``config.m is None``): ``x ~ N(0, I_d)``, ``y = rho x + sqrt(1 - rho^2) eps``.
    Views: M equicorrelated views with pairwise correlation rho. With ``mi_levels`` (Poole's
    staircase) rho steps through the levels during training; held-out batches use the last.
    """

    def __init__(self, config: RunConfig, seeds: Sequence[int], device: torch.device) -> None:
        self.config = config
        self.device = device
        self.seeds = tuple(seeds)
        self.rhos = self.levels()
        self.train_gens = [seed_generator(s, "train", device) for s in seeds]
        self.eval_gens = [seed_generator(s, "eval", device) for s in seeds]
        # readout streams, one per batch size k and seed, whatever the config: so every method
        # is read on the same held-out rows, and a readout never depends on other evaluations
        self.readout_gens: dict[int, list[torch.Generator]] = {}

    def levels(self) -> tuple[float, ...]:
        """The data levels in training order, each passed to ``_draw``: here the correlations
        (one, unless a staircase); a subclass drawing other data gives its own."""
        return self.config.rho_levels()

    def _draw(self, gen: torch.Generator, rows: int, rho: float) -> tuple[Tensor, ...]:
        """``rows`` i.i.d. rows from one seed's generator: ``(x, y)`` each ``(rows, d)`` for
        pairs, ``(x,)`` with ``x: (rows, M, d)`` for views."""
        from mibounds.gaussian import sample_pairs, sample_views

        c = self.config
        if c.m is None:
            return sample_pairs(rows, c.d, rho, generator=gen, device=self.device)
        return (sample_views(rows, c.m, c.d, rho, generator=gen, device=self.device),)

    def _stack(
        self, gens: list[torch.Generator], n: int | None, k: int, rho: float
    ) -> tuple[Tensor, ...]:
        """Every seed's draw stacked on a leading seed axis: ``(R, k, ...)`` for one batch
        (``n is None``), ``(R, n, k, ...)`` for n batches (one draw of n k rows, split)."""
        draws = [self._draw(g, k * (n or 1), rho) for g in gens]
        parts = tuple(torch.stack(p) for p in zip(*draws, strict=True))
        return parts if n is None else tuple(p.unflatten(1, (n, k)) for p in parts)

    @staticmethod
    def _batch(parts: tuple[Tensor, ...], indices: Tensor | None = None) -> Batch:
        return Batch(x=parts[0], y=parts[1] if len(parts) > 1 else None, indices=indices)

    def rho_at(self, step: int) -> float:
        """The correlation at training step ``step`` (the staircase's level, or the constant)."""
        return self.rhos[min(step // self.config.steps_per_level, len(self.rhos) - 1)]

    def train_batch(self, step: int) -> Batch:
        return self._batch(self._stack(self.train_gens, None, self.config.k, self.rho_at(step)))

    def eval_batches(self, n: int, k: int | None = None) -> Batch:
        """``n`` held-out batches per seed, ``(R, n, K, ...)``: without ``k``, of the config's K
        from the stream ``eval``; with ``k`` (even the config's K), of k rows from the stream
        ``eval/k={k}``, which depends on the seed and k alone."""
        if k is None:
            return self._batch(self._stack(self.eval_gens, n, self.config.k, self.rhos[-1]))
        if k not in self.readout_gens:
            self.readout_gens[k] = [
                seed_generator(s, f"eval/k={k}", self.device) for s in self.seeds
            ]
        return self._batch(self._stack(self.readout_gens[k], n, k, self.rhos[-1]))


class GaussianDataset(GaussianStream):
    """A finite Gaussian dataset: n items drawn once per seed, shuffled into epochs.

    ``source_params = {"n": n}``, n a multiple of K. The items are the first n rows of the
    seed's training stream (the sampler of ``GaussianStream``, at the config's one rho). Epoch
    ``e = step // (n / K)`` visits them in the order of a fresh permutation drawn from the
    seed's own generator for that epoch (purpose ``shuffle/e``, so any step can be produced
    without replaying the earlier ones), in n / K batches of K rows: every item exactly once
    per epoch. ``Batch.indices: (R, K)`` holds the rows' dataset indices. Held-out batches are
    fresh draws from the same distribution (``GaussianStream.eval_batches``), never items.
    ``data`` holds the items: ``(x, y)`` each ``(R, n, d)`` for pairs, ``(x,)`` with
    ``x: (R, n, M, d)`` for views.

    Why K must divide n: a partial last batch would either be dropped (an item missing from
    its epoch) or be a smaller batch (another K), and a batch across two epochs could hold one
    item twice, i.e. a sample as its own negative.
    """

    def __init__(self, config: RunConfig, seeds: Sequence[int], device: torch.device) -> None:
        super().__init__(config, seeds, device)
        self.n_items: int = dict(config.source_params)["n"]
        self.batches_per_epoch = self.n_items // config.k
        self.data = self._stack(self.train_gens, None, self.n_items, self.rhos[0])
        self._epoch, self._order = -1, torch.empty(0)

    def order(self, epoch: int) -> Tensor:
        """``(R, n)`` each seed's permutation of its items in epoch ``epoch``."""
        return torch.stack(
            [
                torch.randperm(
                    self.n_items,
                    generator=seed_generator(s, f"shuffle/{epoch}", self.device),
                    device=self.device,
                )
                for s in self.seeds
            ]
        )

    def rows(self, indices: Tensor) -> Batch:
        """The items ``indices: (R, ...)`` of each seed's dataset, as a ``Batch`` of that shape
        (``x: (R, ..., d)`` or ``(R, ..., M, d)``) with ``indices`` set."""
        flat = indices.flatten(1)
        seed_axis = torch.arange(flat.shape[0], device=self.device).unsqueeze(1)
        parts = tuple(p[seed_axis, flat].unflatten(1, indices.shape[1:]) for p in self.data)
        return self._batch(parts, indices)

    def train_batch(self, step: int) -> Batch:
        epoch, position = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self._epoch, self._order = epoch, self.order(epoch)
        k = self.config.k
        return self.rows(self._order[:, position * k : (position + 1) * k])

    def dataset_batches(self) -> Batch:
        """The whole dataset in index order as n / K batches per seed: ``(R, n / K, K, ...)``
        (the layout of ``eval_batches``), for reading per-item state after training."""
        r, k = len(self.seeds), self.config.k
        idx = torch.arange(self.n_items, device=self.device).view(1, -1, k).expand(r, -1, -1)
        return self.rows(idx)


def check_finite_config(config: RunConfig) -> None:
    """A finite dataset is drawn once at one MI, and split into whole batches of K: raise
    ``ValueError`` unless ``source_params`` n is a multiple of K (and the MI is one level)."""
    n, k, name = dict(config.source_params)["n"], config.k, config.source
    check_at_least(n, 2, "source_params n (the dataset size)")
    if n < k:
        raise ValueError(
            f"source {name!r} needs n >= K: a batch is K distinct items, got n = {n} < K = {k}"
        )
    if n % k:
        low, high = n // k * k, (n // k + 1) * k
        raise ValueError(
            f"source {name!r} needs n to be a multiple of K = {k} (every epoch is whole "
            f"batches, each item once), got n = {n}; use e.g. n = {low or high} or {high}"
        )
    if config.mi_levels:
        raise ValueError(
            f"source {name!r} draws its dataset once, at one MI: give rho or mi, not "
            f"mi_levels = {list(config.mi_levels)}"
        )


SourceBuilder = Callable[["RunConfig", Sequence[int], torch.device], DataSource]
Dims = Callable[[Mapping[str, Any]], tuple[int, int | None]]
Truth = Callable[[Mapping[str, Any]], Mapping[str, float]]


@dataclass(frozen=True)
class SourceSpec:
    """A data source: ``build(config, seeds, device)``, the ``source_params`` it accepts,
    whether it is ``finite`` (indexes a dataset, for per-item objectives) and an optional
    ``check_config(config)`` that rejects settings it cannot serve, before any training.

    A source with data of its own (not the Gaussians of a config's ``rho`` / ``mi`` /
    ``mi_levels``, which it then refuses) has ``dims(params) -> (d, m)``, the dimension and the
    views (None: pairs) of its samples, which fill a config's unset ``d`` / ``m``; and, if their
    MI is known, ``truth(params)``: the true MIs in nats, keys ``pairwise`` and, for views,
    ``one_vs_rest`` (records carry them and the gap; without ``truth`` both are None).
    """

    name: str
    build: SourceBuilder
    defaults: Mapping[str, Any]
    required: tuple[str, ...] = ()
    finite: bool = False
    check_config: Callable[[RunConfig], None] | None = None
    dims: Dims | None = None
    truth: Truth | None = None

    @property
    def own_data(self) -> bool:
        """Whether the source draws data of its own (``dims``), not the configs' Gaussians."""
        return self.dims is not None

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_params(f"data source {self.name!r}", params, self.defaults, self.required)

    def check(self, config: RunConfig) -> None:
        """``check_params`` on the config's ``source_params``, then ``check_config``."""
        self.check_params(dict(config.source_params))
        if self.check_config is not None:
            self.check_config(config)


SOURCES: dict[str, SourceSpec] = {}


def register_source(
    name: str,
    build: SourceBuilder,
    defaults: Mapping[str, Any] | None = None,
    required: Sequence[str] = (),
    *,
    finite: bool = False,
    check_config: Callable[[RunConfig], None] | None = None,
    dims: Dims | None = None,
    truth: Truth | None = None,
) -> SourceSpec:
    """Make ``RunConfig(source=name)`` build its data with ``build(config, seeds, device)``
    (the other arguments: ``SourceSpec``'s fields); a name registered twice is an error."""
    spec = SourceSpec(
        name, build, dict(defaults or {}), tuple(required), finite, check_config, dims, truth
    )
    return add_once(SOURCES, name, spec, "the data sources")


register_source("gaussian", GaussianStream)
register_source(
    "gaussian_finite",
    GaussianDataset,
    required=("n",),
    finite=True,
    check_config=check_finite_config,
)
