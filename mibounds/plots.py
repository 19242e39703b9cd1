"""Figures of harness results (``mibounds.harness.results.load_results`` frames), with seaborn.

Every figure shows the mean over seeds with a +-1 sd band, reference lines for the true MI
and the InfoNCE ceiling log K, and axes labelled with their units (MI in nats). Functions
return a matplotlib ``Figure``; ``save`` writes it. Nothing here trains or reads files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from mibounds.records import curves

__all__ = [
    "AXIS_LABELS",
    "critic_column",
    "curves_panel",
    "estimate_figure",
    "facet_figure",
    "metric_panel",
    "overshoot_figure",
    "polyview_figure",
    "results_figure",
    "save",
    "staircase_figure",
]

AXIS_LABELS = {
    "m": "M (views per sample)",
    "k": "K (samples per batch)",
    "rho": "rho (correlation between views)",
    "mi": "true pairwise MI (nats)",
    "d": "d (data dimension)",
    "steps": "training steps",
    "lr": "learning rate",
    "step": "training step",
    "estimate_mean": "estimate (nats)",
    "gap": "gap = true MI - estimate (nats)",
    "relative_mi": "relative MI = true MI / estimate",
    "gap_one_vs_rest": "gap to one-vs-rest MI (nats)",
    "relative_mi_one_vs_rest": "one-vs-rest MI / estimate",
    "gap_factor": "gap to I(x_a; c) (nats)",
    "relative_mi_factor": "I(x_a; c) / estimate",
    "loss": "training loss = -estimate (nats)",
    "estimate": "estimate (nats)",
    "data_label": "data (the source's parameters)",
}
_HUE = "objective_label"


def _label(name: str) -> str:
    return AXIS_LABELS.get(name, name)


def metric_panel(
    ax: plt.Axes,
    frame: pd.DataFrame,
    x: str,
    y: str,
    *,
    hue: str = _HUE,
    style: str | None = None,
    log_x: bool = False,
) -> plt.Axes:
    """``y`` against ``x``: the mean over seeds with a +-1 sd band, one line per ``hue`` (each
    with its own dashes and marker, so lines that coincide stay visible)."""
    sns.lineplot(
        data=frame,
        x=x,
        y=y,
        hue=hue,
        style=style or hue,
        errorbar="sd",
        markers=True,
        dashes=True,
        err_style="band",
        ax=ax,
    )
    if log_x:
        ax.set_xscale("log", base=2)
    values = sorted(frame[x].unique())
    if len(values) <= 8:
        ax.set_xticks(values)
        ax.set_xticklabels([f"{v:g}" for v in values])
        ax.minorticks_off()
    if y.startswith("relative_mi"):
        ax.axhline(1.0, color="0.3", lw=0.8, ls=":", label="tight (ratio 1)")
    if y.startswith("gap"):
        ax.axhline(0.0, color="0.3", lw=0.8, ls=":", label="tight (gap 0)")
    ax.set_xlabel(_label(x))
    ax.set_ylabel(_label(y))
    return ax


def _reference_lines(ax: plt.Axes, frame: pd.DataFrame, x: str) -> None:
    """True MIs (and log K) against ``x``, dashed, from the frame's per-setting columns."""
    per_x = frame.groupby(x)[["mi_pairwise", "mi_one_vs_rest", "log_k"]].first().reset_index()
    ax.plot(per_x[x], per_x["mi_pairwise"], "k--", lw=1, label="true pairwise MI")
    if per_x["mi_one_vs_rest"].notna().any():
        ax.plot(per_x[x], per_x["mi_one_vs_rest"], "k-", lw=1.5, label="true one-vs-rest MI")
    ax.plot(per_x[x], per_x["log_k"], color="tab:red", ls=":", lw=1, label="log K")


def curves_panel(
    ax: plt.Axes,
    frame: pd.DataFrame,
    y: str = "loss",
    *,
    hue: str = _HUE,
    style: str | None = None,
    span: float | None = None,
) -> plt.Axes:
    """Training curves (block means) against the step; ``span``: EMA span in steps, if any."""
    long = curves(frame)
    if span:
        every = float(frame["curve_every"].iloc[0])
        long[y] = long.groupby("run_key", sort=False)[y].transform(
            lambda s: s.ewm(span=max(span / every, 1.0)).mean()
        )
    sns.lineplot(data=long, x="step", y=y, hue=hue, style=style or hue, errorbar="sd", ax=ax)
    ax.set_xlabel(_label("step"))
    ax.set_ylabel(_label(y))
    return ax


