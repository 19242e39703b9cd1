"""Poole et al. 2019, the staircase figure: six estimators and two critics against a true MI
that steps through 2..10 nats (docs/experiments.md)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mibounds.records import curves
from mibounds.reproductions.report import (
    Context,
    markdown_table,
    params_text,
    shown,
    write_text,
)


def report(frame: pd.DataFrame, ctx: Context) -> list[Path]:
    from mibounds import plots

    first = frame.iloc[0]
    fig = plots.staircase_figure(
        frame,
        title=f"Poole et al. 2019 staircase: d = {int(first['d'])}, K = {int(first['k'])}, "
        "EMA span 200 steps",
    )
    figure = plots.save(fig, ctx.figures / "poole_staircase.png")
    levels = list(first["mi_levels"])
    per_level = int(first["steps"]) // len(levels)
    long = curves(frame)
    long["level"] = np.minimum((long["step"] - 1) // per_level, len(levels) - 1)
    # the last quarter of each level: the estimate after the critic has adapted
    settled = long[(long["step"] - 1) % per_level >= 0.75 * per_level]
    critic = plots.critic_column(frame)
    table = (
        settled.groupby(["objective_label", critic, "level"], sort=False)["estimate"]
        .mean()
        .unstack("level")
        .map(lambda v: f"{v:.2f}")
    )
    table.columns = [f"I = {levels[i]:g}" for i in table.columns]
    table.index = [f"{o}, {c}" for o, c in table.index]
    critics = frame.drop_duplicates("critic_label")
    lines = [
        ctx.header(
            "Poole et al. 2019 staircase: estimators and critics against a rising MI", frame
        ),
        f"Figure: `{shown(figure)}`. d = {int(first['d'])} Gaussian pairs, K = "
        f"{int(first['k'])}, the true MI steps through {levels} nats, {per_level} steps each; "
        f"Adam, lr = {first['lr']:g}; one seed per estimator and critic (as in the paper's "
        "figure). Critics: "
        + "; ".join(f"{r.critic} ({params_text(r.critic_params)})" for r in critics.itertuples())
        + ".",
        "",
        *(
            [
                "**Reduced from the paper's sizes** (4000 steps per level; concat and separable "
                "critics 256 units wide) to run in minutes on a CPU; the grid's comments give "
                "the paper's values.",
                "",
            ]
            if per_level != 4000
            or any(dict(p).get("hidden_dim", 256) != 256 for p in frame["critic_params"])
            else []
        ),
        "Mean training estimate (nats) over the last quarter of each level:",
        "",
        markdown_table(table, "estimator, critic"),
        "",
        f"log K = {math.log(int(first['k'])):.2f} caps InfoNCE; interpolated(alpha) is capped by "
        "1 + log(K / alpha); EqCo by log(alpha + 1). NWJ and JS are unbounded but high-variance.",
        "",
    ]
    return [figure, write_text(ctx.tables / "poole_staircase.md", "\n".join(lines))]
