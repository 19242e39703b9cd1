"""Shidani et al. 2024 (Poly-View Contrastive Learning) at CPU scale, on scikit-learn's digits:
spending a training budget on more views per image M instead of more epochs
(docs/experiments.md#digits-polyview).

SimCLR (M = 2) trained for E, 2E and 4E epochs spends relative compute 1, 2, 4 on epochs;
Multi-Crop, Geometric, Arithmetic and Sufficient Statistics at M = 4, 8 for E epochs spend
M / 2 on views, with K fixed or K x M fixed. Relative compute = views processed / SimCLR's at E
epochs. At M = 2 the all-view Multi-Crop, Geometric and Arithmetic losses are SimCLR's loss, so
the figure uses SimCLR's runs there. Scores: kNN and linear-probe top-1 on the frozen backbone's
features; the runs with ``epochs = 0`` probe the untrained encoder, the floor.

The per-run frame (``digits_runs``), ``summarise``, ``difference`` and ``markdown`` are shared
with ``digits_baselines``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd

from mibounds.reproductions.report import Context, markdown_table, mean_sd, write_text

__all__ = [
    "LABELS",
    "against_epochs",
    "curves",
    "difference",
    "digits_runs",
    "floor_line",
    "markdown",
    "report",
    "seeds_per_setting",
    "setup_text",
    "summarise",
    "t_stats",
]

POLYVIEW = ("multicrop", "geometric", "arithmetic", "sufficient_statistics")
SAME_AS_SIMCLR_AT_M2 = ("multicrop", "geometric", "arithmetic")
LABELS = {
    "simclr": "SimCLR (more epochs)",
    "multicrop": "Multi-Crop",
    "geometric": "Geometric PVC",
    "arithmetic": "Arithmetic PVC",
    "sufficient_statistics": "Sufficient Statistics",
}
TABLE, FIGURE = "vision_digits.md", "vision_digits.png"
METRICS = {"knn": "kNN", "linear": "linear probe"}
DIFF_COLUMNS = {
    "knn_diff": "kNN diff (points)",
    "knn_z": "kNN diff / se",
    "linear_diff": "linear diff (points)",
    "linear_z": "linear diff / se",
}


COLUMNS = {
    "views": "M",
    "batch_size": "K",
    "relative_compute": "rel. compute",
    "knn": "kNN top-1 (%)",
    "linear": "linear top-1 (%)",
    "final_loss": "final loss",
    "seconds": "s / run",
}
"""The image tables' column headings, by record field (both digits reports)."""


