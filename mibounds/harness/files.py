"""A user's samples in a file as a finite data source: ``mibounds sweep`` over their own data.

``source = {name = "file", path = "data.npz", x = "x", y = "y"}`` (or ``views = "..."``) reads
the file with ``mibounds.arrays.load_arrays`` (.npz, .npy, .csv, .parquet; the keys and columns
as there) and checks it with ``as_samples``. For each seed the rows are shuffled (the seed's own
stream) and split once: a ``held_out`` fraction (default 0.3) for the final estimate, the rest
for training, disjoint; every coordinate is standardised with the train rows' mean and standard
deviation, and pairs with ``d_x != d_y`` are zero-padded to one width (``arrays.scale``), so
the harness's critics of one dimension d take them. The train rows are ``GaussianDataset``'s
items (shuffled epochs, ``Batch.indices``): the largest multiple of K of them; a held-out
batch is K distinct held-out rows drawn from the seed's evaluation stream.

The data's MI is not known, so records carry no true MI and no gap (None). ``d`` and ``m``
come from the file (``m`` the views of a 3-D array). Example::

    [run]
    source = {name = "file", path = "data.csv", x = "a,b,c", y = "target"}
    steps = 2000
    [grid]
    objective = ["infonce", "nwj", "smile"]
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mibounds._checks import real_in
from mibounds.arrays import Samples, as_samples, load_arrays, scale, train_statistics
from mibounds.harness.data import GaussianDataset, GaussianStream, register_source, seed_generator
from mibounds.harness.interface import Batch

if TYPE_CHECKING:
    from mibounds.harness.config import RunConfig

__all__ = ["FileDataset", "file_dims", "file_samples"]

DEFAULTS = {"x": "", "y": "", "views": "", "held_out": 0.3}


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime: float, x: str, y: str, views: str) -> Samples:
    arrays = load_arrays(path, x=x or None, y=y or None, views=views or None)
    return as_samples(**arrays)


def file_samples(params: Mapping[str, Any]) -> Samples:
    """The checked samples ``source_params`` name (read once per file version)."""
    path = Path(str(params["path"]))
    if not path.is_file():
        raise ValueError(f"source 'file': path {str(path)!r} is not a file")
    keys = {k: str(params.get(k, "")) for k in ("x", "y", "views")}
    return _read(str(path), path.stat().st_mtime, keys["x"], keys["y"], keys["views"])


def file_dims(params: Mapping[str, Any]) -> tuple[int, int | None]:
    """``(d, m)``: the width both sides are padded to, and the views (None for pairs)."""
    samples = file_samples(params)
    return samples.width, None if samples.views is None else int(samples.views.shape[1])


def _held_out(params: Mapping[str, Any]) -> float:
    try:
        return real_in(0.0, 1.0, low_open=True)(params.get("held_out", DEFAULTS["held_out"]))
    except ValueError as err:
        raise ValueError(f"source 'file': held_out {err}") from None


def _check_config(config: RunConfig) -> None:
    """Every part of the split holds a batch of K rows."""
    params = dict(config.source_params)
    n = file_samples(params).n
    held = round(n * _held_out(params))
    if min(held, n - held) < config.k:
        raise ValueError(
            f"source 'file': {params['path']!r} has n = {n} rows, split into {n - held} train and "
            f"{held} held-out rows; each needs at least K = {config.k} rows (a smaller k or "
            "another held_out)"
        )


class FileDataset(GaussianDataset):
    """A file's rows per seed: the train rows as a finite dataset, the held-out rows for
    evaluation (module docstring). ``data``: ``(x, y)`` each ``(R, n, d)`` or ``(x,)`` with
    ``(R, n, M, d)``, standardised; ``held``: the held-out rows, likewise."""

    def levels(self) -> tuple[float, ...]:
        """One level: a file's data do not change during training."""
        return (0.0,)

    def __init__(self, config: RunConfig, seeds: Sequence[int], device: torch.device) -> None:
        GaussianStream.__init__(self, config, seeds, device)
        params = dict(config.source_params)
        samples = file_samples(params)
        n, k = samples.n, config.k
        n_train = n - round(n * _held_out(params))
        self.n_items = n_train // k * k
        self.batches_per_epoch = self.n_items // k
        dtype = torch.get_default_dtype()
        train, held = [], []
        for seed in self.seeds:
            order = torch.randperm(n, generator=seed_generator(seed, "split"))
            stats = train_statistics(samples, order[:n_train], dtype)
            scaled = [t for t in scale(*samples.tensors, stats, samples.width) if t is not None]
            train.append([t[order[: self.n_items]] for t in scaled])
            held.append([t[order[n_train:]] for t in scaled])
        self.data = tuple(torch.stack(p).to(device) for p in zip(*train, strict=True))
        self.held = tuple(torch.stack(p).to(device) for p in zip(*held, strict=True))
        self._epoch, self._order = -1, torch.empty(0)

    def eval_batches(self, n: int, k: int | None = None) -> Batch:
        """``n`` batches per seed of K (or ``k``) distinct held-out rows: ``(R, n, K, ...)``,
        from the stream ``eval`` (or ``eval/k={k}``, as ``GaussianStream``'s readouts)."""
        if k is None:
            gens, k = self.eval_gens, self.config.k
        else:
            if k not in self.readout_gens:
                self.readout_gens[k] = [
                    seed_generator(s, f"eval/k={k}", self.device) for s in self.seeds
                ]
            gens = self.readout_gens[k]
        rows = self.held[0].shape[1]
        if k > rows:
            raise ValueError(
                f"source 'file': a batch of k = {k} needs {k} held-out rows, has {rows}"
            )
        picks = torch.stack(
            [
                torch.rand(n, rows, generator=g, device=self.device).argsort(dim=1)[:, :k]
                for g in gens
            ]
        )  # (R, n, k)
        seed_axis = torch.arange(len(gens), device=self.device).view(-1, 1)
        parts = tuple(t[seed_axis, picks.flatten(1)].unflatten(1, (n, k)) for t in self.held)
        return self._batch(parts)


register_source(
    "file",
    FileDataset,
    DEFAULTS,
    required=("path",),
    finite=True,
    check_config=_check_config,
    dims=file_dims,
)
