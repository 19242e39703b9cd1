"""Data sources for the trainer: R seeds' batches stacked along a leading seed axis.

A source gives ``train_batch(step)`` (one batch per seed) and ``eval_batches(n)`` (n held-out
batches per seed, stacked after the seed axis). Each seed draws from its own
``torch.Generator``, so a seed's numbers do not depend on which other seeds train beside it:
batched training equals training each seed alone.

Sources are pluggable: ``register_source(name, build, defaults)`` adds one that a
``RunConfig(source=name, source_params=...)`` then selects. The streaming Gaussian source
below draws a fresh batch every step; a finite-dataset source (n items drawn once, shuffled
every epoch) fills ``Batch.indices`` with the items' dataset indices for objectives that keep
per-item state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from mibounds.harness.config import check_params

if TYPE_CHECKING:
    from mibounds.harness.config import RunConfig

__all__ = [
    "SOURCES",
    "Batch",
    "DataSource",
    "GaussianStream",
    "SourceSpec",
    "derive_seed",
    "register_source",
    "seed_generator",
]


@dataclass(frozen=True)
class Batch:
    """One step's data for R seeds (held-out batches: ``n`` batches per seed, axis 1).

    Attributes:
        x: pairs: ``(R, K, d)`` the first variable; views: ``(R, K, M, d)``.
        y: pairs: ``(R, K, d)`` the second variable (``y_i`` is ``x_i``'s positive);
            None for views.
        indices: ``(R, K)`` dataset indices of the rows, for finite sources; None when streaming.

    Held-out batches (``DataSource.eval_batches(n)``) carry an extra axis after the seed axis
    on every field, ``x: (R, n, K, ...)``, ``indices: (R, n, K)``; the trainer splits them
    along it.
    """

    x: Tensor
    y: Tensor | None = None
    indices: Tensor | None = None


class DataSource(Protocol):
    """What the trainer draws from: built as ``build(config, seeds, device)``."""

    def train_batch(self, step: int) -> Batch:
        """The batch of training step ``step`` (0-based), for every seed."""
        ...

    def eval_batches(self, n: int) -> Batch:
        """``n`` held-out batches per seed, shapes ``(R, n, K, ...)``, from a stream disjoint
        from training's."""
        ...


def derive_seed(seed: int, purpose: str) -> int:
    """A 63-bit seed for one run seed and one purpose ("init", "train", "eval", ...): streams
    derived by hashing, so no two purposes of one seed share numbers."""
    digest = hashlib.sha256(f"mibounds/{seed}/{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def seed_generator(seed: int, purpose: str, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``derive_seed(seed, purpose)``."""
    return torch.Generator(device=device).manual_seed(derive_seed(seed, purpose))


class GaussianStream:
    """Correlated Gaussians with known MI, a fresh batch every step (bounds.md §4).

    Pairs (``config.m is None``): ``x ~ N(0, I_d)``, ``y = rho x + sqrt(1 - rho^2) eps``.
    Views: M equicorrelated views with pairwise correlation rho. With ``mi_levels`` (Poole's
    staircase) rho steps through the levels during training; held-out batches use the last.
    """

    def __init__(self, config: RunConfig, seeds: Sequence[int], device: torch.device) -> None:
        self.config = config
        self.device = device
        self.rhos = config.rho_levels()
        self.train_gens = [seed_generator(s, "train", device) for s in seeds]
        self.eval_gens = [seed_generator(s, "eval", device) for s in seeds]

    def _draw(self, gen: torch.Generator, n: int | None, rho: float) -> tuple[Tensor, ...]:
        from mibounds.gaussian import sample_pairs, sample_views

        c = self.config
        rows = c.k * (n or 1)
        if c.m is None:
            parts: tuple[Tensor, ...] = sample_pairs(
                rows, c.d, rho, generator=gen, device=self.device
            )
        else:
            parts = (sample_views(rows, c.m, c.d, rho, generator=gen, device=self.device),)
        # n batches are one draw of n * K i.i.d. rows, split into batches
        return parts if n is None else tuple(p.unflatten(0, (n, c.k)) for p in parts)

    def _stack(self, gens: list[torch.Generator], n: int | None, rho: float) -> Batch:
        draws = [self._draw(g, n, rho) for g in gens]
        parts = [torch.stack(p) for p in zip(*draws, strict=True)]
        return Batch(x=parts[0], y=parts[1] if len(parts) > 1 else None)

    def rho_at(self, step: int) -> float:
        """The correlation at training step ``step`` (the staircase's level, or the constant)."""
        return self.rhos[min(step // self.config.steps_per_level, len(self.rhos) - 1)]

    def train_batch(self, step: int) -> Batch:
        return self._stack(self.train_gens, None, self.rho_at(step))

    def eval_batches(self, n: int) -> Batch:
        return self._stack(self.eval_gens, n, self.rhos[-1])


SourceBuilder = Callable[["RunConfig", Sequence[int], torch.device], DataSource]


@dataclass(frozen=True)
class SourceSpec:
    """A data source: ``build(config, seeds, device)`` and the ``source_params`` it accepts."""

    name: str
    build: SourceBuilder
    defaults: Mapping[str, Any]
    required: tuple[str, ...] = ()

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_params(f"data source {self.name!r}", params, self.defaults, self.required)


SOURCES: dict[str, SourceSpec] = {}


def register_source(
    name: str,
    build: SourceBuilder,
    defaults: Mapping[str, Any] | None = None,
    required: Sequence[str] = (),
) -> SourceSpec:
    """Make ``RunConfig(source=name)`` build its data with ``build(config, seeds, device)``."""
    spec = SourceSpec(name, build, dict(defaults or {}), tuple(required))
    SOURCES[name] = spec
    return spec


register_source("gaussian", GaussianStream)
