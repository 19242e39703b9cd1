"""The harness's interfaces: what a batch is, what a data source and an objective promise.

A leaf: it imports nothing from ``mibounds``, so the config, data and objective modules (and a
user's own sources and objectives) can all depend on it without depending on each other. The
implementations are ``mibounds.harness.data`` (sources) and ``mibounds.harness.objectives``
(objectives); the trainer (``mibounds.harness.trainer``) only needs what is written here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from torch import Tensor

__all__ = ["KINDS", "Batch", "BatchedCritic", "DataSource", "Kind", "Objective"]


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
    """What the trainer draws from: built as ``build(config, seeds, device)``.

    A finite source (registered with ``finite=True``) also has ``n_items`` (its dataset size n)
    and ``dataset_batches()``, and fills ``Batch.indices`` of its training batches.
    """

    def train_batch(self, step: int) -> Batch:
        """The batch of training step ``step`` (0-based), for every seed."""
        ...

    def eval_batches(self, n: int, k: int | None = None) -> Batch:
        """``n`` held-out batches per seed, shapes ``(R, n, K, ...)``, from a stream disjoint
        from training's; with ``k``, batches of k rows for a readout, from a stream of their
        own (the trainer passes ``k`` only when a readout asks for one)."""
        ...


BatchedCritic = Callable[..., Tensor]


class Objective(Protocol):
    """``objective(critic, batch, *, validate_args) -> (R, ...)`` estimate in nats."""

    def __call__(self, critic: BatchedCritic, batch: Batch, *, validate_args: bool) -> Tensor:
        """The estimate in nats, ``(R, ...)``; training maximises its sum over seeds."""
        ...


@dataclass(frozen=True)
class Kind:
    """What a sweep trains, beyond the harness's own Gaussian runs: the config class of one
    setting (frozen, with ``from_dict(values, where)``, ``key()`` without the seed, ``label()``
    and ``to_dict()``) and ``trainer(setting, seeds, *, device, extra, workdir, progress)``,
    which trains the setting's seeds and returns one record each (``mibounds.records``).
    A sweep's TOML names its kind with ``trainer = "..."``; ``mibounds.vision.sweeps``
    registers ``"vision"``."""

    name: str
    config: type
    trainer: Callable[..., list]


KINDS: dict[str, Kind] = {}
"""The registered kinds by name; the harness's own ``"gaussian"`` is built in."""
