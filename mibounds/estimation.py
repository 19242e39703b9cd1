"""Estimate mutual information from a user's samples: one call, an honest held-out protocol.

:func:`estimate` takes pairs ``x: (n, d_x)``, ``y: (n, d_y)`` (numpy, torch, pandas) or views
``(n, M, d)`` and returns an :class:`Estimate` in nats. The procedure (docs/estimation.md), for
each seed:

1. the rows are shuffled (the seed's own stream) and split into **train**, **validation** and
   **test** rows, before anything is computed from them;
2. every coordinate is standardised with the mean and standard deviation of the train rows;
3. a critic sized to the data is trained on minibatches of the train rows (AdamW, weight
   decay), maximising the estimator (any of ``mibounds.catalogue``);
4. every ``eval_every`` steps the frozen critic is read on the validation rows; the selection
   rule picks one checkpoint: ``"early_stopping"`` (default) keeps the checkpoint with the
   highest validation value and stops after ``patience`` reads without a better one;
5. the chosen critic is read on the test rows, which neither training nor selection saw: the
   seed's value is the mean of the estimator over the test batches.

The test rows are read at every checkpoint too, for the curves only. ``"max_checkpoint"``
instead takes the checkpoint whose *test* value is highest, trained for all ``steps``: an
optimistic rule (the maximum of noisy reads is biased up), offered to compare with the
literature that uses it, never the default.

Several seeds: ``value`` is the mean of the seeds' values; ``stderr`` is the standard error of
that mean over the seeds (each seed's value already averages its test batches), or, with one
seed, the standard error over its test batches.
"""

from __future__ import annotations

import copy
import inspect
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from mibounds._checks import (
    check_at_least,
    check_choice,
    check_float_dtype,
    real_in,
    resolve_device,
)
from mibounds.arrays import Samples, as_samples, scale, train_statistics
from mibounds.catalogue import CATALOGUE, Entry, entry
from mibounds.harness.data import derive_seed
from mibounds.harness.interface import Batch
from mibounds.harness.objectives import build_objective, check_critic

__all__ = [
    "DEFAULT_ESTIMATOR",
    "SELECTIONS",
    "Estimate",
    "FittedCritic",
    "applicable_estimators",
    "estimate",
    "split",
]

DEFAULT_ESTIMATOR = {"pairs": "infonce", "views": "arithmetic"}
"""The estimator used when none is named: InfoNCE on pairs (a bound, low variance, capped at
``log K``), the arithmetic poly-view bound on views."""

SELECTIONS = ("early_stopping", "max_checkpoint")


