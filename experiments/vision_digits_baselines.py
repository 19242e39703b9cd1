"""SogCLR and multi-view Barlow Twins on digits, beside SimCLR run in the same invocation.

The set-up of ``vision_digits.py`` (1437 training digits at 16x16, tiny ResNet, AdamW, K = 32
images a step, 3 seeds; its ``base_config``), with two more objectives:

- **SogCLR** (Yuan et al. 2022; ``mibounds.sogclr``), M = 2, for E, 2E and 4E epochs, against
  SimCLR for the same epochs: the rows SogCLR adds to the fixed-compute table. SogCLR replaces
  each anchor's minibatch partition by a moving average ``u_i`` kept per image (gamma = 0.9),
  which it can only reuse from an image's second visit on: in epoch 1 every visit is a first
  one (gamma = 1), and SogCLR is the decoupled contrastive loss with all-view negatives.
- **Multi-view Barlow Twins** (Ghosh, Agrawal et al. 2024; ``mibounds.barlow``) at M in {2, 4}
  for E epochs, comparing a small projector with a strong orthogonality weight against a wide
  one with Barlow Twins' weight (``BARLOW``); every layer of the projector has the given width
  (512 -> D -> D), as in Barlow Twins' equal-width projector.

SimCLR's runs are those of ``vision_digits.py`` (the same directories under ``--out``): a run
either script finished is reused, not trained again.

    nice python experiments/vision_digits_baselines.py            # about 30 min on 2 shared cores
    nice python experiments/vision_digits_baselines.py --quick    # a 2-minute smoke version

Writes ``paper_tables/vision_digits_baselines.md`` and ``figures/vision_digits_baselines.png``
(``--quick``: under ``--out`` only).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import scipy.stats
import vision_digits as digits

#: (projector width D, beta, views M) of the Barlow Twins runs: the wide projector has Barlow
#: Twins' lambda; the small one a beta 16x larger, which keeps ``beta (D - 1)``, the weight of a
#: row of off-diagonal terms against its diagonal one, about where the wide one has it; the small
#: projector at the wide one's beta separates the two changes (at M = 2 only, to save compute)
BARLOW = ((64, 0.08, (2, 4)), (1024, 0.0051, (2, 4)), (64, 0.0051, (2,)))
LABELS = {"simclr": "SimCLR", "sogclr": "SogCLR", "barlow-multiview": "Barlow Twins (multi-view)"}
PAGE, FIGURE = "vision_digits_baselines.md", "vision_digits_baselines.png"


def grid(args) -> list[dict]:
    """One dict per run (see ``vision_digits.run_all``)."""
    e, k = args.epochs, args.k
    runs = []
    for seed in range(args.seeds):
        for objective in ("simclr", "sogclr"):
            for factor in (1, 2, 4):
                epochs = e * factor
                run = dict(objective=objective, views=2, batch_size=k, regime="both", seed=seed)
                runs.append({**run, "epochs": epochs})
        for width, beta, views in BARLOW:
            for m in views:
                runs.append(
                    dict(
                        objective="barlow-multiview",
                        width=width,
                        beta=beta,
                        views=m,
                        batch_size=k,
                        regime="K fixed",
                        epochs=e,
                        seed=seed,
                        config={"proj_hidden": width, "proj_dim": width, "params": {"beta": beta}},
                        tag=f"_D{width}_beta{beta:g}",
                    )
                )
    return runs


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
    names = {
        **columns,
        "views": "M",
        "batch_size": "K",
        "relative_compute": "rel. compute",
        "knn": "kNN top-1 (%)",
        "linear": "linear top-1 (%)",
        "final_loss": "final loss",
        "seconds": "s / run",
    }
    return show[list(names)].rename(columns=names)


def _differences(table: pd.DataFrame) -> pd.DataFrame:
    """A table of ``vision_digits.difference`` columns as the page shows them."""
    out = table.round({"knn_diff": 1, "knn_z": 1, "linear_diff": 1, "linear_z": 1})
    return out.rename(
        columns={
            "knn_diff": "kNN diff (points)",
            "knn_z": "kNN diff / se",
            "linear_diff": "linear diff (points)",
            "linear_z": "linear diff / se",
        }
    )


def sogclr_against_simclr(df: pd.DataFrame) -> pd.DataFrame:
    """SogCLR minus SimCLR at each number of epochs (both M = 2, K fixed)."""
    rows = []
    for epochs, own in df[df.objective == "sogclr"].groupby("epochs"):
        base = df[(df.objective == "simclr") & (df.epochs == epochs)]
        rows.append({"epochs": epochs, **digits.difference(own, base)})
    return pd.DataFrame(rows)


def _label(width: int, beta: float) -> str:
    return f"D {width}, beta {beta:g}"


def barlow_against(df: pd.DataFrame) -> pd.DataFrame:
    """At each M: the small projector with the strong beta minus the wide one and minus the
    small one with the weak beta, and the first two minus SimCLR at the same relative compute
    (SimCLR trained M / 2 times as many epochs). Pairs without runs (M = 4 of the control) are
    left out."""
    barlow = df[df.objective == "barlow-multiview"]
    (small, strong, _), (wide, weak, _), (control, control_beta, _) = BARLOW

    def runs(width: int, beta: float, m: int) -> pd.DataFrame:
        return barlow[(barlow.width == width) & (barlow.beta == beta) & (barlow.views == m)]

    rows = []
    for m in sorted(set(barlow.views)):
        at_m = barlow[barlow.views == m]
        compute = float(at_m.relative_compute.iloc[0])
        simclr = df[(df.objective == "simclr") & (df.relative_compute == compute)]
        pairs = (
            (small, strong, runs(wide, weak, m), _label(wide, weak)),
            (small, strong, runs(control, control_beta, m), _label(control, control_beta)),
            (small, strong, simclr, "SimCLR"),
            (wide, weak, simclr, "SimCLR"),
        )
        for width, beta, base, name in pairs:
            own = runs(width, beta, m)
            if len(own) and len(base):
                row = {
                    "M": m,
                    "rel. compute": compute,
                    "comparison": f"{_label(width, beta)} - {name}",
                }
                rows.append({**row, **digits.difference(own, base)})
    return pd.DataFrame(rows)


def significant(comparison: pd.DataFrame, label: str) -> str:
    """A sentence listing the rows of ``comparison`` (``label`` names a row) whose kNN or
    linear difference reaches 2 standard errors."""
    found = []
    for _, row in comparison.iterrows():
        for metric, name in (("knn", "kNN"), ("linear", "linear")):
            if abs(row[f"{metric}_z"]) >= 2:
                found.append(
                    f"{label.format(**row)}, {name} {row[f'{metric}_diff']:+.1f} points "
                    f"({row[f'{metric}_z']:+.1f} se)"
                )
    if not found:
        return f"None of the {2 * len(comparison)} differences reaches 2 standard errors."
    return (
        f"{len(found)} of {2 * len(comparison)} differences reach 2 standard errors: "
        + "; ".join(found)
        + "."
    )


def simclr_reproduced(contrastive: pd.DataFrame, floor: pd.DataFrame, quick: bool) -> str:
    """How this page's SimCLR rows and untrained floor (kNN and linear, mean ± sd as shown)
    compare with those ``vision_digits.md`` reports for the same configurations and seeds: a
    sentence for the page."""
    if quick:
        return "A --quick run (256 digits, 1 seed): not compared with vision_digits.md."
    path = digits.ROOT / "paper_tables" / "vision_digits.md"
    text = path.read_text() if path.is_file() else ""
    published = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) > 8 and cells[0] == "SimCLR":  # objective M K regime epochs ... kNN linear
            published[cells[4]] = (cells[7], cells[8])
    ours = contrastive[contrastive.objective == "SimCLR"]
    here = {
        str(row["epochs"]): (row["kNN top-1 (%)"], row["linear top-1 (%)"])
        for _, row in ours.iterrows()
    }
    if not published:
        return "vision_digits.md has no SimCLR rows to compare with."
    floor_text = (
        f"Untrained encoder (floor): kNN {digits._mean_sd(floor.knn)} %, linear "
        f"{digits._mean_sd(floor.linear)} %."
    )
    floor_same = "the same" if floor_text in text else "not the same"
    if all(published.get(e) == here[e] for e in here):
        return (
            "SimCLR's rows and the untrained floor reproduce those of vision_digits.md to the "
            "digit shown."
        )
    pairs = "; ".join(
        f"{e} epoch(s): kNN {here[e][0]} here, {published[e][0]} there, linear {here[e][1]} "
        f"here, {published[e][1]} there"
        for e in here
        if e in published
    )
    return (
        "SimCLR's rows here are not those of vision_digits.md, although configuration, code and "
        f"seeds are the same ({pairs}), while the untrained floor is {floor_same}: training is "
        "deterministic on one machine and thread count (the trainer's resume test checks it bit "
        "for bit) but not across CPUs' floating-point kernels, and vision_digits.md's runs were "
        "not made in this invocation. This is why SogCLR and Barlow Twins are compared with "
        "this page's SimCLR runs only."
    )


def figure(df: pd.DataFrame, floor: pd.DataFrame, args, path: Path) -> None:
    """Left: kNN / linear accuracy against epochs, SogCLR and SimCLR. Right: against relative
    compute, the Barlow Twins configurations and SimCLR (more epochs). Mean ± sd over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharey="row")
    barlow = df[df.objective == "barlow-multiview"]
    curves = [
        (0, "simclr", df[df.objective == "simclr"], {"color": "black", "linestyle": "--"}),
        (0, "sogclr", df[df.objective == "sogclr"], {}),
        (1, "simclr", df[df.objective == "simclr"], {"color": "black", "linestyle": "--"}),
    ]
    for width, beta, _ in BARLOW:
        own = barlow[(barlow.width == width) & (barlow.beta == beta)]
        curves.append((1, f"Barlow, D = {width}, beta = {beta:g}", own, {}))
    for row, metric in enumerate(("knn", "linear")):
        for col, name, points, style in curves:
            x = "epochs" if col == 0 else "relative_compute"
            stats = points.groupby(x)[metric].agg(["mean", "std"]).reset_index()
            axes[row, col].errorbar(
                stats[x],
                100 * stats["mean"],
                yerr=100 * stats["std"],
                marker="o",
                capsize=3,
                label=LABELS.get(name, name),
                **style,
            )
        for col in (0, 1):
            ax = axes[row, col]
            ax.axhline(100 * floor[metric].mean(), color="grey", linestyle=":", label="untrained")
            ax.set_xscale("log", base=2)
            ax.set_xticks([1, 2, 4], ["1", "2", "4"])
            ax.grid(alpha=0.3)
        axes[row, 0].set_ylabel(f"{'kNN' if metric == 'knn' else 'linear probe'} top-1 (%)")
    axes[1, 0].set_xlabel("epochs (M = 2)")
    axes[1, 1].set_xlabel("relative compute (views processed / SimCLR's at E epochs)")
    axes[0, 0].set_title("SogCLR against SimCLR, same epochs")
    axes[0, 1].set_title("multi-view Barlow Twins (M = 2, 4) against SimCLR")
    for col in (0, 1):
        axes[0, col].legend(fontsize=7, loc="lower right")
    fig.suptitle(
        f"Digits 16x16, tiny ResNet, K = {args.k}: {args.seeds} seed(s) (mean ± sd)", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def page(df: pd.DataFrame, floor: pd.DataFrame, args, elapsed: float, command: str) -> str:
    summary = digits.summarise(df[df.objective != "barlow-multiview"])
    contrastive = _shown(summary, {"objective": "objective", "epochs": "epochs"})
    barlow_summary = digits.summarise(
        df[df.objective == "barlow-multiview"], extra_keys=("width", "beta")
    )
    barlow = _shown(barlow_summary, {"width": "D (projector width)", "beta": "beta"})
    (small_d, small_beta, _), (wide_d, wide_beta, _) = BARLOW[:2]
    sogclr = sogclr_against_simclr(df)
    comparison = barlow_against(df)
    dof = 2 * args.seeds - 2
    config = digits.base_config(args)
    lines = [
        "# SogCLR and multi-view Barlow Twins on digits (CPU scale)",
        "",
        f"Command: `{command}`  ",
        f"Run time: {elapsed / 60:.1f} min wall-clock (summed over the invocations that trained, "
        "see `timing_baselines.json` in the run directory); "
        f"{df.seconds.sum() / 60:.1f} min summed over the {len(df)} runs' own training + probe "
        "times; on 2 CPU cores shared with other jobs, with one torch thread.",
        "",
        "Set-up: that of [vision_digits.md](vision_digits.md) (scikit-learn digits, 1437 train / "
        "360 test at 16x16, tiny ResNet `ResNet(BasicBlock, [1, 1, 1, 1])` with the CIFAR stem, "
        f"temperature {config['temperature']}, AdamW lr {config['lr']}, wd "
        f"{config['weight_decay']}, {config['warmup_epochs']}-epoch warm-up then cosine, crop "
        f"scale {config['crop_scale']}, no flips, K = {args.k} images a step, E = {args.epochs} "
        "epoch(s)). Scores on frozen backbone features: weighted kNN (k = 200, cosine, T = 0.1) "
        "and a linear probe (100 epochs), top-1 on the test split, mean ± sd over "
        f"{args.seeds} seeds. **Every row here was trained by this page's command**, SimCLR's "
        "too (the same configuration, code and seeds as SimCLR's rows in vision_digits.md; the "
        "run directory of that page was not kept), so SogCLR and Barlow Twins are compared "
        "with SimCLR runs from the same invocation on the same machine.",
        "",
        f"Untrained encoder (floor): kNN {digits._mean_sd(floor.knn)} %, linear "
        f"{digits._mean_sd(floor.linear)} %. As on vision_digits.md, the linear probe of an "
        "untrained encoder is already near its ceiling, so kNN is the score that separates runs.",
        "",
        simclr_reproduced(contrastive, floor, args.quick),
        "",
        "## SogCLR rows of the fixed-compute table (M = 2, K fixed)",
        "",
        "SogCLR (Yuan et al. 2022) with gamma = 0.9, the trainer's `--objective sogclr`: each "
        "anchor's partition over its in-batch negatives is replaced by a moving average u_i "
        "kept per training image; the negatives exclude the positive (decoupled), so its loss "
        "is not on NT-Xent's scale (it can be negative). Every image is visited once an epoch "
        "and a first visit uses the batch partition (gamma = 1), so at 1 epoch SogCLR is the "
        "decoupled contrastive loss; u_i enters from epoch 2. Relative compute = epochs / E, as "
        "for SimCLR's rows.",
        "",
        digits.markdown(contrastive),
        "",
        "SogCLR minus SimCLR at the same epochs (points; difference / standard error, "
        f"{args.seeds} + {args.seeds} seeds, roughly a t statistic on {2 * args.seeds - 2} "
        "degrees of freedom):",
        "",
        digits.markdown(_differences(sogclr)),
        "",
        significant(sogclr, "{epochs:.0f} epoch(s)")
        + f" (|t| > {scipy.stats.t.ppf(0.975, dof):.1f} for 5 % on {dof} degrees of freedom.) "
        "SogCLR's claim is that small batches stop hurting once u_i averages a partition over "
        f"many epochs; at 1-4 epochs with K = {args.k} that regime is not reached, so this "
        "table shows the objective training end to end, not that claim.",
        "",
        "## Multi-view Barlow Twins: a small projector with a strong orthogonality weight",
        "",
        "Ghosh, Agrawal et al. 2024 argue that a low-dimensional projector with a stronger "
        "orthogonality weight beta matches a wide projector with a weak one, and that more "
        f"views help. Projector 512 -> D -> D; D = {wide_d} with Barlow Twins' lambda = "
        f"{wide_beta:g} against D = {small_d} with beta = {small_beta:g} (16x larger: "
        "beta (D - 1), a row's off-diagonal weight against its diagonal one, stays about "
        f"equal), and D = {small_d} at beta = {wide_beta:g} to separate the width from the "
        f"weight; M = 2 and 4 views at K = {args.k} (K fixed: M = 4 is relative compute 2). "
        f"The temperature is unused. K = {args.k} images estimate the D x D "
        f"cross-correlation: far fewer than D = {wide_d}, so the wide projector's matrix has "
        f"rank <= {args.k} every step. The optimiser is the contrastive runs' (AdamW), not "
        "Barlow Twins' LARS.",
        "",
        digits.markdown(barlow),
        "",
        "Differences at each M (points; difference / standard error); SimCLR at the same "
        "relative compute (more epochs: 1 epoch for M = 2, 2 for M = 4):",
        "",
        digits.markdown(_differences(comparison)),
        "",
        significant(comparison, "M = {M:.0f}, {comparison}"),
        "",
        f"![accuracy of the baselines](../figures/{FIGURE})",
        "",
        "## Full scale (GPUs, your data)",
        "",
        "```bash",
        "# SogCLR, CIFAR-10 python batches in /data/cifar-10-batches-py, ResNet-18, 8 GPUs: u_i is",
        "# kept for all 50 000 images in every process and saved in the checkpoint",
        "torchrun --nproc_per_node=8 -m mibounds vision train --dataset cifar10 \\",
        "    --data-root /data/cifar-10-batches-py --image-size 32 --arch resnet18 \\",
        "    --objective sogclr --gamma 0.9 -M 2 -K 256 --epochs 400 --optimizer sgd --lr 0.5 \\",
        "    --weight-decay 5e-4 --temperature 0.2 --proj-hidden 2048 --proj-dim 128 \\",
        "    --crop-scale 0.2,1.0 --sync-bn --out runs/cifar10/sogclr",
        "# multi-view Barlow Twins, ImageNet as an ImageFolder tree, ResNet-50: small projector,",
        "# strong beta, 4 views (wide baseline: --proj-hidden 8192 --proj-dim 8192 --beta 0.0051)",
        "torchrun --nproc_per_node=8 -m mibounds vision train --dataset folder \\",
        "    --data-root /data/imagenet --image-size 224 --arch resnet50 --jitter 1.0 \\",
        "    --objective barlow-multiview --beta 0.08 -M 4 -K 256 --epochs 100 \\",
        "    --optimizer sgd --lr 0.3 --weight-decay 1e-6 --proj-hidden 512 --proj-dim 512 \\",
        "    --crop-scale 0.08,1.0 --sync-bn --workers 8 --out runs/imagenet/barlow-D512-M4",
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = digits.parse_args(argv, __doc__.split("\n\n")[0])
    command = digits.command_line("vision_digits_baselines.py", argv)
    start = time.perf_counter()
    df, trained = digits.run_all(args, grid(args))
    floor = pd.DataFrame(digits.untrained(args))
    seconds = time.perf_counter() - start if trained else 0.0
    elapsed = digits.wall_clock(args.out, seconds, "timing_baselines.json")
    df.to_csv(args.out / "results_baselines.csv", index=False)
    where = args.out if args.quick else None
    table_path = (where or digits.ROOT / "paper_tables") / PAGE
    figure_path = (where or digits.ROOT / "figures") / FIGURE
    figure(df, floor, args, figure_path)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table_path.write_text(page(df, floor, args, elapsed, command))
    print(f"wrote {table_path} and {figure_path} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
