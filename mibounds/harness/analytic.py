"""Estimators at analytic optimal critics: no training, so what a table shows is each
estimator's own bias and spread.

- ``analytic_table``: every pairwise estimator on Poole's d = 20 staircase, scored by the exact
  log density ratio ``f*(x, y) = log p(y|x)/p(y)`` (docs/gaussian.md): the ceiling ``log K`` of
  InfoNCE and EqCo's ability to pass it. ``python -m mibounds`` prints it.
- ``all_view_overshoot``: the all-view readings of the poly-view paper's Algorithm 1
  (docs/polyview.md) at the optimal pairwise critic of M equicorrelated views, against the
  one-vs-rest MI and I(x_a; c): where the construction, read as an estimate, exceeds the truth.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch import Tensor

from mibounds import bounds, polyview
from mibounds._checks import check_at_least
from mibounds.gaussian import (
    mi_from_rho,
    multiview_log_ratio,
    one_vs_rest_mi,
    pair_log_ratio,
    rho_from_mi,
    sample_pairs,
    sample_views,
)


def _estimators(eqco_alpha: float) -> dict[str, Callable[[Tensor], Tensor]]:
    """name -> estimate of the log ratio ``f``, each given the critic its optimum asks for:
    NWJ-type bounds are tight at ``1 + log r`` (JS adds the 1 itself), the others at ``log r``."""
    return {
        "infonce": bounds.infonce,
        "nwj": lambda f: bounds.nwj(f + 1.0),
        "js": bounds.js,
        "dv": bounds.dv,
        "smile(5)": functools.partial(bounds.smile, clip=5.0),
        "interpolated(0.01)": functools.partial(bounds.interpolated, alpha=0.01),
        f"eqco({eqco_alpha:g})": functools.partial(bounds.eqco, alpha=eqco_alpha),
    }


def analytic_table(
    levels: Sequence[float] = (2.0, 4.0, 6.0, 8.0, 10.0),
    k: int = 128,
    batches: int = 20,
    d: int = 20,
    eqco_alpha: float = 512.0,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (true MI level, estimator): mean and sd over ``batches`` batches of K pairs.

    Columns: ``true_mi`` (nats), ``estimator``, ``mean``, ``sd``, ``log_k``.
    """
    check_at_least(k, 2, "k")
    check_at_least(batches, 1, "batches")
    g = torch.Generator().manual_seed(seed)
    rows = []
    for mi in levels:
        rho = rho_from_mi(mi, d)
        f = torch.stack(
            [pair_log_ratio(*sample_pairs(k, d, rho, generator=g), rho) for _ in range(batches)]
        )
        for name, estimate in _estimators(eqco_alpha).items():
            values = estimate(f)
            rows.append(
                {
                    "true_mi": mi,
                    "estimator": name,
                    "mean": values.mean().item(),
                    "sd": values.std().item(),
                    "log_k": math.log(k),
                }
            )
    return pd.DataFrame(rows)


def format_table(table: pd.DataFrame) -> str:
    """Rows: true MI; columns: estimators as ``mean +- sd``."""
    cells = table.assign(
        cell=[f"{m:6.2f} ± {s:4.2f}" for m, s in zip(table["mean"], table["sd"], strict=True)]
    )
    wide = cells.pivot(index="true_mi", columns="estimator", values="cell")
    wide = wide[list(dict.fromkeys(table["estimator"]))]
    wide.index = [f"I = {mi:g}" for mi in wide.index]
    return wide.to_string()


ALL_VIEW_READINGS: dict[str, Callable[[Tensor], Tensor]] = {
    "arithmetic": functools.partial(polyview.arithmetic, negatives="all_views"),
    "geometric": functools.partial(polyview.geometric, negatives="all_views"),
    "multicrop": functools.partial(polyview.multicrop, negatives="all_views"),
}
"""The all-view readings, by objective name: ``S: (..., K, M, K, M) -> (...)`` in nats."""


def all_view_overshoot(
    ks: Sequence[int] = (2, 4, 8, 16, 64),
    ms: Sequence[int] = (2, 3, 4, 8, 16),
    rhos: Sequence[float] = (0.5, 0.9, 0.95, 0.99),
    *,
    scores_per_cell: int = 2**26,
    max_batches: int = 4000,
    min_batches: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """The all-view readings at the optimal pairwise critic ``f*(x_a, x_b) = log p(x_b | x_a) /
    p(x_b)`` of M equicorrelated 1-D views (``multiview_log_ratio``), over a grid of K, M, rho.

    Each cell scores ``batches`` fresh batches of K samples, as many as ``scores_per_cell``
    score entries allow, clipped to ``[min_batches, max_batches]``; each reading's mean over
    batches has the standard error ``sd / sqrt(batches)``.

    Returns:
        One row per (rho, K, M, objective) with ``mean`` and ``se`` (nats), ``batches``, and the
        truths ``mi_one_vs_rest`` (I(x_a; X_{\\a})), ``mi_factor`` (I(x_a; c) = -(1/2)
        log(1 - rho), the M -> infinity limit) and ``mi_pairwise`` (I(x_a; x_b), Multi-Crop's
        target).
    """
    g = torch.Generator().manual_seed(seed)
    rows = []
    for rho in rhos:
        for k in ks:
            for m in ms:
                per_batch = (k * m) ** 2
                batches = int(min(max(scores_per_cell // per_batch, min_batches), max_batches))
                chunk = max(1, 2**22 // per_batch)  # bounds the memory of one S tensor
                values: dict[str, list[Tensor]] = {name: [] for name in ALL_VIEW_READINGS}
                for start in range(0, batches, chunk):
                    n = min(chunk, batches - start)
                    z = sample_views(n * k, m, 1, rho, generator=g).view(n, k, m, 1)
                    S = multiview_log_ratio(z, rho)  # (n, K, M, K, M)
                    for name, reading in ALL_VIEW_READINGS.items():
                        values[name].append(reading(S))
                for name, parts in values.items():
                    v = torch.cat(parts)
                    rows.append(
                        {
                            "rho": rho,
                            "k": k,
                            "m": m,
                            "objective": name,
                            "mean": v.mean().item(),
                            "se": v.std().item() / math.sqrt(len(v)),
                            "batches": len(v),
                            "mi_one_vs_rest": one_vs_rest_mi(rho, 1, m),
                            "mi_factor": -0.5 * math.log(1 - rho),
                            "mi_pairwise": mi_from_rho(rho, 1),
                        }
                    )
    return pd.DataFrame(rows)