def _finish(fig: Figure, axes: Sequence[plt.Axes], title: str) -> Figure:
    handles, labels = {}, []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in handles:
                handles[lab] = h
                labels.append(lab)
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.legend(
        [handles[lab] for lab in labels],
        labels,
        loc="lower center",
        ncol=min(len(labels), 5),
        frameon=False,
        bbox_to_anchor=(0.5, 0.0),
    )
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.04 + 0.035 * math.ceil(len(labels) / 5), 1, 0.97))
    return fig


def polyview_figure(
    frame: pd.DataFrame,
    *,
    loss_m: int,
    title: str = "",
    hue: str = _HUE,
    style: str | None = None,
) -> Figure:
    """Shidani et al. 2024, Figure 2, against M, with both gap references: (a) the true MIs
    (one-vs-rest, pairwise, and I(x_a; c), its M -> infinity limit), the gap to (b) the
    one-vs-rest MI and (c) I(x_a; c), (d) the training losses at ``M = loss_m``, and the
    relative MI to (e) the one-vs-rest MI and (f) I(x_a; c). One line per ``hue`` (line style
    per ``style``, e.g. the candidate set)."""
    fig, grid = plt.subplots(2, 3, figsize=(16, 8.6))
    a, b, c, d, e, f = grid.flat
    per_m = (
        frame.groupby("m")[["mi_one_vs_rest", "mi_pairwise", "mi_factor", "log_k"]]
        .first()
        .reset_index()
    )
    a.plot(per_m["m"], per_m["mi_one_vs_rest"], "k-o", label="true one-vs-rest MI")
    a.plot(per_m["m"], per_m["mi_pairwise"], "k--", lw=1, label="true pairwise MI")
    a.plot(per_m["m"], per_m["mi_factor"], "k:", lw=1.5, label="I(x_a; c), the M -> inf limit")
    log_k, top = float(per_m["log_k"].max()), float(per_m["mi_factor"].max())
    if log_k <= 1.5 * top:
        a.plot(per_m["m"], per_m["log_k"], color="tab:red", ls=":", lw=1, label="log K")
    else:
        # drawn, a ceiling far above the MIs would squash their curves into the panel's foot
        a.text(
            0.97,
            0.25,
            f"log K = {log_k:.2f}, the bounds'\nceiling, is above this scale",
            transform=a.transAxes,
            ha="right",
            color="tab:red",
        )
    a.set_xlabel(_label("m"))
    a.set_ylabel("true MI (nats)")
    a.set_xticks(per_m["m"])
    a.set_title("(a) true MIs")
    for ax, y, name in (
        (b, "gap_one_vs_rest", "(b) gap to the one-vs-rest MI"),
        (c, "gap_factor", "(c) gap to I(x_a; c)"),
        (e, "relative_mi_one_vs_rest", "(e) relative MI, one-vs-rest"),
        (f, "relative_mi_factor", "(f) relative MI, I(x_a; c)"),
    ):
        metric_panel(ax, frame, "m", y, hue=hue, style=style).set_title(name)
    at_m = frame[frame["m"] == loss_m]
    curves_panel(d, at_m, hue=hue, style=style)
    d.axhline(
        -float(at_m["mi_one_vs_rest"].iloc[0]), color="k", lw=1.5, label="true one-vs-rest MI"
    )
    d.axhline(
        -float(at_m["mi_pairwise"].iloc[0]), color="k", ls="--", lw=1, label="true pairwise MI"
    )
    # the one-vs-rest line is usually the lowest point: without extra room it hides in the spine
    d.margins(y=0.12)
    d.set_title(f"(d) training losses, M = {loss_m} (lines: -true MI)")
    return _finish(fig, list(grid.flat), title)


def facet_figure(
    frame: pd.DataFrame,
    x: str,
    facet: str,
    *,
    metrics: Sequence[str] = ("gap_one_vs_rest", "relative_mi_one_vs_rest"),
    title: str = "",
    hue: str = _HUE,
    style: str | None = None,
) -> Figure:
    """A grid of panels: one row per metric, one column per value of ``facet`` (e.g. the gap
    and relative MI against M, for each K); y axes are shared along a row."""
    values = sorted(frame[facet].unique())
    fig, axes = plt.subplots(
        len(metrics),
        len(values),
        figsize=(4.2 * len(values), 3.6 * len(metrics)),
        squeeze=False,
        sharey="row",
    )
    for row, metric in zip(axes, metrics, strict=True):
        for ax, value in zip(row, values, strict=True):
            metric_panel(ax, frame[frame[facet] == value], x, metric, hue=hue, style=style)
            ax.set_title(f"{_label(facet).split(' (')[0]} = {value:g}")
    return _finish(fig, list(axes.flat), title)


