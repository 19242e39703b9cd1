"""The poly-view fixed-compute trade-off at CPU scale, on scikit-learn's digits.

Shidani et al. 2024 (Poly-View Contrastive Learning) spend a training budget on more views per
image (M) instead of more epochs. Here, on the 1437 training digits at 16x16 with the tiny ResNet
(``ResNet(BasicBlock, [1, 1, 1, 1])``, CIFAR stem):

- SimCLR (M = 2) trained for E, 2E and 4E epochs: relative compute 1, 2, 4 spent on epochs;
- Multi-Crop, Geometric, Arithmetic and Sufficient Statistics at M in {2, 4, 8}, all for E
  epochs: relative compute M / 2 spent on views, either with K fixed (K = 32 images a step) or
  with K x M fixed (64 views a step, so K = 64 / M);
- 3 seeds each (initialisation, data order and augmentations all follow the seed).

At M = 2 the Multi-Crop, Geometric and Arithmetic losses are SimCLR's loss exactly (one view pair),
so their M = 2 point is the SimCLR run. Relative compute = views processed / the views of SimCLR
(M = 2) at E epochs. Scores: weighted kNN (k = 200, cosine, T = 0.1) and a linear probe on the
frozen 512-d backbone features, top-1 on the 360 held-out digits; an untrained encoder is the
floor.

    nice python experiments/vision_digits.py            # about 30 min on 2 shared cores
    nice python experiments/vision_digits.py --quick    # a 2-minute smoke version

Runs are resumable: rerunning skips finished runs (each is a ``mibounds vision train`` run
directory under ``--out``). Writes ``paper_tables/vision_digits.md`` and
``figures/vision_digits.png`` (``--quick``: under ``--out`` only).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import pandas as pd
import scipy.stats
import torch

from mibounds.vision.training import TrainConfig, build_data, build_encoder, train

ROOT = Path(__file__).resolve().parents[1]
POLYVIEW = ("multicrop", "geometric", "arithmetic", "sufficient-statistics")
SAME_AS_SIMCLR_AT_M2 = ("multicrop", "geometric", "arithmetic")
LABELS = {
    "simclr": "SimCLR (more epochs)",
    "multicrop": "Multi-Crop",
    "geometric": "Geometric PVC",
    "arithmetic": "Arithmetic PVC",
    "sufficient-statistics": "Sufficient Statistics",
}


def base_config(args: argparse.Namespace) -> dict:
    """Settings shared by every run (everything but objective, M, K, epochs, seed, out)."""
    return {
        "dataset": "digits",
        "image_size": 16,
        "subset": args.subset,
        "arch": "tiny",
        "proj_hidden": 512,
        "proj_dim": 128,
        "temperature": 0.2,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
        "warmup_epochs": 0.1,
        "flip_p": 0.0,  # a mirrored digit is not the same digit
        "crop_scale": (0.3, 1.0),
        "workers": 1,
        "progress": False,
        "probe_epochs": 100,
    }


def grid(args: argparse.Namespace) -> list[dict]:
    """One dict per run: objective, M, K, regime, epochs, seed."""
    e, k, km = args.epochs, args.k, args.k * 2
    runs = []
    for seed in range(args.seeds):
        for factor in (1, 2, 4):
            runs.append(
                dict(
                    objective="simclr",
                    views=2,
                    batch_size=k,
                    regime="both",
                    epochs=e * factor,
                    seed=seed,
                )
            )
        runs.append(
            dict(
                objective="sufficient-statistics",
                views=2,
                batch_size=k,
                regime="both",
                epochs=e,
                seed=seed,
            )
        )
        for objective in POLYVIEW:
            for m in (4, 8):
                runs.append(
                    dict(
                        objective=objective,
                        views=m,
                        batch_size=k,
                        regime="K fixed",
                        epochs=e,
                        seed=seed,
                    )
                )
                runs.append(
                    dict(
                        objective=objective,
                        views=m,
                        batch_size=km // m,
                        regime="KxM fixed",
                        epochs=e,
                        seed=seed,
                    )
                )
    return runs


def wall_clock(out: Path, seconds: float, name: str = "timing.json") -> float:
    """Add this invocation's seconds to the run directory's ``name`` (one file per script that
    shares the directory); the total."""
    path = out / name
    total = (json.loads(path.read_text())["wall_clock_s"] if path.is_file() else 0.0) + seconds
    path.write_text(json.dumps({"wall_clock_s": total}))
    return total


def run_name(run: dict) -> str:
    """The run's directory name; ``run["tag"]`` tells apart runs that differ in ``run["config"]``
    (settings beyond ``base_config``, e.g. the projector's widths)."""
    tag = run.get("tag", "")
    return f"{run['objective']}_M{run['views']}_K{run['batch_size']}_E{run['epochs']}{tag}"


def untrained(args: argparse.Namespace) -> list[dict]:
    """kNN / linear accuracy of the randomly initialised encoder, one row per seed (cached)."""
    from mibounds.vision.probe import evaluate

    rows = []
    for seed in range(args.seeds):
        path = args.out / "untrained" / f"seed{seed}.json"
        if not path.is_file():
            config = TrainConfig(**base_config(args), seed=seed, out=str(path.parent))
            _, train_eval, test_eval, info = build_data(config)
            result = evaluate(build_encoder(config, info), train_eval, test_eval, seed=seed)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(result))
        result = json.loads(path.read_text())
        rows.append({"seed": seed, "knn": result["knn_top1"], "linear": result["linear_top1"]})
    return rows


