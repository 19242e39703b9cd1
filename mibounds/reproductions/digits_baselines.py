"""SogCLR and multi-view Barlow Twins on digits, beside SimCLR trained by the same command, in
the set-up of ``digits_polyview`` (docs/experiments.md#digits-baselines).

- SogCLR (Yuan et al. 2022, ``mibounds.sogclr``), M = 2, for E, 2E and 4E epochs, against
  SimCLR for the same epochs. SogCLR replaces each anchor's minibatch partition by a moving
  average ``u_i`` kept per image, which it can only reuse from an image's second visit on: in
  epoch 1 every visit is a first one, and SogCLR is the decoupled contrastive loss.
- Multi-view Barlow Twins (Ghosh, Agrawal et al. 2024, ``mibounds.barlow``) at M = 2, 4 for E
  epochs: a small projector with a strong orthogonality weight against a wide one with Barlow
  Twins' weight, and the small one at the weak weight; every projector layer has width D.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mibounds.reproductions.digits_polyview import (
    COLUMNS,
    DIFF_COLUMNS,
    METRICS,
    compute_axis,
    difference,
    digits_runs,
    errorbars,
    floor_line,
    markdown,
    relative,
    seeds_per_setting,
    setup_text,
    summarise,
    t_stats,
)
from mibounds.reproductions.report import Context, write_text

__all__ = ["barlow_against", "report", "significant", "simclr_reproduced", "sogclr_against_simclr"]

LABELS = {"simclr": "SimCLR", "sogclr": "SogCLR", "barlow_multiview": "Barlow Twins (multi-view)"}
TABLE, FIGURE = "vision_digits_baselines.md", "vision_digits_baselines.png"
POLYVIEW_TABLE = "vision_digits.md"


def with_projector(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with ``width`` (the projector's output width D) and ``beta`` (Barlow Twins' weight;
    NaN for the other objectives) from each run's config."""
    configs = df["config"]
    beta = configs.map(lambda c: c["objective_params"].get("beta", float("nan")))
    return df.assign(width=configs.map(lambda c: c["proj_dim"]), beta=beta.astype(float))


def barlow_configs(barlow: pd.DataFrame) -> tuple[tuple[int, float], ...]:
    """The Barlow Twins (D, beta) pairs: the strong-beta small projector, the weak-beta wide one,
    then the rest (the small one at the weak beta), each once, by (beta descending, D)."""
    pairs = barlow[["width", "beta"]].drop_duplicates()
    pairs = pairs.sort_values(["beta", "width"], ascending=[False, False])
    strong = pairs.iloc[:1]
    weak = pairs[pairs["beta"] < strong["beta"].iloc[0]].sort_values("width", ascending=False)
    ordered = pd.concat([strong, weak])
    return tuple((int(w), float(b)) for w, b in zip(ordered["width"], ordered["beta"], strict=True))


def sogclr_against_simclr(df: pd.DataFrame) -> pd.DataFrame:
    """SogCLR minus SimCLR (``difference``) at each number of epochs (both M = 2, K fixed)."""
    rows = []
    for epochs, own in df[df["objective"] == "sogclr"].groupby("epochs"):
        base = df[(df["objective"] == "simclr") & (df["epochs"] == epochs)]
        rows.append({"epochs": epochs, **difference(own, base)})
    return pd.DataFrame(rows, columns=["epochs", *DIFF_COLUMNS])


def _by_config(barlow: pd.DataFrame, configs: tuple[tuple[int, float], ...]) -> pd.DataFrame:
    """The Barlow Twins runs in ``barlow_configs`` order, then by M (stable: seeds keep theirs)."""
    index = [
        configs.index((int(w), float(b))) for w, b in zip(barlow.width, barlow.beta, strict=True)
    ]
    return barlow.assign(_config=index).sort_values(["_config", "views"], kind="stable")


def _range(values: pd.Series) -> str:
    low, high = int(values.min()), int(values.max())
    return f"{low}" if low == high else f"{low}-{high}"


def _label(width: int, beta: float) -> str:
    return f"D {width}, beta {beta:g}"