@dataclass(frozen=True)
class Estimate:
    """The result of :func:`estimate`.

    Attributes:
        value: the MI estimate in nats, on the held-out test rows (mean over seeds).
        stderr: its standard error, nats (module docstring).
        estimator: the catalogue name. is_bound: whether it is a lower bound at the batch size.
        selection: the checkpoint rule, ``"early_stopping"`` or ``"max_checkpoint"``.
        curves: one row per seed and checkpoint: ``step``, ``seed``, ``train`` (the mean
            training value since the last checkpoint), ``held_out`` (validation rows), ``test``.
        critic: the first seed's trained critic, on raw (unstandardised) data
            (:class:`FittedCritic`). critics: every seed's.
        n: rows used. seconds: wall time of the whole call.
        estimates: ``"pairwise"`` I(x; y) or ``"one_vs_rest"`` I(x_a; X_{\\a}).
        seeds, values, steps: each seed, its value (nats) and its chosen checkpoint's step.
        settings: the resolved settings (batch size, hidden width, split sizes, ...).

    Example:
        >>> import torch
        >>> x = torch.randn(600, 2, generator=torch.Generator().manual_seed(0))
        >>> est = estimate(x, x + 0.5 * torch.randn(600, 2), seeds=1, steps=100, progress=False)
        >>> est.estimator, est.is_bound, est.n, list(est.curves.columns)
        ('infonce', True, 600, ['step', 'seed', 'train', 'held_out', 'test'])
        >>> set(est.to_dict()) >= {"value", "stderr", "estimator", "is_bound", "n", "seconds"}
        True
    """

    value: float
    stderr: float
    estimator: str
    is_bound: bool
    selection: str
    curves: pd.DataFrame = field(repr=False)
    critic: nn.Module = field(repr=False)
    n: int
    seconds: float
    estimates: str = "pairwise"
    seeds: tuple[int, ...] = ()
    values: tuple[float, ...] = ()
    steps: tuple[int, ...] = ()
    critics: tuple[nn.Module, ...] = field(default=(), repr=False)
    settings: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        what = "I(x; y)" if self.estimates == "pairwise" else "I(x_a; X_rest)"
        rule = self.selection.replace("_", " ")
        if self.selection == "max_checkpoint":
            rule += ", optimistic"
        seeds = f"{len(self.seeds)} seed{'s' if len(self.seeds) != 1 else ''}"
        return (
            f"{what} ≈ {self.value:.2f} ± {self.stderr:.2f} nats ({self.estimator}, held-out, "
            f"{rule}, n={self.n}, {seeds}, {self.seconds:.0f} s)"
        )

    def to_dict(self) -> dict[str, Any]:
        """The scalars, JSON-ready (no curves, no critic)."""
        return {
            "value": self.value,
            "stderr": self.stderr,
            "estimator": self.estimator,
            "is_bound": self.is_bound,
            "selection": self.selection,
            "estimates": self.estimates,
            "n": self.n,
            "seconds": self.seconds,
            "seeds": list(self.seeds),
            "values": list(self.values),
            "steps": list(self.steps),
            **{k: v for k, v in self.settings.items() if isinstance(v, (int, float, str))},
        }


class FittedCritic(nn.Module):
    """A trained critic on raw data: standardises with the train rows' statistics, zero-pads
    x and y to one width (pairs of different dimensions share one critic class), then scores.

    ``forward(x, y)``: ``(..., K, d_x), (..., K, d_y) -> (..., K, K)``; ``forward(views)``:
    ``(..., K, M, d) -> (..., K, M, K, M)``.

    Example:
        >>> import torch
        >>> from mibounds.critics import SeparableCritic
        >>> stats = {"mean_x": torch.zeros(1), "std_x": torch.ones(1),
        ...          "mean_y": torch.zeros(2), "std_y": torch.ones(2)}
        >>> critic = FittedCritic(SeparableCritic(2, hidden_dim=8), stats, width=2)
        >>> tuple(critic(torch.randn(5, 1), torch.randn(5, 2)).shape)  # d_x = 1, d_y = 2
        (5, 5)
    """

    def __init__(self, critic: nn.Module, stats: Mapping[str, Tensor], width: int) -> None:
        super().__init__()
        self.critic = critic
        self.width = width
        self.stat_names = tuple(stats)
        for name, value in stats.items():
            self.register_buffer(name, value)

    def prepare(self, x: Tensor, y: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """Standardised and padded inputs, in the critic's dtype and on its device
        (``mibounds.arrays.scale``)."""
        return scale(x, y, {name: getattr(self, name) for name in self.stat_names}, self.width)

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        px, py = self.prepare(x, y)
        return self.critic(px) if py is None else self.critic(px, py)


# ----------------------------------------------------------------------------- settings


def _sizes(n: int, test_fraction: float, validation_fraction: float) -> tuple[int, int, int]:
    n_test = round(n * test_fraction)
    n_val = round((n - n_test) * validation_fraction)
    return n - n_test - n_val, n_val, n_test


def split(
    n: int, seed: int, test_fraction: float = 0.3, validation_fraction: float = 0.2
) -> tuple[Tensor, Tensor, Tensor]:
    """The rows of seed ``seed``: a permutation of ``range(n)`` from the seed's own stream
    (``derive_seed(seed, "split")``), cut into train, validation and test rows, disjoint:
    ``round(n test_fraction)`` test rows, ``validation_fraction`` of the rest for validation.

    Example:
        >>> train, val, test = split(10, 0)
        >>> len(train), len(val), len(test), sorted(torch.cat([train, val, test]).tolist()) == list(range(10))
        (6, 1, 3, True)
    """  # noqa: E501
    n_train, n_val, _ = _sizes(n, test_fraction, validation_fraction)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, "split")))
    return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]