def overshoot_figure(cells: pd.DataFrame, *, title: str = "") -> Figure:
    """Heatmaps of where an estimate exceeds a true MI: one row per rho, one column per
    ``panel``; in each, K (rows) against M (columns), coloured by ``excess`` (estimate - truth,
    nats; blue below, red above, each side scaled to its own extreme so that small excesses
    show), and annotated with the excess, starred where it is beyond 3 standard errors
    (``over``)."""
    from matplotlib.colors import TwoSlopeNorm

    rhos, panels = sorted(cells["rho"].unique()), list(dict.fromkeys(cells["panel"]))
    fig, axes = plt.subplots(
        len(rhos),
        len(panels),
        figsize=(3.6 * len(panels) + 1.5, 2.9 * len(rhos) + 0.8),
        squeeze=False,
        layout="constrained",
    )
    norm = TwoSlopeNorm(
        vcenter=0.0,
        vmin=min(float(cells["excess"].min()), -1e-3),
        vmax=max(float(cells["excess"].max()), 1e-3),
    )
    for row, rho in zip(axes, rhos, strict=True):
        for ax, panel in zip(row, panels, strict=True):
            part = cells[(cells["rho"] == rho) & (cells["panel"] == panel)]
            excess = part.pivot(index="k", columns="m", values="excess").sort_index()
            over = part.pivot(index="k", columns="m", values="over").reindex_like(excess)
            text = excess.map(lambda v: f"{v:+.2f}") + over.map(lambda o: "*" if o else "")
            sns.heatmap(
                excess,
                annot=text,
                fmt="",
                cmap="RdBu_r",
                norm=norm,
                cbar=False,
                ax=ax,
                annot_kws={"fontsize": 7},
            )
            ax.invert_yaxis()
            ax.set_xlabel(_label("m"))
            ax.set_ylabel(_label("k"))
            ax.set_title(f"{panel}, rho = {rho:g}", fontsize=9)
    fig.colorbar(axes[0, 0].collections[0], ax=axes, shrink=0.6, label="estimate - true MI (nats)")
    fig.suptitle(title)
    return fig


def critic_column(frame: pd.DataFrame) -> str:
    """``"critic"`` (the names) when they tell the runs' critics apart, else ``"critic_label"``
    (names with parameters)."""
    same = frame["critic"].nunique() == frame["critic_label"].nunique()
    return "critic" if same else "critic_label"


def staircase_figure(frame: pd.DataFrame, *, span: float = 200.0, title: str = "") -> Figure:
    """Poole et al. 2019's staircase: one panel per estimator, the per-step training estimate
    smoothed by an EMA of ``span`` steps, one line per critic, against the true MI and log K."""
    names = list(dict.fromkeys(frame["objective_label"]))
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.8 * rows), squeeze=False)
    first = frame.iloc[0]
    levels = list(first["mi_levels"])
    per_level = int(first["steps"]) // len(levels)
    steps = np.arange(1, int(first["steps"]) + 1)
    truth = np.repeat(levels, per_level)
    flat = list(axes.flat)
    hue = critic_column(frame)
    for ax, name in zip(flat, names, strict=False):
        curves_panel(ax, frame[frame["objective_label"] == name], "estimate", hue=hue, span=span)
        ax.plot(steps, truth, color="k", lw=1.2, label="true MI")
        ax.axhline(float(first["log_k"]), color="tab:red", ls=":", lw=1, label="log K")
        ax.set_ylim(-1, max(levels) + 2)
        ax.set_title(name)
    for ax in flat[len(names) :]:
        ax.set_visible(False)
    return _finish(fig, flat[: len(names)], title)


_AXES = ("m", "k", "rho", "mi", "d", "steps", "lr")