def barlow_against(df: pd.DataFrame) -> pd.DataFrame:
    """At each M: the small projector with the strong beta minus every other Barlow Twins
    configuration, and every wide-or-strong configuration minus SimCLR at the same relative
    compute (SimCLR trained M / 2 times as many epochs); pairs without runs are left out."""
    barlow = df[df["objective"] == "barlow_multiview"]
    configs = barlow_configs(barlow)
    (small, strong), (wide, weak) = configs[0], configs[1]

    def runs(width: int, beta: float, m: int) -> pd.DataFrame:
        return barlow[
            (barlow["width"] == width) & (barlow["beta"] == beta) & (barlow["views"] == m)
        ]

    rows = []
    for m in sorted(set(barlow["views"])):
        compute = float(barlow.loc[barlow["views"] == m, "relative_compute"].iloc[0])
        simclr = df[(df["objective"] == "simclr") & (df["relative_compute"] == compute)]
        pairs = [(small, strong, runs(w, b, m), _label(w, b)) for w, b in configs[1:]]
        pairs += [(small, strong, simclr, "SimCLR"), (wide, weak, simclr, "SimCLR")]
        for width, beta, base, name in pairs:
            own = runs(width, beta, m)
            if len(own) and len(base):
                row = {"M": m, "compute": compute, "comparison": f"{_label(width, beta)} - {name}"}
                rows.append({**row, **difference(own, base)})
    return pd.DataFrame(rows, columns=["M", "compute", "comparison", *DIFF_COLUMNS])


def significant(comparison: pd.DataFrame, label: str) -> str:
    """A sentence listing the rows of ``comparison`` (``label`` names a row, formatted with its
    columns) whose kNN or linear difference reaches 2 standard errors."""
    found = []
    for _, row in comparison.iterrows():
        for metric, name in (("knn", "kNN"), ("linear", "linear")):
            if abs(row[f"{metric}_z"]) >= 2:
                found.append(
                    f"{label.format(**row)}, {name} {row[f'{metric}_diff']:+.1f} points "
                    f"({row[f'{metric}_z']:+.1f} se)"
                )
    if comparison[["knn_z", "linear_z"]].isna().all().all():
        return "With one seed per configuration there are no standard errors."
    if not found:
        return f"None of the {2 * len(comparison)} differences reaches 2 standard errors."
    return f"{len(found)} of {2 * len(comparison)} differences reach 2 standard errors: " + (
        "; ".join(found) + "."
    )


def _published(text: str) -> dict[str, tuple[str, str]]:
    """SimCLR's rows of a digits page, by epochs: (kNN, linear) cells as shown."""
    rows, header = {}, None
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "kNN top-1 (%)" in cells and "objective" in cells:
            header = cells
        elif header and len(cells) == len(header) and cells[0] == "SimCLR":
            row = dict(zip(header, cells, strict=True))
            rows[row["epochs"]] = (row["kNN top-1 (%)"], row["linear top-1 (%)"])
        elif not line.startswith("|"):
            header = None
    return rows


def simclr_reproduced(contrastive: pd.DataFrame, floor: pd.DataFrame, page: Path | None) -> str:
    """How this page's SimCLR rows (``contrastive``, as shown) and untrained floor compare with
    those of the poly-view page ``page`` (``vision_digits.md``; None: not compared), to the digit
    shown: a sentence."""
    if page is None:
        return "A --quick run: not compared with vision_digits.md."
    text = page.read_text() if page.is_file() else ""
    published = _published(text)
    if not published:
        return f"{page.name} has no SimCLR rows to compare with."
    ours = contrastive[contrastive["objective"] == "SimCLR"]
    here = {
        str(r["epochs"]): (r["kNN top-1 (%)"], r["linear top-1 (%)"]) for _, r in ours.iterrows()
    }
    floor_same = floor_line(floor) in text
    if floor_same and all(published.get(e) == here[e] for e in here):
        return (
            "SimCLR's rows and the untrained floor reproduce those of vision_digits.md to the "
            "digit shown (the same configurations, code and seeds)."
        )
    pairs = "; ".join(
        f"{e} epoch(s): kNN {here[e][0]} here, {published[e][0]} there, linear {here[e][1]} "
        f"here, {published[e][1]} there"
        for e in here
        if e in published and published[e] != here[e]
    )
    return (
        "SimCLR's rows here are not all those of vision_digits.md"
        + (f" ({pairs})" if pairs else "")
        + f", and the untrained floor is {'the same' if floor_same else 'not the same'}: "
        "training repeats bit for bit only with the same code, torch version, CPU kernels and "
        "thread count (compare the two pages' run-time lines). This is why SogCLR and Barlow "
        "Twins are compared with this page's SimCLR runs only."
    )