def _finished(out: Path) -> bool:
    path = out / "record.json"
    if not path.is_file():
        return False
    record = json.loads(path.read_text())
    return bool(record["finished"] and record["probe"])


def run_all(args: argparse.Namespace, runs: list[dict]) -> tuple[pd.DataFrame, int]:
    """Train (or skip, if finished) every run: one row per run, and how many ran.

    A run is a dict with objective, views, batch_size, epochs and seed, labels for the tables
    (regime, ...), and optionally ``config``, ``TrainConfig`` fields beyond ``base_config`` (with
    a ``tag`` for its directory name, see ``run_name``)."""
    rows, trained = [], 0
    for i, run in enumerate(runs, 1):
        out = args.out / run_name(run) / f"seed{run['seed']}"
        keys = ("objective", "views", "batch_size", "epochs", "seed")
        settings = {**base_config(args), **run.get("config", {})}
        config = TrainConfig(**settings, **{k: run[k] for k in keys}, out=str(out))
        start = time.perf_counter()
        trained += not _finished(out)
        record = train(config)
        print(
            f"[{i}/{len(runs)}] {run_name(run)} seed {run['seed']}: "
            f"kNN {record['probe']['knn_top1']:.3f}, linear {record['probe']['linear_top1']:.3f}"
            f" ({time.perf_counter() - start:.0f} s)",
            flush=True,
        )
        rows.append(
            {
                **{k: v for k, v in run.items() if k not in ("config", "tag")},
                "relative_compute": record["relative_compute"] * run["epochs"] / args.epochs,
                "knn": record["probe"]["knn_top1"],
                "linear": record["probe"]["linear_top1"],
                "final_loss": record["metrics"][-1]["loss"],
                "steps": record["steps_per_epoch"] * run["epochs"],
                "seconds": record["wall_time_s"] + record["probe"]["seconds"],
            }
        )
    return pd.DataFrame(rows), trained


def _mean_sd(values: pd.Series) -> str:
    return f"{100 * values.mean():.1f} ± {100 * values.std(ddof=1):.1f}"


