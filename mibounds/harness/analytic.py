"""Every pairwise estimator at the analytic optimal critic on Poole's d = 20 staircase.

No training: the exact log density ratio ``f*(x, y) = log p(y|x)/p(y)`` (bounds.md §4) scores
fresh batches, so what the table shows is each estimator's own bias and spread, the ceiling
``log K`` of InfoNCE and EqCo's ability to pass it. ``python -m mibounds`` prints it.
"""

from __future__ import annotations

import argparse
import functools
import math
from collections.abc import Callable, Sequence

import pandas as pd
import torch
from torch import Tensor

from mibounds import bounds
from mibounds.gaussian import pair_log_ratio, rho_from_mi, sample_pairs


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


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "analytic",
        help="every estimator at the analytic optimal critic on the d = 20 staircase (no training)",
        description=__doc__,
    )
    p.add_argument("-k", type=int, default=128, help="batch size K (default 128)")
    p.add_argument("--batches", type=int, default=20, help="batches per MI level (default 20)")
    p.add_argument("--alpha", type=float, default=512.0, help="EqCo's alpha (default 512)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    table = analytic_table(k=args.k, batches=args.batches, eqco_alpha=args.alpha, seed=args.seed)
    print(
        f"Estimators at the optimal critic log p(y|x)/p(y), d = 20 Gaussian pairs, K = {args.k}, "
        f"{args.batches} batches per level (nats, mean ± sd). log K = {math.log(args.k):.2f}."
    )
    print(format_table(table))
    return 0