def _figure(df: pd.DataFrame, floor: pd.DataFrame, config: dict, seeds: int):
    """Left: accuracy against epochs, SogCLR and SimCLR. Right: against relative compute, the
    Barlow Twins configurations and SimCLR (more epochs). Mean ± sd over seeds."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharey="row")
    barlow = df[df["objective"] == "barlow_multiview"]
    simclr = df[df["objective"] == "simclr"]
    dashed = {"color": "black", "linestyle": "--"}
    curves = [(0, "SimCLR", simclr, dashed), (0, "SogCLR", df[df["objective"] == "sogclr"], {})]
    curves.append((1, "SimCLR", simclr, dashed))
    for width, beta in barlow_configs(barlow):
        own = barlow[(barlow["width"] == width) & (barlow["beta"] == beta)]
        curves.append((1, f"Barlow, D = {width}, beta = {beta:g}", own, {}))
    for row, metric in enumerate(METRICS):
        for col, name, points, style in curves:
            x = "epochs" if col == 0 else "relative_compute"
            errorbars(axes[row, col], points, x, metric, name, **style)
        compute_axis(
            axes[row, 0], metric, floor, sorted(df.loc[df["views"] == 2, "epochs"].unique())
        )
        compute_axis(axes[row, 1], metric, floor, sorted(df["relative_compute"].unique()))
        axes[row, 0].set_ylabel(f"{'kNN' if metric == 'knn' else 'linear probe'} top-1 (%)")
    axes[1, 0].set_xlabel("epochs (M = 2)")
    axes[1, 1].set_xlabel("relative compute (views processed / SimCLR's at E epochs)")
    axes[0, 0].set_title("SogCLR against SimCLR, same epochs")
    views = ", ".join(map(str, sorted(barlow["views"].unique())))
    axes[0, 1].set_title(f"multi-view Barlow Twins (M = {views}) against SimCLR")
    for col in (0, 1):
        axes[0, col].legend(fontsize=7, loc="lower right")
    size = config["image_size"]
    fig.suptitle(
        f"Digits {size}x{size}, {config['arch']} ResNet, K = {config['K']}: {seeds} seed(s) "
        "(mean ± sd)",
        fontsize=10,
    )
    fig.tight_layout()
    return fig


def _shown(summary: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """The summary's columns as the page shows them (accuracies are already "mean ± sd")."""
    show = summary.copy()
    show["objective"] = show.objective.map(LABELS)
    show["final_loss"] = show.final_loss.map(lambda v: f"{v:.3f}")
    show["seconds"] = show.seconds.map(lambda v: f"{v:.0f}")
    show["relative_compute"] = show.relative_compute.map(lambda v: f"{v:g}")
    for key in ("width", "beta"):
        if key in show:
            show[key] = show[key].map(lambda v: f"{v:g}")
    names = {**columns, **COLUMNS}
    return show[list(names)].rename(columns=names)


def _differences(table: pd.DataFrame) -> pd.DataFrame:
    out = table.round(dict.fromkeys(DIFF_COLUMNS, 1)).rename(columns=DIFF_COLUMNS)
    return out.rename(columns={"compute": "rel. compute"})