def _batch_size(given: int | None, sizes: tuple[int, int, int], n: int) -> int:
    """The batch size: ``given`` if every part of the split holds a batch of it, else an error;
    default 256, or the smallest part when that is smaller (at least 8 rows)."""
    parts = "train / validation / test"
    shown = " / ".join(map(str, sizes))
    smallest = min(sizes)
    if given is not None:
        check_at_least(given, 2, "batch_size")
        if smallest < given:
            raise ValueError(
                f"n = {n} rows split into {shown} {parts} rows, and each part needs at least "
                f"batch_size = {given} rows; give more rows, a smaller batch_size or another "
                "test_fraction"
            )
        return given
    if smallest < 8:
        raise ValueError(
            f"n = {n} rows split into {shown} {parts} rows: too few for a held-out estimate "
            "(each part needs 8 rows or more); give more rows"
        )
    return min(256, smallest)


def _hidden(n_train: int) -> int:
    """The default hidden width: grows with the train rows as ``sqrt(n_train)``, rounded up to
    a multiple of 16, within [32, 256] (64 for n = 5,000): capacity the data can support."""
    return int(min(256, max(32, 16 * math.ceil(math.sqrt(n_train) / 16))))


def _critic(
    name: str, given: Mapping[str, Any] | None, hidden: int | None, samples: Samples, n_train: int
) -> tuple[int, type[nn.Module], dict[str, Any]]:
    """``(width, class, params)`` of the critic: pairs are zero-padded to one width
    ``max(d_x, d_y)``, views keep d; ``hidden`` (default :func:`_hidden`) sets ``hidden_dim``
    where the critic has one."""
    width = samples.width
    params = dict(given or {})
    cls = check_critic(name, params, width)
    if "hidden_dim" in inspect.signature(cls).parameters and "hidden_dim" not in params:
        params["hidden_dim"] = (
            _hidden(n_train) if hidden is None else check_at_least(hidden, 1, "hidden")
        )
        check_critic(name, params, width)
    elif hidden is not None:
        raise ValueError(f"critic {name!r} has no hidden width; leave hidden unset")
    return width, cls, params


def applicable_estimators(views: bool) -> tuple[str, ...]:
    """The catalogue estimators ``estimate`` trains, in catalogue order: on pairs,
    those that take pairwise scores and keep no per-item state (``Entry.takes == "scores"``);
    on views, the poly-view ones that estimate the one-vs-rest MI.

    Example:
        >>> applicable_estimators(views=True)
        ('arithmetic', 'geometric', 'arithmetic_printed', 'sufficient_statistics')
    """
    if views:
        wanted = ("polyview_scores", "views_and_critic")
        return tuple(
            n
            for n, e in CATALOGUE.items()
            if e.takes in wanted and e.estimates == "one_vs_rest" and not e.per_item
        )
    return tuple(n for n, e in CATALOGUE.items() if e.takes == "scores" and not e.per_item)


def _entry_for(name: str, kind: str) -> Entry:
    found = entry(name)
    names = applicable_estimators(views=kind == "views")
    if name not in names:
        what = "pairs x, y" if kind == "pairs" else "views (one-vs-rest MI)"
        raise ValueError(
            f"estimator {name!r} cannot estimate from {what}; use one of {sorted(names)}"
        )
    return found