def summarise(df: pd.DataFrame, extra_keys: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per configuration (``extra_keys`` tell apart more settings): mean ± sd over
    seeds (accuracies in %)."""
    keys = ["objective", *extra_keys, "views", "batch_size", "regime", "epochs"]
    keys += ["relative_compute", "steps"]
    out = (
        df.groupby(keys, sort=False)
        .agg(
            knn=("knn", _mean_sd),
            linear=("linear", _mean_sd),
            final_loss=("final_loss", "mean"),
            seconds=("seconds", "mean"),
            seeds=("seed", "count"),
        )
        .reset_index()
    )
    return out


def curves(df: pd.DataFrame) -> pd.DataFrame:
    """Per-seed points of each curve in each regime: the M = 2 runs shared as the docstring says
    (SimCLR's first run stands for the three all-view losses at M = 2)."""
    rows = []
    for regime in ("K fixed", "KxM fixed"):
        simclr = df[df.objective == "simclr"]
        rows += [{**r, "curve": "simclr", "panel": regime} for r in simclr.to_dict("records")]
        base = simclr[simclr.relative_compute == 1]
        for objective in POLYVIEW:
            own = df[(df.objective == objective) & (df.regime.isin([regime, "both"]))]
            rows += [{**r, "curve": objective, "panel": regime} for r in own.to_dict("records")]
            if objective in SAME_AS_SIMCLR_AT_M2:
                rows += [
                    {**r, "curve": objective, "panel": regime} for r in base.to_dict("records")
                ]
    return pd.DataFrame(rows)


def figure(df: pd.DataFrame, floor: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = curves(df)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7), sharex=True, sharey="row")
    for col, regime in enumerate(("K fixed", "KxM fixed")):
        for row, metric in enumerate(("knn", "linear")):
            ax = axes[row, col]
            panel = points[points.panel == regime]
            for curve, label in LABELS.items():
                stats = (
                    panel[panel.curve == curve]
                    .groupby("relative_compute")[metric]
                    .agg(["mean", "std"])
                    .reset_index()
                )
                style = {"color": "black", "linestyle": "--"} if curve == "simclr" else {}
                ax.errorbar(
                    stats.relative_compute,
                    100 * stats["mean"],
                    yerr=100 * stats["std"],
                    marker="o",
                    capsize=3,
                    label=label,
                    **style,
                )
            ax.axhline(
                100 * floor[metric].mean(), color="grey", linestyle=":", label="untrained encoder"
            )
            ax.set_xscale("log", base=2)
            ax.set_xticks([1, 2, 4], ["1", "2", "4"])
            title = "K = 32 images a step" if regime == "K fixed" else "K x M = 64 views a step"
            ax.set_title(f"{title}" if row == 0 else "")
            ax.set_ylabel(f"{'kNN' if metric == 'knn' else 'linear probe'} top-1 (%)")
            if row == 1:
                ax.set_xlabel("relative compute (views processed / SimCLR's at E epochs)")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="lower right")
    fig.suptitle(
        "Digits 16x16, tiny ResNet: views (M = 2, 4, 8) against epochs (SimCLR), "
        "3 seeds (mean ± sd)",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)


def against_epochs(df: pd.DataFrame) -> pd.DataFrame:
    """At relative compute 2 and 4: each poly-view configuration's accuracy minus SimCLR's
    trained for more epochs at the same compute (points, means over seeds), and that difference
    over its standard error (two independent groups of seeds)."""
    rows = []
    simclr = df[df.objective == "simclr"]
    for (objective, m, regime), own in df[df.views > 2].groupby(
        ["objective", "views", "regime"], sort=False
    ):
        compute = float(own.relative_compute.iloc[0])
        base = simclr[simclr.relative_compute == compute]
        row = {"compute": compute, "objective": objective, "M": m, "regime": regime}
        rows.append({**row, **difference(own, base)})
    return pd.DataFrame(rows).sort_values(["compute", "regime"], kind="stable")


def difference(own: pd.DataFrame, base: pd.DataFrame) -> dict[str, float]:
    """``own`` minus ``base`` (per-seed rows): the difference of mean accuracies in points, and
    over its standard error as two independent groups of seeds (roughly a t statistic), for
    kNN and linear probe: keys ``knn_diff, knn_z, linear_diff, linear_z``."""
    row = {}
    for metric in ("knn", "linear"):
        diff = own[metric].mean() - base[metric].mean()
        se = math.sqrt(own[metric].var() / len(own) + base[metric].var() / len(base))
        row[f"{metric}_diff"] = 100 * diff
        row[f"{metric}_z"] = diff / se if se > 0 else math.nan
    return row


def markdown(df: pd.DataFrame) -> str:
    """A pipe table (pandas' ``to_markdown`` needs tabulate, which is not a dependency)."""
    rows = [list(df.columns), ["---"] * len(df.columns), *df.astype(str).values.tolist()]
    return "\n".join("| " + " | ".join(map(str, row)) + " |" for row in rows)