def _own_data_figure(frame: pd.DataFrame, title: str) -> Figure:
    """Runs on sources with data of their own (known-MI tasks, a user's data): bars of the
    estimate, the gap and the relative MI per data set (its source parameters), the true MI as
    a black tick where the source knows it, and the training curves."""
    labels = [
        ", ".join(str(v) for _, v in sorted(p.items())) or s
        for s, p in zip(frame["source"], frame["source_params"], strict=True)
    ]
    frame = frame.assign(data_label=labels)
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    known = frame[frame["true_mi"].notna()]
    for ax, y in zip(axes[:3], ("estimate_mean", "gap", "relative_mi"), strict=True):
        if y != "estimate_mean" and known.empty:
            ax.text(0.5, 0.5, "no true MI: the data's source knows none", ha="center")
            ax.set_axis_off()
            continue
        sns.barplot(data=frame, x="data_label", y=y, hue=_HUE, errorbar="sd", ax=ax)
        ax.set_ylabel(_label(y))
        ax.set_xlabel(_label("data_label"))
        ax.tick_params(axis="x", rotation=30)
    if not known.empty:
        truth = known.groupby("data_label", sort=False)["true_mi"].first()
        ax = axes[0]
        ticks = {
            t.get_text(): x for t, x in zip(ax.get_xticklabels(), ax.get_xticks(), strict=True)
        }
        ax.scatter([ticks[d] for d in truth.index], truth, marker="_", s=600, color="k", lw=2,
                   zorder=3, label="true MI")  # fmt: skip
    curves_panel(axes[3], frame)
    return _finish(fig, axes, title)


def results_figure(frame: pd.DataFrame, *, title: str = "") -> Figure:
    """A figure for any sweep: the staircase if the runs have one; runs on sources with data of
    their own (no ``rho``: known-MI tasks, a user's data) as bars per data set; else the
    estimate (with the true MIs and log K), the gap and the relative MI against the first grid
    axis that varies (M, K, rho, MI, ...; a second one becomes the line style), plus the
    training curves."""
    if frame["mi_levels"].map(len).gt(0).all():
        return staircase_figure(frame, title=title)
    if "rho_final" in frame and frame["rho_final"].isna().all():
        return _own_data_figure(frame, title)
    varying = [a for a in _AXES if a in frame and frame[a].nunique(dropna=False) > 1]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.6))
    if varying:
        x, style = varying[0], (varying[1] if len(varying) > 1 else None)
        log_x = x == "k"
        metric_panel(axes[0], frame, x, "estimate_mean", style=style, log_x=log_x)
        _reference_lines(axes[0], frame, x)
        metric_panel(axes[1], frame, x, "gap", style=style, log_x=log_x)
        metric_panel(axes[2], frame, x, "relative_mi", style=style, log_x=log_x)
    else:
        for ax, y in zip(axes[:3], ("estimate_mean", "gap", "relative_mi"), strict=True):
            sns.barplot(data=frame, x=_HUE, y=y, errorbar="sd", ax=ax)
            ax.set_ylabel(_label(y))
            ax.tick_params(axis="x", rotation=30)
        axes[0].axhline(float(frame["true_mi"].iloc[0]), color="k", lw=1, label="true MI")
    curves_panel(axes[3], frame)
    return _finish(fig, axes, title)


def estimate_figure(
    curves: pd.DataFrame,
    *,
    value: float | None = None,
    true_mi: float | None = None,
    title: str = "",
) -> Figure:
    """The curves of ``mibounds.estimate`` (``Estimate.curves``: ``step``, ``seed``, ``train``,
    ``held_out``, ``test``): each column's mean over seeds against the step with a +-1 sd band,
    the reported ``value`` and the ``true_mi`` (nats) as lines where given.

    Example:
        >>> frame = pd.DataFrame({"step": [1, 2] * 2, "seed": [0, 0, 1, 1], "train": [0.1] * 4,
        ...                       "held_out": [0.2] * 4, "test": [0.3] * 4})
        >>> len(estimate_figure(frame, value=0.3).axes)
        1
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    names = {
        "train": "train rows",
        "held_out": "validation rows (selection)",
        "test": "test rows (the estimate)",
    }
    long = curves.rename(columns=names).melt(
        id_vars=["step", "seed"], value_vars=list(names.values()), var_name="rows"
    )
    sns.lineplot(data=long, x="step", y="value", hue="rows", errorbar="sd", ax=ax)
    if value is not None:
        ax.axhline(value, color="k", ls="--", lw=1, label=f"estimate {value:.3f}")
    if true_mi is not None:
        ax.axhline(true_mi, color="k", lw=1, label=f"true MI {true_mi:.3f}")
    ax.set_xlabel(_label("step"))
    ax.set_ylabel("estimate (nats)")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    return fig


def save(fig: Figure, path: str | Path, *, dpi: int = 130) -> Path:
    """Write ``fig`` (format from the suffix) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