def _seed_list(seeds: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        return tuple(range(check_at_least(seeds, 1, "seeds")))
    if isinstance(seeds, Sequence) and seeds and not isinstance(seeds, str):
        out = tuple(check_at_least(s, 0, "each of seeds") for s in seeds)
        if len(set(out)) != len(out):
            raise ValueError(f"seeds must be distinct, got {list(out)}")
        return out
    raise ValueError(f"seeds must be a count >= 1 or a non-empty list of seeds, got {seeds!r}")


# ------------------------------------------------------------------------------ one seed


def _batches(prepared: tuple[Tensor, Tensor | None], rows: Tensor, k: int) -> Batch:
    """The ``rows`` in ``len(rows) // k`` batches of k: ``x: (1, B, k, ...)``."""
    rows = rows[: len(rows) // k * k].view(1, -1, k)
    x, y = prepared
    return Batch(x=x[rows], y=None if y is None else y[rows])


def _read(objective: Any, critic: nn.Module, batches: Batch) -> Tensor:
    """``(B,)`` estimates of the frozen critic on held-out batches."""
    with torch.no_grad():
        return objective(critic, batches, validate_args=False).reshape(-1)


def _train_seed(
    samples: Samples, found: Entry, params: Mapping[str, Any], seed: int, cfg: Mapping[str, Any]
) -> dict[str, Any]:
    device, dtype, k = cfg["device"], cfg["dtype"], cfg["batch_size"]
    n_train = cfg["n_train"]
    train_rows, val_rows, test_rows = split(samples.n, seed, *cfg["fractions"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "init"))
        inner = cfg["critic_class"](cfg["width"], **cfg["critic_params"])
    stats = train_statistics(samples, train_rows, dtype, cfg["marginals"])
    fitted = FittedCritic(inner, stats, cfg["width"]).to(device=device, dtype=dtype)
    prepared = fitted.prepare(*(None if t is None else t.to(device) for t in samples.tensors))
    val, test = _batches(prepared, val_rows, k), _batches(prepared, test_rows, k)
    objective = build_objective(found, params, n_seeds=1, n_items=n_train)
    if isinstance(objective, nn.Module):
        objective.to(device)
    optimiser = torch.optim.AdamW(
        inner.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"]
    )
    ema, reader = cfg["ema"], inner
    if ema:  # checkpoints read the exponential moving average of the weights
        averaged = AveragedModel(inner, multi_avg_fn=get_ema_multi_avg_fn(ema))
        reader = averaged.module
    shuffle = torch.Generator().manual_seed(derive_seed(seed, "shuffle"))
    per_epoch = n_train // k
    x_all, y_all = prepared
    best = {"held_out": -math.inf, "test": -math.inf, "step": 0, "state": None, "reads": None}
    curve, train_sum, train_count, stale = [], 0.0, 0, 0
    for step in range(1, cfg["max_steps"] + 1):
        position = (step - 1) % per_epoch
        if position == 0:
            epoch = torch.randperm(n_train, generator=shuffle)[: per_epoch * k].to(device)
            epoch = train_rows.to(device)[epoch].view(per_epoch, k)
        rows = epoch[position].unsqueeze(0)
        batch = Batch(
            x=x_all[rows],
            y=None if y_all is None else y_all[rows],
            indices=torch.arange(k).unsqueeze(0),
        )
        value = objective(inner, batch, validate_args=step == 1).sum()
        optimiser.zero_grad(set_to_none=True)
        (-value).backward()
        optimiser.step()
        if ema:
            averaged.update_parameters(inner)
        train_sum, train_count = train_sum + float(value.detach()), train_count + 1
        cfg["bar"].update(1)
        if step % cfg["eval_every"] and step != cfg["max_steps"]:
            continue
        if isinstance(objective, nn.Module):
            objective.eval()
        held_out = float(_read(objective, reader, val).mean())
        reads = _read(objective, reader, test)
        if isinstance(objective, nn.Module):
            objective.train()
        row = {
            "step": step,
            "seed": seed,
            "train": train_sum / train_count,
            "held_out": held_out,
            "test": float(reads.mean()),
        }
        curve.append(row)
        train_sum, train_count = 0.0, 0
        key = "held_out" if cfg["selection"] == "early_stopping" else "test"
        if not math.isfinite(row[key]):
            break
        if row[key] > best[key]:
            best = {**row, "state": copy.deepcopy(reader.state_dict()), "reads": reads}
            stale = 0
        else:
            stale += 1
        cfg["bar"].set_postfix(seed=seed, held_out=f"{held_out:.3f}", refresh=False)
        if cfg["selection"] == "early_stopping" and stale >= cfg["patience"]:
            break
    cfg["bar"].update(cfg["max_steps"] - step)
    if best["state"] is None:
        raise ValueError(
            f"seed {seed}: the estimate was not finite at the first checkpoint (step "
            f"{curve[0]['step']}); try a smaller lr or another estimator"
        )
    inner.load_state_dict(best["state"])
    return {
        "value": float(best["reads"].mean()),
        "reads": best["reads"].cpu(),
        "step": best["step"],
        "curve": curve,
        "critic": fitted.eval(),
    }


# -------------------------------------------------------------------------------- estimate


def estimate(
    x: Any = None,
    y: Any = None,
    *,
    views: Any = None,
    estimator: str | None = None,
    params: Mapping[str, Any] | None = None,
    critic: str = "separable",
    critic_params: Mapping[str, Any] | None = None,
    hidden: int | None = None,
    batch_size: int | None = None,
    steps: int = 4000,
    eval_every: int = 50,
    patience: int = 10,
    lr: float = 1e-3,
    weight_decay: float = 1e-3,
    test_fraction: float = 0.3,
    validation_fraction: float = 0.2,
    selection: str = "early_stopping",
    seeds: int | Sequence[int] = 3,
    device: str = "auto",
    dtype: torch.dtype = torch.float32,
    progress: bool = True,
    ema: float = 0.99,
    marginals: str = "standard",
) -> Estimate:
    """Estimate ``I(x; y)`` (pairs) or ``I(x_a; X_{\\a})`` (views) in nats, held out.

    The procedure is the module docstring's: split, standardise on train rows, train a critic
    on train rows, select a checkpoint on validation rows, read the test rows (docs/estimation.md).
    With InfoNCE (the default on pairs) the value is a lower bound in expectation,
    ``I >= E[f(x_i, y_i) - log (1/K) sum_j exp f(x_i, y_j)]`` (Oord et al. 2018; Poole et al.
    2019, docs/pairwise.md), whatever critic the training found; its cap is ``log K``.

    Args:
        x: ``(n, d_x)`` or ``(n,)``; y: ``(n, d_y)`` or ``(n,)``: pairs (numpy, torch, pandas).
        views: ``(n, M, d)`` instead of x and y: the one-vs-rest MI with a poly-view estimator.
        estimator: a catalogue name (``mibounds.catalogue``); default ``"infonce"`` on pairs,
            ``"arithmetic"`` on views. params: its parameters (checked by the catalogue).
        critic: ``"separable"`` (default), ``"bilinear"`` or ``"concat"``
            (``mibounds.critics.CRITICS``); critic_params: its keyword arguments.
        hidden: the critic's hidden width (default: ``sqrt(train rows)`` rounded up to a
            multiple of 16, in [32, 256]; 64 at n = 5,000).
        batch_size: K (default 256, less when a part of the split is smaller).
        steps: the most optimiser steps. eval_every: steps between checkpoints. patience:
            checkpoints without a better validation value before stopping.
        lr, weight_decay: AdamW's.
        test_fraction: rows held out for the final read; validation_fraction: of the rest,
            rows for the selection.
        selection: ``"early_stopping"`` or ``"max_checkpoint"`` (optimistic; module doc).
        seeds: a count (seeds 0..N-1) or a list; each seed has its own split, initialisation
            and batches.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...; dtype: the critic's float dtype.
        progress: show a tqdm progress bar.
        ema: checkpoints read the exponential moving average of the weights with this decay
            (0: the weights themselves).
    Returns:
        :class:`Estimate`.
    Raises:
        ValueError / TypeError: bad samples (``mibounds.arrays.as_samples``) or settings,
            before any training.

    Example:
        >>> import torch
        >>> from mibounds.tasks import TASKS
        >>> task = TASKS["multinormal-dense-2-2-0.5"]
        >>> x, y = task.sample(2000, generator=torch.Generator().manual_seed(0))
        >>> est = estimate(x, y, seeds=1, steps=300, progress=False, device="cpu")
        >>> abs(est.value - task.mi) < 0.1, est.is_bound, est.estimator
        (True, True, 'infonce')
    """
    start = time.perf_counter()
    samples = as_samples(x, y, views=views)
    name = estimator or DEFAULT_ESTIMATOR[samples.kind]
    found = _entry_for(name, samples.kind)
    checked = found.check_params(dict(params or {}))
    if samples.kind == "views":
        found.check_views(samples.views.shape[1])
    selection = check_choice(selection, SELECTIONS, "selection")
    seed_list = _seed_list(seeds)
    for value, label in ((steps, "steps"), (eval_every, "eval_every"), (patience, "patience")):
        check_at_least(value, 1, label)
    lr = _real(lr, "lr", 0.0, math.inf, low_open=True)
    weight_decay = _real(weight_decay, "weight_decay", 0.0, math.inf, low_open=False)
    test_fraction = _real(test_fraction, "test_fraction", 0.0, 1.0, low_open=True)
    validation_fraction = _real(validation_fraction, "validation_fraction", 0.0, 1.0, low_open=True)
    ema = _real(ema, "ema", 0.0, 1.0, low_open=False)
    check_float_dtype(dtype)
    where = resolve_device(device)
    sizes = _sizes(samples.n, test_fraction, validation_fraction)
    k = _batch_size(batch_size, sizes, samples.n)
    width, cls, cparams = _critic(critic, critic_params, hidden, samples, sizes[0])
    settings = {
        "batch_size": k, "max_steps": steps, "eval_every": eval_every, "patience": patience,
        "lr": lr, "weight_decay": weight_decay, "critic": critic,
        "hidden": cparams.get("hidden_dim", 0), "ema": ema, "marginals": marginals,
        "n_train": sizes[0],
        "n_validation": sizes[1], "n_test": sizes[2], "device": str(where),
    }  # fmt: skip
    cfg = {
        **settings, "device": where, "dtype": dtype, "width": width,
        "fractions": (test_fraction, validation_fraction),
        "critic_class": cls, "critic_params": cparams, "selection": selection,
    }  # fmt: skip
    results = []
    with tqdm(
        total=steps * len(seed_list), disable=not progress, desc=f"estimate ({name})", unit="step"
    ) as bar:
        cfg["bar"] = bar
        for seed in seed_list:
            results.append(_train_seed(samples, found, checked, seed, cfg))
    values = torch.tensor([r["value"] for r in results], dtype=torch.float64)
    if len(results) > 1:
        stderr = float(values.std() / math.sqrt(len(values)))
    else:
        reads = results[0]["reads"].double()
        stderr = float(reads.std() / math.sqrt(len(reads))) if len(reads) > 1 else math.nan
    curves = pd.DataFrame(
        [row for r in results for row in r["curve"]],
        columns=["step", "seed", "train", "held_out", "test"],
    )
    return Estimate(
        value=float(values.mean()),
        stderr=stderr,
        estimator=name,
        is_bound=found.is_bound(k, checked),
        selection=selection,
        curves=curves,
        critic=results[0]["critic"],
        n=samples.n,
        seconds=time.perf_counter() - start,
        estimates=found.estimates,
        seeds=seed_list,
        values=tuple(values.tolist()),
        steps=tuple(r["step"] for r in results),
        critics=tuple(r["critic"] for r in results),
        settings=settings,
    )


def _real(value: Any, name: str, low: float, high: float, *, low_open: bool) -> float:
    try:
        return real_in(low, high, low_open=low_open)(value)
    except ValueError as err:
        raise ValueError(f"{name} {err}") from None