def table(
    df: pd.DataFrame,
    summary: pd.DataFrame,
    floor: pd.DataFrame,
    args: argparse.Namespace,
    elapsed: float,
    total: float,
    runs: int,
    command: str,
) -> str:
    comparison = against_epochs(df).rename(columns={"compute": "rel. compute"})
    knn_diff = comparison.knn_diff.abs().max()
    knn_z, linear_z = comparison.knn_z.abs().max(), comparison.linear_z.abs().max()
    dof = 2 * args.seeds - 2
    t_crit = float(scipy.stats.t.ppf(0.975, dof))
    chance = len(comparison) * 2 * float(scipy.stats.t.sf(2.0, dof))
    significant = []
    for metric, column in (("kNN", "knn_z"), ("linear probe", "linear_z")):
        big = comparison[comparison[column].abs() >= 2]
        for_views = int((big[column] > 0).sum())
        favour = (
            f"{for_views} for more views, {len(big) - for_views} for more epochs, at relative "
            f"compute {', '.join(f'{c:g}' for c in sorted(set(big['rel. compute'])))}"
        )
        significant.append((metric, len(big), favour))
    comparison = comparison.round({"knn_diff": 1, "knn_z": 1, "linear_diff": 1, "linear_z": 1})
    comparison["objective"] = comparison.objective.map(LABELS)
    comparison = comparison.rename(
        columns={
            "knn_diff": "kNN diff (points)",
            "knn_z": "kNN diff / se",
            "linear_diff": "linear diff (points)",
            "linear_z": "linear diff / se",
        }
    )
    show = summary.copy()
    show["objective"] = show.objective.map(lambda o: LABELS.get(o, o).replace(" (more epochs)", ""))
    show = show.rename(
        columns={
            "views": "M",
            "batch_size": "K",
            "epochs": "epochs",
            "relative_compute": "rel. compute",
            "knn": "kNN top-1 (%)",
            "linear": "linear top-1 (%)",
            "final_loss": "final loss",
            "seconds": "s / run",
        }
    )
    show["final loss"] = show["final loss"].map(lambda v: f"{v:.3f}")
    show["s / run"] = show["s / run"].map(lambda v: f"{v:.0f}")
    show["rel. compute"] = show["rel. compute"].map(lambda v: f"{v:g}")
    config = base_config(args)
    lines = [
        "# Poly-view fixed-compute trade-off on digits (CPU scale)",
        "",
        f"Command: `{command}`  ",
        f"Run time: {elapsed / 60:.1f} min wall-clock (summed over the invocations that "
        f"trained, see `timing.json` in the run directory); {total / 60:.1f} min summed over the "
        f"{runs} runs' own training + probe times; on 2 CPU cores shared with other jobs, with "
        "one torch thread (on a loaded machine a second thread mostly waits).",
        "",
        "Set-up: scikit-learn digits (1437 train / 360 test, 8x8 upscaled to 16x16), tiny ResNet "
        "`ResNet(BasicBlock, [1, 1, 1, 1])` with the CIFAR stem, projector 512-512-128, "
        f"temperature {config['temperature']}, AdamW lr {config['lr']} (wd "
        f"{config['weight_decay']}, {config['warmup_epochs']}-epoch warm-up, cosine), "
        f"E = {args.epochs} epoch(s) for every poly-view run, crop scale {config['crop_scale']}, "
        "colour jitter 0.5 (p 0.8), grayscale p 0.2, no flips. K fixed: K = "
        f"{args.k}; K x M fixed: K = {2 * args.k} / M. Scores on frozen backbone features: "
        "weighted kNN (k = 200, cosine, T = 0.1) and a linear probe (100 epochs AdamW), top-1 on "
        f"the test split, mean ± sd over {args.seeds} seeds. Relative compute = views processed "
        "/ SimCLR's (M = 2) at E epochs. `regime` both: M = 2, where the two regimes coincide; "
        "at M = 2 the Multi-Crop, Geometric and Arithmetic losses equal SimCLR's, so the figure "
        "uses the SimCLR run there.",
        "",
        f"Untrained encoder (floor): kNN {_mean_sd(floor.knn)} %, linear "
        f"{_mean_sd(floor.linear)} %.",
        "",
        markdown(show),
        "",
        "![accuracy against relative compute](../figures/vision_digits.png)",
        "",
        "SogCLR and multi-view Barlow Twins in the same set-up, beside SimCLR runs of the same "
        "invocation: [vision_digits_baselines.md](vision_digits_baselines.md).",
        "",
        "## More views against more epochs, at equal compute",
        "",
        "Each poly-view configuration (E epochs, M views) minus SimCLR trained for M/2 x E "
        "epochs (M = 2), the same number of views processed; accuracy points, and the "
        f"difference over its standard error ({args.seeds} + {args.seeds} seeds):",
        "",
        markdown(comparison),
        "",
        f"Largest |kNN difference|: {knn_diff:.1f} points; largest |difference / standard "
        f"error|: {knn_z:.1f} (kNN), {linear_z:.1f} (linear). "
        + " ".join(
            f"{metric}: {n} of {len(comparison)} differences reach 2 standard errors"
            + (f" ({favour})." if n else ".")
            for metric, n, favour in significant
        )
        + f" With {args.seeds} + {args.seeds} seeds the ratio is roughly a t statistic on "
        f"{dof} degrees of freedom: |t| > {t_crit:.1f} for 5 %, and {chance:.1f} of "
        f"{len(comparison)} comparisons are expected to cross 2 by chance alone."
        + f" The linear probe of an untrained encoder already reaches "
        f"{100 * floor.linear.mean():.1f} %, so the kNN score is the one that separates runs here. "
        "The paper's finding (more views beat more epochs at equal compute) is about long "
        "ImageNet training; one epoch on 1437 digits is far from that regime, so this page "
        "shows the experiment runs end to end on real images, not that the finding holds or "
        "fails.",
        "",
        "## Published numbers, for context only (not comparable: other data, scale, models)",
        "",
        "| source | setting | published | here |",
        "|---|---|---|---|",
        "| SimCLR (Chen et al. 2020) | ResNet-50, 1000 epochs, batch 4096, ImageNet | 69.3 % "
        "linear top-1 | digits, tiny ResNet, see SimCLR rows above |",
        "| Poly-view (Shidani et al. 2024) | ResNet-50, ImageNet: 128 epochs at batch 256 (M = 8) "
        "beat SimCLR at 1024 epochs, batch 4096 | more views beat more epochs at equal compute "
        "| compare the poly-view curves with the SimCLR (more epochs) curve at equal relative "
        "compute in the figure |",
        "",
        "No number here is compared to a published one: the difference would mean nothing "
        "across datasets this far apart.",
        "",
        "## Full scale (GPUs, your data)",
        "",
        "```bash",
        "# CIFAR-10 (python batches in /data/cifar-10-batches-py), ResNet-18, 8 GPUs",
        "torchrun --nproc_per_node=8 -m mibounds vision train --dataset cifar10 \\",
        "    --data-root /data/cifar-10-batches-py --image-size 32 --arch resnet18 \\",
        "    --objective arithmetic -M 8 -K 256 --epochs 400 --optimizer sgd --lr 0.5 \\",
        "    --weight-decay 5e-4 --temperature 0.2 --proj-hidden 2048 --proj-dim 128 \\",
        "    --crop-scale 0.2,1.0 --sync-bn --out runs/cifar10/arithmetic-M8",
        "# ImageNet as an ImageFolder tree (/data/imagenet/{train,val}/<class>/*.JPEG), ResNet-50",
        "torchrun --nproc_per_node=8 -m mibounds vision train --dataset folder \\",
        "    --data-root /data/imagenet --image-size 224 --arch resnet50 --jitter 1.0 \\",
        "    --objective arithmetic -M 8 -K 256 --epochs 128 --optimizer sgd --lr 0.3 \\",
        "    --weight-decay 1e-6 --temperature 0.1 --proj-hidden 2048 --proj-dim 128 \\",
        "    --crop-scale 0.08,1.0 --sync-bn --workers 8 --out runs/imagenet/arithmetic-M8",
        "# the SimCLR baseline: --objective simclr -M 2; then score a run again with",
        "mibounds vision probe runs/imagenet/arithmetic-M8",
        "```",
        "",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None, description: str) -> argparse.Namespace:
    """The options every digits script takes; sets torch's threads, and the run directory
    (``runs/vision_digits``, shared by the scripts so that a run one of them finished is
    reused by the others)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="smoke version: 256 training digits, 1 seed, K = 16"
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=1, help="E, the poly-view runs' epochs")
    parser.add_argument("--k", type=int, default=32, help="K of the K-fixed regime")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 is fastest on a shared machine, where a second thread mostly waits",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.subset = None
    if args.quick:
        args.subset, args.seeds, args.k = 256, 1, 16
    args.out = args.out or ROOT / "runs" / (
        "vision_digits_quick" if args.quick else "vision_digits"
    )
    return args


def command_line(script: str, argv: list[str] | None) -> str:
    return f"nice python experiments/{script}" + " ".join([""] + (argv or sys.argv[1:]))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv, __doc__.split("\n\n")[0])
    command = command_line("vision_digits.py", argv)

    start = time.perf_counter()
    df, trained = run_all(args, grid(args))
    floor = pd.DataFrame(untrained(args))
    # re-aggregating finished runs adds nothing to the recorded run time
    elapsed = wall_clock(args.out, time.perf_counter() - start if trained else 0.0)
    df.to_csv(args.out / "results.csv", index=False)
    summary = summarise(df)
    table_path = (
        args.out / "vision_digits.md" if args.quick else ROOT / "paper_tables" / "vision_digits.md"
    )
    figure_path = (
        args.out / "vision_digits.png" if args.quick else ROOT / "figures" / "vision_digits.png"
    )
    figure(df, floor, figure_path)
    text = table(df, summary, floor, args, elapsed, float(df.seconds.sum()), len(df), command)
    table_path.parent.mkdir(parents=True, exist_ok=True)
    table_path.write_text(text)
    print(summary.to_string(index=False))
    print(f"wrote {table_path} and {figure_path} ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