def digits_runs(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """``(trained, floor, config)`` from a digits reproduction's records: the trained runs
    (``epochs > 0``) a row each with ``objective, views, batch_size, epochs, seed, regime,
    relative_compute, knn, linear, final_loss, steps, seconds`` (accuracies as fractions,
    seconds of training + probe); the untrained runs' ``seed, knn, linear``; and the first
    trained run's ``TrainConfig`` fields, with ``E`` (the fewest epochs trained) and ``K`` (the
    M = 2 runs' batch size) added.

    Relative compute = the record's (M / 2) x epochs / E; the regime: "both" at M = 2, "K
    fixed" at K images a step, "KxM fixed" at K x M = 2K views a step.
    """
    runs = frame.assign(
        knn=frame["knn_top1"],
        linear=frame["linear_top1"],
        seconds=frame["wall_time_s"] + frame["probe_seconds"],
    )
    floor = runs[runs["epochs"] == 0][["seed", "knn", "linear"]].reset_index(drop=True)
    trained = runs[runs["epochs"] > 0].reset_index(drop=True)
    e = int(trained["epochs"].min())
    k = int(trained.loc[trained["views"] == 2, "batch_size"].mode().iloc[0])

    def regime(views: int, batch: int) -> str:
        if views == 2:
            return "both"
        if batch == k:
            return "K fixed"
        return "KxM fixed" if batch * views == 2 * k else f"K = {batch}"

    trained = trained.assign(
        regime=[regime(m, b) for m, b in zip(trained["views"], trained["batch_size"], strict=True)],
        relative_compute=trained["relative_compute"] * trained["epochs"] / e,
    )
    config = {**trained["config"].iloc[0], "E": e, "K": k}
    return _in_grid_order(trained), floor, config


# the order the pages list objectives and regimes in (records come in the order runs finished)
OBJECTIVE_ORDER = (
    "simclr",
    "sogclr",
    "multicrop",
    "geometric",
    "arithmetic",
    "sufficient_statistics",
    "barlow_multiview",
)
REGIME_ORDER = ("both", "K fixed", "KxM fixed")


def _in_grid_order(trained: pd.DataFrame) -> pd.DataFrame:
    """The trained runs sorted by objective (``OBJECTIVE_ORDER``, then others by name), views,
    regime, epochs and seed: the tables' row order, whatever order the runs finished in."""

    def rank(column: pd.Series) -> pd.Series:
        order = {"objective": OBJECTIVE_ORDER, "regime": REGIME_ORDER}.get(column.name)
        if order is None:
            return column
        return column.map(lambda v: (order.index(v), "") if v in order else (len(order), v))

    keys = ["objective", "views", "regime", "epochs", "seed"]
    return trained.sort_values(keys, key=rank, kind="stable").reset_index(drop=True)


def seeds_per_setting(trained: pd.DataFrame) -> int:
    """The most seeds any one setting (``setting_key``) of the trained runs has."""
    return int(trained.groupby("setting_key").size().max())


def _percent(values: pd.Series) -> str:
    return mean_sd(100 * values, digits=1)


def summarise(df: pd.DataFrame, extra_keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per configuration of ``digits_runs``' trained runs (``extra_keys`` tell apart
    more settings): accuracies as "mean ± sd" over seeds in %, the mean final loss and seconds,
    and the number of seeds."""
    keys = ["objective", *extra_keys, "views", "batch_size", "regime", "epochs"]
    keys += ["relative_compute", "steps"]
    return (
        df.groupby(keys, sort=False)
        .agg(
            knn=("knn", _percent),
            linear=("linear", _percent),
            final_loss=("final_loss", "mean"),
            seconds=("seconds", "mean"),
            seeds=("seed", "count"),
        )
        .reset_index()
    )


def difference(own: pd.DataFrame, base: pd.DataFrame) -> dict[str, float]:
    """``own`` minus ``base`` (per-seed rows): for kNN and linear probe, the difference of mean
    accuracies in points and that over its standard error as two independent groups of seeds,
    ``d / sqrt(s_1^2 / n_1 + s_2^2 / n_2)`` (roughly a t statistic; NaN with one seed): keys
    ``knn_diff, knn_z, linear_diff, linear_z``.

    Example:
        >>> import pandas as pd
        >>> a = pd.DataFrame({"knn": [0.9, 0.92], "linear": [0.97, 0.97]})
        >>> b = pd.DataFrame({"knn": [0.8, 0.82], "linear": [0.97, 0.97]})
        >>> {k: round(v, 1) for k, v in difference(a, b).items()}
        {'knn_diff': 10.0, 'knn_z': 7.1, 'linear_diff': 0.0, 'linear_z': nan}
    """
    row = {}
    for metric in METRICS:
        diff = float(own[metric].mean() - base[metric].mean())
        se = math.sqrt(own[metric].var() / len(own) + base[metric].var() / len(base))
        row[f"{metric}_diff"] = 100 * diff
        row[f"{metric}_z"] = diff / se if se > 0 else math.nan
    return row


def markdown(df: pd.DataFrame) -> str:
    """``df`` as a pipe table, its first column first (``report.markdown_table``)."""
    return markdown_table(df.set_index(df.columns[0]))


def t_stats(seeds: int, comparisons: int) -> tuple[int, float, float]:
    """``(dof, t, chance)`` for differences of two groups of ``seeds`` seeds: the degrees of
    freedom 2 seeds - 2, the two-sided 5 % critical t, and how many of ``comparisons`` ratios
    would pass |2| by chance alone."""
    import scipy.stats

    dof = 2 * seeds - 2
    if dof < 1:
        return dof, math.nan, math.nan
    return dof, float(scipy.stats.t.ppf(0.975, dof)), comparisons * 2 * scipy.stats.t.sf(2.0, dof)


def curves(df: pd.DataFrame) -> pd.DataFrame:
    """Per-seed points of each curve in each regime (``panel``): the M = 2 runs shared as the
    module docstring says (SimCLR's E-epoch run stands for the three all-view losses at M = 2)."""
    rows = []
    simclr = df[df["objective"] == "simclr"]
    base = simclr[simclr["relative_compute"] == 1]
    for regime in ("K fixed", "KxM fixed"):
        rows += [{**r, "curve": "simclr", "panel": regime} for r in simclr.to_dict("records")]
        for objective in POLYVIEW:
            own = df[(df["objective"] == objective) & df["regime"].isin([regime, "both"])]
            if objective in SAME_AS_SIMCLR_AT_M2:
                own = pd.concat([base, own])
            rows += [{**r, "curve": objective, "panel": regime} for r in own.to_dict("records")]
    return pd.DataFrame(rows)


def floor_line(floor: pd.DataFrame) -> str:
    """The untrained encoder's accuracies, as the pages print them."""
    knn, linear = _percent(floor.knn), _percent(floor.linear)
    return f"Untrained encoder (floor): kNN {knn} %, linear {linear} %."


def compute_axis(ax, metric: str, floor: pd.DataFrame, values) -> None:
    """What every accuracy panel has: the floor, a log-2 x axis with ticks at ``values``."""
    ax.axhline(100 * floor[metric].mean(), color="grey", linestyle=":", label="untrained encoder")
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(values), [f"{v:g}" for v in values])
    ax.minorticks_off()
    ax.grid(alpha=0.3)


def errorbars(ax, points: pd.DataFrame, x: str, metric: str, label: str, **style) -> None:
    """Mean ± sd over seeds of ``metric`` (in %) against ``x``."""
    stats = points.groupby(x)[metric].agg(["mean", "std"]).reset_index()
    ax.errorbar(
        stats[x],
        100 * stats["mean"],
        yerr=100 * stats["std"],
        marker="o",
        capsize=3,
        label=label,
        **style,
    )


def _figure(df: pd.DataFrame, floor: pd.DataFrame, config: dict, seeds: int):
    import matplotlib.pyplot as plt

    points = curves(df)
    computes = sorted(df["relative_compute"].unique())
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True, sharey="row")
    for col, regime in enumerate(("K fixed", "KxM fixed")):
        for row, metric in enumerate(METRICS):
            ax = axes[row, col]
            panel = points[points["panel"] == regime]
            for curve, label in LABELS.items():
                style = {"color": "black", "linestyle": "--"} if curve == "simclr" else {}
                own = panel[panel["curve"] == curve]
                errorbars(ax, own, "relative_compute", metric, label, **style)
            compute_axis(ax, metric, floor, computes)
            k = config["K"]
            title = (
                f"K = {k} images a step" if regime == "K fixed" else f"K x M = {2 * k} views a step"
            )
            ax.set_title(title if row == 0 else "")
            ax.set_ylabel(f"{'kNN' if metric == 'knn' else 'linear probe'} top-1 (%)")
            if row == 1:
                ax.set_xlabel("relative compute (views processed / SimCLR's at E epochs)")
    axes[0, 0].legend(fontsize=8, loc="lower right")
    views = ", ".join(map(str, sorted(df["views"].unique())))
    fig.suptitle(
        f"Digits {config['image_size']}x{config['image_size']}, {config['arch']} ResNet: views "
        f"(M = {views}) against epochs (SimCLR), {seeds} seed(s) (mean ± sd)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def against_epochs(df: pd.DataFrame) -> pd.DataFrame:
    """Each poly-view configuration (M > 2) minus SimCLR trained for more epochs at the same
    relative compute (``difference``): a row each with ``compute, objective, M, regime`` and
    the difference columns, sorted by compute and regime; configurations without a SimCLR run
    at their compute are left out."""
    rows = []
    simclr = df[df["objective"] == "simclr"]
    groups = df[df["views"] > 2].groupby(["objective", "views", "regime"], sort=False)
    for (objective, m, regime), own in groups:
        compute = float(own["relative_compute"].iloc[0])
        base = simclr[simclr["relative_compute"] == compute]
        if len(base):
            row = {"compute": compute, "objective": objective, "M": m, "regime": regime}
            rows.append({**row, **difference(own, base)})
    columns = ["compute", "objective", "M", "regime", *DIFF_COLUMNS]
    return pd.DataFrame(rows, columns=columns).sort_values(["compute", "regime"], kind="stable")


def setup_text(config: dict, seeds: int) -> str:
    """The set-up shared by the digits pages, from the runs' ``TrainConfig`` fields."""
    data = (
        "1437 train" if config["subset"] is None else f"the first {config['subset']} of 1437 train"
    )
    size = config["image_size"]
    arch = "`ResNet(BasicBlock, [1, 1, 1, 1])`" if config["arch"] == "tiny" else config["arch"]
    flips = "no flips" if config["flip_p"] == 0 else f"flip p {config['flip_p']}"
    return (
        f"scikit-learn digits ({data} / 360 test, 8x8 upscaled to {size}x{size}), {arch} "
        f"encoder with the {'CIFAR ' if config['stem'] == 'auto' and size <= 64 else ''}stem, "
        f"projector widths {config['proj_hidden']}-{config['proj_dim']}, temperature "
        f"{config['temperature']}, {config['optimizer']} lr {config['lr']} (wd "
        f"{config['weight_decay']}, {config['warmup_epochs']}-epoch warm-up, cosine), crop scale "
        f"{tuple(config['crop_scale'])}, colour jitter {config['jitter']} (p 0.8), grayscale p "
        f"{config['grayscale_p']}, {flips}. Scores on frozen backbone features: weighted kNN "
        f"(k = {config['knn_k']}, cosine, T = {config['knn_temperature']}) and a linear probe "
        f"({config['probe_epochs']} epochs AdamW), top-1 on the test split, mean ± sd over "
        f"{seeds} seed(s)"
    )


def _findings(comparison: pd.DataFrame, df: pd.DataFrame, floor: pd.DataFrame, seeds: int) -> str:
    if comparison.empty:
        return "No poly-view configuration has a SimCLR run at its relative compute."
    dof, t_crit, chance = t_stats(seeds, len(comparison))
    text = f"Largest |kNN difference|: {comparison.knn_diff.abs().max():.1f} points. "
    if dof < 1:
        text += "With one seed per configuration there are no standard errors. "
    else:
        text += (
            f"Largest |difference / standard error|: {comparison.knn_z.abs().max():.1f} (kNN), "
            f"{comparison.linear_z.abs().max():.1f} (linear). "
        )
        for metric, name in METRICS.items():
            big = comparison[comparison[f"{metric}_z"].abs() >= 2]
            views = int((big[f"{metric}_z"] > 0).sum())
            text += f"{name}: {len(big)} of {len(comparison)} differences reach 2 standard errors"
            if len(big):
                at = ", ".join(f"{c:g}" for c in sorted(set(big["compute"])))
                epochs = len(big) - views
                text += (
                    f" ({views} for more views, {epochs} for more epochs, at relative compute {at})"
                )
            text += ". "
        text += (
            f"With {seeds} + {seeds} seeds the ratio is roughly a t statistic on {dof} degrees "
            f"of freedom: |t| > {t_crit:.1f} for 5 %, and {chance:.1f} of {len(comparison)} "
            "comparisons are expected to cross 2 by chance alone. "
        )
    means = df.groupby(["objective", "views", "batch_size", "epochs"])[list(METRICS)].mean()
    gains = {m: 100 * (means[m].max() - floor[m].mean()) for m in METRICS}
    text += (
        f"The linear probe of an untrained encoder already reaches {100 * floor.linear.mean():.1f} "
        f"%; the best configuration is {gains['linear']:.1f} points above it in linear accuracy "
        f"and {gains['knn']:.1f} in kNN"
    )
    text += (
        ", so the kNN score is the one that separates runs here. "
        if gains["knn"] > gains["linear"]
        else ". "
    )
    return text + (
        "The paper's finding (more views beat more epochs at equal compute) is about long "
        "ImageNet training; a few epochs on 1437 digits are far from that regime, so this page "
        "shows the experiment running end to end on real images, not that the finding holds or "
        "fails."
    )


def relative(path: Path, start: Path) -> str:
    """``path`` as a link from a page in ``start``."""
    return Path(os.path.relpath(path, start)).as_posix()


def _show_summary(summary: pd.DataFrame) -> pd.DataFrame:
    show = summary.copy()
    show["objective"] = show.objective.map(lambda o: LABELS[o].replace(" (more epochs)", ""))
    show["final_loss"] = show.final_loss.map(lambda v: f"{v:.3f}")
    show["seconds"] = show.seconds.map(lambda v: f"{v:.0f}")
    show["relative_compute"] = show.relative_compute.map(lambda v: f"{v:g}")
    return show.rename(columns=COLUMNS)


def report(frame: pd.DataFrame, ctx: Context) -> list[Path]:
    """Write ``vision_digits.png`` and ``vision_digits.md``; returns their paths."""
    from mibounds import plots

    df, floor, config = digits_runs(frame)
    seeds = seeds_per_setting(df)
    figure = plots.save(_figure(df, floor, config, seeds), ctx.figures / FIGURE)
    comparison = against_epochs(df)
    shown = comparison.round(dict.fromkeys(DIFF_COLUMNS, 1)).rename(columns=DIFF_COLUMNS)
    shown["objective"] = shown.objective.map(LABELS)
    shown = shown.rename(columns={"compute": "rel. compute"})
    k, e = config["K"], config["E"]
    lines = [
        ctx.header("Poly-view fixed-compute trade-off on digits (CPU scale)", frame),
        f"Training + probe summed over the {len(df)} trained runs: "
        f"{df.seconds.sum() / 60:.1f} min (the `s / run` column: their mean per configuration).",
        "",
        f"Set-up: {setup_text(config, seeds)}. E = {e} epoch(s) for every poly-view run. K "
        f"fixed: K = {k}; K x M fixed: K = {2 * k} / M. Relative compute = views processed / "
        "SimCLR's (M = 2) at E epochs. `regime` both: M = 2, where the two regimes coincide. "
        "Multi-Crop, Geometric and Arithmetic are the image trainer's losses with all-view "
        "candidates (`negatives = all_views`, the paper's Algorithm 1); at M = 2 they equal "
        "SimCLR's, so the figure uses the SimCLR run there. Sufficient Statistics re-normalises "
        "the rest's mean (`normalize = true`).",
        "",
        floor_line(floor),
        "",
        markdown(_show_summary(summarise(df))),
        "",
        f"![accuracy against relative compute]({relative(figure, ctx.tables)})",
        "",
        "SogCLR and multi-view Barlow Twins in the same set-up, beside SimCLR runs of their own "
        "command: [vision_digits_baselines.md](vision_digits_baselines.md).",
        "",
        "## More views against more epochs, at equal compute",
        "",
        "Each poly-view configuration (E epochs, M views) minus SimCLR trained for M/2 x E "
        "epochs (M = 2), the same number of views processed; accuracy points, and the "
        f"difference over its standard error ({seeds} + {seeds} seeds):",
        "",
        markdown(shown),
        "",
        _findings(comparison, df, floor, seeds),
        "",
        _CONTEXT,
    ]
    return [figure, write_text(ctx.tables / TABLE, "\n".join(lines))]


_CONTEXT = """## Published numbers, for context only (not comparable: other data, scale, models)

| source | setting | published | here |
|---|---|---|---|
| SimCLR (Chen et al. 2020) | ResNet-50, 1000 epochs, batch 4096, ImageNet | 69.3 % linear top-1 \
| digits, tiny ResNet, see SimCLR rows above |
| Poly-view (Shidani et al. 2024) | ResNet-50, ImageNet: 128 epochs at batch 256 (M = 8) beat \
SimCLR at 1024 epochs, batch 4096 | more views beat more epochs at equal compute | compare the \
poly-view curves with the SimCLR (more epochs) curve at equal relative compute in the figure |

No number here is compared to a published one: the difference would mean nothing across \
datasets this far apart.

## Full scale (GPUs, your data)

```bash
# CIFAR-10 (python batches in /data/cifar-10-batches-py), ResNet-18, 8 GPUs
torchrun --nproc_per_node=8 -m mibounds vision train --dataset cifar10 \\
    --data-root /data/cifar-10-batches-py --image-size 32 --arch resnet18 \\
    --objective arithmetic --param negatives=all_views -M 8 -K 256 --epochs 400 --optimizer sgd \\
    --lr 0.5 --weight-decay 5e-4 --temperature 0.2 --proj-hidden 2048 --proj-dim 128 \\
    --crop-scale 0.2,1.0 --sync-bn --out runs/cifar10/arithmetic-M8
# ImageNet as an ImageFolder tree (/data/imagenet/{train,val}/<class>/*.JPEG), ResNet-50
torchrun --nproc_per_node=8 -m mibounds vision train --dataset folder \\
    --data-root /data/imagenet --image-size 224 --arch resnet50 --jitter 1.0 \\
    --objective arithmetic --param negatives=all_views -M 8 -K 256 --epochs 128 --optimizer sgd \\
    --lr 0.3 --weight-decay 1e-6 --temperature 0.1 --proj-hidden 2048 --proj-dim 128 \\
    --crop-scale 0.08,1.0 --sync-bn --workers 8 --out runs/imagenet/arithmetic-M8
# the SimCLR baseline: --objective simclr -M 2; then score a run again with
mibounds vision probe runs/imagenet/arithmetic-M8
```
"""