def report(frame: pd.DataFrame, ctx: Context) -> list[Path]:
    """Write ``vision_digits_baselines.png`` and ``vision_digits_baselines.md``; returns their
    paths."""
    from mibounds import plots

    df, floor, config = digits_runs(frame)
    df = with_projector(df)
    seeds = seeds_per_setting(df)
    figure = plots.save(_figure(df, floor, config, seeds), ctx.figures / FIGURE)
    is_barlow = df["objective"] == "barlow_multiview"
    contrastive = _shown(summarise(df[~is_barlow]), {"objective": "objective", "epochs": "epochs"})
    configs = barlow_configs(df[is_barlow])
    barlow_summary = summarise(_by_config(df[is_barlow], configs), extra_keys=("width", "beta"))
    barlow = _shown(barlow_summary, {"width": "D (projector width)", "beta": "beta"})
    (small_d, strong), (wide_d, weak) = configs[:2]
    sogclr = sogclr_against_simclr(df)
    comparison = barlow_against(df)
    dof, t_crit, _ = t_stats(seeds, 1)
    k, e = config["K"], config["E"]
    gamma = df.loc[df["objective"] == "sogclr", "config"].iloc[0]["objective_params"]["gamma"]
    barlow_epochs = sorted(df.loc[is_barlow, "epochs"].unique())
    lines = [
        ctx.header("SogCLR and multi-view Barlow Twins on digits (CPU scale)", frame),
        f"Training + probe summed over the {len(df)} trained runs: "
        f"{df.seconds.sum() / 60:.1f} min.",
        "",
        f"Set-up: that of [{POLYVIEW_TABLE}]({POLYVIEW_TABLE}): {setup_text(config, seeds)}; "
        f"K = {k} images a step, E = {e} epoch(s). **Every row here was trained by this page's "
        "command**, SimCLR's too (the same configurations and seeds as SimCLR's rows on "
        f"{POLYVIEW_TABLE}), so SogCLR and Barlow Twins are compared with SimCLR runs of the "
        "same command on the same machine.",
        "",
        floor_line(floor),
        "",
        simclr_reproduced(contrastive, floor, None if ctx.quick else ctx.tables / POLYVIEW_TABLE),
        "",
        "## SogCLR rows of the fixed-compute table (M = 2, K fixed)",
        "",
        f"SogCLR (Yuan et al. 2022) with gamma = {gamma:g}, the trainer's `--objective sogclr`: "
        "each anchor's partition over its in-batch negatives is replaced by a moving average u_i "
        "kept per training image; the negatives exclude the positive (decoupled), so its loss "
        "is not on NT-Xent's scale (it can be negative). Every image is visited once an epoch "
        "and a first visit uses the batch partition, so at 1 epoch SogCLR is the decoupled "
        "contrastive loss; u_i enters from epoch 2. Relative compute = epochs / E, as for "
        "SimCLR's rows.",
        "",
        markdown(contrastive),
        "",
        "SogCLR minus SimCLR at the same epochs (points; difference / standard error, "
        f"{seeds} + {seeds} seeds"
        + (f", roughly a t statistic on {dof} degrees of freedom):" if dof >= 1 else "):"),
        "",
        markdown(_differences(sogclr)),
        "",
        significant(sogclr, "{epochs:.0f} epoch(s)")
        + (f" (|t| > {t_crit:.1f} for 5 % on {dof} degrees of freedom.)" if dof >= 1 else "")
        + " SogCLR's claim is that small batches stop hurting once u_i averages a partition over "
        f"many epochs; at {_range(sogclr['epochs'])} epoch(s) with K = {k} "
        "that regime is not reached, so this table shows the objective training end to end, "
        "not that claim.",
        "",
        "## Multi-view Barlow Twins: a small projector with a strong orthogonality weight",
        "",
        "Ghosh, Agrawal et al. 2024 argue that a low-dimensional projector with a stronger "
        "orthogonality weight beta matches a wide projector with a weak one, and that more "
        f"views help. Projector 512 -> D -> D; D = {wide_d} with Barlow Twins' lambda = "
        f"{weak:g} against D = {small_d} with beta = {strong:g} ({strong / weak:.0f}x larger: "
        f"beta (D - 1), a row's off-diagonal weight against its diagonal one, is "
        f"{strong * (small_d - 1):.1f} against {weak * (wide_d - 1):.1f})"
        + "".join(f", and D = {w} at beta = {b:g}" for w, b in configs[2:])
        + f"; M = {', '.join(map(str, sorted(df.loc[is_barlow, 'views'].unique())))} "
        f"views at K = {k} for {', '.join(map(str, barlow_epochs))} epoch(s) (K fixed: M views "
        f"are relative compute M / 2). The temperature is unused. K = {k} images estimate the "
        f"D x D cross-correlation: {'far fewer' if k < wide_d else 'no fewer'} than D = "
        f"{wide_d}, so the wide projector's matrix has rank <= {min(k, wide_d)} every step. The "
        "optimiser is the contrastive runs' (AdamW), not Barlow Twins' LARS.",
        "",
        markdown(barlow),
        "",
        "Differences at each M (points; difference / standard error); SimCLR at the same "
        "relative compute (trained M / 2 times as many epochs):",
        "",
        markdown(_differences(comparison)),
        "",
        significant(comparison, "M = {M:.0f}, {comparison}"),
        "",
        f"![accuracy of the baselines]({relative(figure, ctx.tables)})",
        "",
        _FULL_SCALE,
    ]
    return [figure, write_text(ctx.tables / TABLE, "\n".join(lines))]


_FULL_SCALE = """## Full scale (GPUs, your data)

```bash
# SogCLR, CIFAR-10 python batches in /data/cifar-10-batches-py, ResNet-18, 8 GPUs: u_i is
# kept for all 50 000 images in every process and saved in the checkpoint
torchrun --nproc_per_node=8 -m mibounds vision train --dataset cifar10 \\
    --data-root /data/cifar-10-batches-py --image-size 32 --arch resnet18 \\
    --objective sogclr --param gamma=0.9 -M 2 -K 256 --epochs 400 --optimizer sgd --lr 0.5 \\
    --weight-decay 5e-4 --temperature 0.2 --proj-hidden 2048 --proj-dim 128 \\
    --crop-scale 0.2,1.0 --sync-bn --out runs/cifar10/sogclr
# multi-view Barlow Twins, ImageNet as an ImageFolder tree, ResNet-50: small projector,
# strong beta, 4 views (wide baseline: --proj-hidden 8192 --proj-dim 8192 --param beta=0.0051)
torchrun --nproc_per_node=8 -m mibounds vision train --dataset folder \\
    --data-root /data/imagenet --image-size 224 --arch resnet50 --jitter 1.0 \\
    --objective barlow_multiview --param beta=0.08 -M 4 -K 256 --epochs 100 \\
    --optimizer sgd --lr 0.3 --weight-decay 1e-6 --proj-hidden 512 --proj-dim 512 \\
    --crop-scale 0.08,1.0 --sync-bn --workers 8 --out runs/imagenet/barlow-D512-M4
```
"""
