"""Yuan et al. 2022 (SogCLR) on a finite Gaussian dataset: its global estimate and its
critic's InfoNCE bound at small K, against InfoNCE at the same and a large K
(docs/experiments.md, docs/sogclr.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from mibounds.reproductions.report import (
    Context,
    bound_violations,
    markdown_table,
    params_text,
    pm_table,
    shown,
    violations_line,
    write_text,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _method(row: pd.Series) -> str:
    """``SogCLR (gamma = 0.9)`` or ``InfoNCE``, and the training K."""
    if row["objective"] == "sogclr":
        return f"SogCLR (gamma = {dict(row['objective_params'])['gamma']:g}), K = {row['k']}"
    return f"{row['objective_label'].replace('infonce', 'InfoNCE')}, K = {row['k']}"


def _data(row: pd.Series) -> str:
    n = dict(row["source_params"]).get("n")
    return "stream" if n is None else f"n = {n}"


def sogclr_quantities(frame: pd.DataFrame) -> pd.DataFrame:
    """The numbers the SogCLR experiment compares, one row per (run, quantity), in nats.

    Quantities: ``global estimate`` (SogCLR runs: ``mean_i [s_ii - log u_i]`` over the training
    set, an estimate, not a bound; ``objectives.SogCLRObjective``) and ``InfoNCE at k`` for each
    held-out readout size k (every run: the trained critic's InfoNCE bound on fresh batches of k
    rows; each seed's batches of one size are the same rows whatever the method, so methods are
    compared on the same data). Columns: the run's ``setting_key``, ``seed``, ``k``, ``mi``,
    ``critic_label``, plus ``method`` (objective and training K), ``data`` (``n = ...`` or
    ``stream``), ``quantity``, ``eval_k``, ``estimate_mean`` / ``estimate_sd`` (the value and
    its sd over evaluation batches), ``is_bound``, ``eval_batches``, ``true_mi``, ``log_eval_k``,
    ``objective_label`` (method and quantity) and a per-quantity ``setting_key``, so that
    ``bound_violations`` applies to it unchanged.
    """
    rows = []
    readouts = sorted(
        (int(c[len("infonce_k") : -len("_mean")]), c)
        for c in frame.columns
        if c.startswith("infonce_k") and c.endswith("_mean")
    )
    for _, run in frame.iterrows():
        base = {
            "seed": run["seed"],
            "k": run["k"],
            "mi": run["mi"],
            "critic_label": run["critic_label"],
            "method": _method(run),
            "data": _data(run),
            "true_mi": run["true_mi"],
        }
        quantities = []
        if run["objective"] == "sogclr":
            batches = dict(run["source_params"])["n"] // run["k"]
            value, sd = run["estimate_mean"], run["estimate_sd"]
            quantities.append(("global estimate", run["k"], value, sd, False, batches))
        for k, column in readouts:
            if pd.notna(run.get(column)):
                value, sd = run[column], run[column.replace("_mean", "_sd")]
                quantities.append((f"InfoNCE at {k}", k, value, sd, True, run["eval_batches"]))
        for quantity, k, value, sd, bound, batches in quantities:
            rows.append(
                {
                    **base,
                    "setting_key": f"{run['setting_key']}/{quantity}",
                    "quantity": quantity,
                    "eval_k": k,
                    "log_eval_k": math.log(k),
                    "estimate_mean": value,
                    "estimate_sd": sd,
                    "is_bound": bound,
                    "eval_batches": batches,
                    "objective_label": f"{base['method']} ({base['data']}): {quantity}",
                }
            )
    return pd.DataFrame(rows)


def _main_runs(frame: pd.DataFrame, base: dict) -> pd.DataFrame:
    """The runs of the main comparison: the [run] critic, on the [run] dataset or the stream."""
    source = base.get("source", {})
    n = source.get("n") if isinstance(source, dict) else None
    critic = frame["critic_label"].mode().iloc[0]
    data = frame.apply(_data, axis=1)
    return frame[(frame["critic_label"] == critic) & data.isin([f"n = {n}", "stream"])]


def _small_and_large_k(frame: pd.DataFrame) -> tuple[list[int], int]:
    """The training K of the SogCLR runs, and the large K: that of the InfoNCE-only runs."""
    small = sorted(frame.loc[frame["objective"] == "sogclr", "k"].unique())
    large = int(frame["k"].max())
    return [int(k) for k in small], large


def _paired(a: pd.DataFrame, b: pd.DataFrame) -> tuple[float, float]:
    """Mean over seeds of a - b (``estimate_mean``, matched by ``seed``) and its standard error.

    Paired because two runs of one seed share the dataset, the critic's initialisation and the
    held-out rows; only the training objective differs."""
    diff = (a.set_index("seed")["estimate_mean"] - b.set_index("seed")["estimate_mean"]).dropna()
    se = float(diff.std() / math.sqrt(len(diff))) if len(diff) > 1 else math.nan
    return float(diff.mean()), se


def sogclr_findings(frame: pd.DataFrame, base: dict) -> dict[str, float]:
    """The numbers behind the SogCLR experiment's findings (seed means, nats), main runs only.

    Keys, for each small training K ``k``, SogCLR gamma ``g`` and true MI ``i``:
    ``global_minus_mi/g/k/i`` (SogCLR's global estimate minus the true MI),
    ``infonce_at_k/k/i`` (InfoNCE trained and read at K; its ceiling is log K),
    ``sogclr_at_k/g/k/i`` (the SogCLR critic's InfoNCE read at its training K),
    ``critic_gain/g/k/i`` and ``critic_gain_se/g/k/i`` (held-out InfoNCE at the large K of the
    SogCLR critic minus that of the InfoNCE critic trained at the same K, and its standard error
    over seeds, paired by seed), ``large_finite/i`` and ``large_stream/i`` (InfoNCE trained
    and read at the large K, on the dataset and on the stream).
    """
    main = _main_runs(frame, base)
    small, large = _small_and_large_k(main)
    q = sogclr_quantities(main)
    out: dict[str, float] = {}
    at_large = q[q["quantity"] == f"InfoNCE at {large}"]
    for k in small:
        infonce_k = q[(q["method"] == f"InfoNCE, K = {k}") & (q["quantity"] == f"InfoNCE at {k}")]
        for mi, g in infonce_k.groupby("mi"):
            out[f"infonce_at_k/{k}/{mi:g}"] = float(g["estimate_mean"].mean())
        reference = at_large[at_large["method"] == f"InfoNCE, K = {k}"]
        for gamma in _gammas(main):
            name = f"SogCLR (gamma = {gamma}), K = {k}"
            glob = q[(q["method"] == name) & (q["quantity"] == "global estimate")]
            for mi, g in glob.groupby("mi"):
                out[f"global_minus_mi/{gamma}/{k}/{mi:g}"] = float(g["estimate_mean"].mean() - mi)
            own_k = q[(q["method"] == name) & (q["quantity"] == f"InfoNCE at {k}")]
            for mi, g in own_k.groupby("mi"):
                out[f"sogclr_at_k/{gamma}/{k}/{mi:g}"] = float(g["estimate_mean"].mean())
            ours = at_large[at_large["method"] == name]
            for mi, g in ours.groupby("mi"):
                gain, se = _paired(g, reference[reference["mi"] == mi])
                out[f"critic_gain/{gamma}/{k}/{mi:g}"] = gain
                out[f"critic_gain_se/{gamma}/{k}/{mi:g}"] = se
    big = at_large[at_large["method"] == f"InfoNCE, K = {large}"]
    for (data, mi), g in big.groupby(["data", "mi"]):
        key = "large_stream" if data == "stream" else "large_finite"
        out[f"{key}/{mi:g}"] = float(g["estimate_mean"].mean())
    return out


def _gammas(frame: pd.DataFrame) -> list[str]:
    """The SogCLR runs' gammas, formatted, in increasing order."""
    sogclr = frame[frame["objective"] == "sogclr"]
    return sorted({f"{dict(p)['gamma']:g}" for p in sogclr["objective_params"]}, key=float)


def _headline(q: pd.DataFrame, large: int) -> pd.DataFrame:
    """The global estimate, InfoNCE at the training K and at the large K, in table order."""
    keep = (
        (q["quantity"] == "global estimate")
        | q["quantity"].isin([f"InfoNCE at {large}"])
        | (q["eval_k"] == q["k"])
    )
    return q[keep].sort_values(["eval_k", "quantity", "method"], kind="stable")


def _mi_columns(table: pd.DataFrame) -> pd.DataFrame:
    table.columns = [f"I = {v:g}" for v in table.columns]
    return table


def _training_estimate(frame: pd.DataFrame) -> pd.Series:
    """Per run: the mean training estimate over the last curve block (in-sample), nats."""
    return frame["curve_estimate"].map(lambda c: float(c[-1]))


def _sogclr_figure(q: pd.DataFrame, small: list[int], large: int, title: str) -> Figure:
    """Per small K (columns): the estimates at the training K, and every critic's InfoNCE at the
    large K (rows), against the true MI and the ceilings log K."""
    import matplotlib.pyplot as plt

    from mibounds import plots

    fig, axes = plt.subplots(2, len(small), figsize=(6.2 * len(small), 9.4), squeeze=False)
    mis = sorted(q["mi"].unique())
    for col, k in enumerate(small):
        trained_k = q["k"] == k
        at_k = q[trained_k & q["quantity"].isin(["global estimate", f"InfoNCE at {k}"])]
        at_k = at_k.assign(
            series=at_k["method"].str.replace(f", K = {k}", "") + ": " + at_k["quantity"]
        )
        critics = q[(trained_k | (q["k"] == large)) & (q["quantity"] == f"InfoNCE at {large}")]
        critics = critics.assign(series=critics["method"] + " (" + critics["data"] + ")")
        for row, (part, ceiling, name) in enumerate(
            [
                (at_k, k, f"K = {k}: estimates at the training K"),
                (critics, large, f"critics trained at K = {k}: held-out InfoNCE at {large}"),
            ]
        ):
            ax = axes[row, col]
            plots.metric_panel(ax, part, "mi", "estimate_mean", hue="series")
            ax.plot(mis, mis, color="k", lw=1.2, label="true MI")
            ax.axhline(math.log(ceiling), color="tab:red", ls=":", lw=1, label=f"log {ceiling}")
            ax.set_ylabel("nats")
            ax.set_title(name)
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def report(frame: pd.DataFrame, ctx: Context) -> list[Path]:
    from mibounds import plots

    base = ctx.sweep.base
    main = _main_runs(frame, base)
    small, large = _small_and_large_k(main)
    q = sogclr_quantities(main)
    first = main[main["objective"] == "sogclr"].iloc[0]
    n = dict(first["source_params"])["n"]
    seeds = frame.groupby("setting_key").size().max()
    figure = plots.save(
        _sogclr_figure(
            q,
            small,
            large,
            f"SogCLR on a finite Gaussian dataset: d = {int(first['d'])}, n = {n}, "
            f"{int(first['steps'])} steps, mean ± sd over {seeds} seeds",
        ),
        ctx.figures / "sogclr_gaussian.png",
    )
    found = sogclr_findings(frame, base)
    gammas = _gammas(main)
    mis = sorted(main["mi"].unique())

    def table(part: pd.DataFrame) -> pd.DataFrame:
        return _mi_columns(pm_table(part, "objective_label", "mi", "estimate_mean"))

    lines = [
        ctx.header("SogCLR in the Gaussian harness: global estimate and critic at small K", frame),
        f"Figure: `{shown(figure)}`. Yuan et al. 2022 (SogCLR, ICML, arXiv 2202.12387) keep one "
        "moving-average partition u_i per dataset item, so a small batch's gradient stands in for "
        "the whole dataset's (docs/sogclr.md). Here: does that bring the estimate, or the critic, "
        "closer to the true MI at small K than InfoNCE at the same K, and than InfoNCE at a "
        "large K? Compared: (a) SogCLR's global estimate, (b) the SogCLR-trained critic's "
        "InfoNCE bound, (c) InfoNCE trained at the same K, (d) InfoNCE trained at a large K.",
        "",
        "## Set-up (our choices; the paper has no Gaussian experiment)",
        "",
        f"- Data: d = {int(first['d'])} Gaussian pairs (docs/gaussian.md) with true MI "
        f"{', '.join(f'{v:g}' for v in mis)} nats; a finite dataset of n = {n} pairs drawn once "
        "per seed, visited in shuffled epochs (a fresh permutation per epoch and seed); held-out "
        "batches are fresh draws. The large-K reference also trains on the unlimited stream.",
        f"- Every method trains {int(first['steps'])} Adam steps (lr = {first['lr']:g}), so "
        "the epochs differ: "
        + ", ".join(
            f"K = {k}: {int(first['steps']) * k / n:.1f}" for k in sorted(main["k"].unique())
        )
        + f". {seeds} seeds per setting, trained as one batched model; cells are mean ± sd over "
        "seeds.",
        "- One critic for every method: separable, two MLPs "
        f"({params_text(first['critic_params'])}): EqCo's one hidden layer of 256 units, with "
        "cosine similarity over a temperature because SogCLR needs bounded scores (with the dot "
        "product it diverges: last section).",
        f"- SogCLR: `GlobalContrastive` (`mibounds.sogclr`) with gamma = {', '.join(gammas)} "
        "(the paper's is 0.9). u_i <- (1 - gamma) u_i + gamma * (batch partition) once per epoch, "
        "so gamma = 0.9 keeps mostly the last visit's K - 1 negatives, and a smaller gamma "
        "averages about 1 / gamma epochs, with a lag.",
        "- What is reported (all in nats):",
        "  - **global estimate** (SogCLR only): `mean_i [s_ii - log u_i]` over the n training "
        "items, the final critic's positive scores against the stored u (read, not moved). u_i "
        "estimates the dataset partition `mean_{j != i} exp s_ij`, so this is the plug-in of the "
        "Barber-Agakov / TUBA bound `E f - E log Z(x)`, which has no log K ceiling; there is no "
        "`+ log K` term because u_i is already a mean. It is **an estimate, not a bound**: "
        "biased upwards by Jensen (log of a noisy u), computed on the pairs the critic was "
        "trained on, with u lagging the critic.",
        "  - **InfoNCE at k** (every run; a **bound**, <= log k): the trained critic's InfoNCE "
        f"on {int(first['eval_batches'])} held-out batches of k rows. The SogCLR critic's "
        "InfoNCE at its own K is (b), InfoNCE's at its K (c), InfoNCE trained and "
        f"read at K = {large} (d); every critic's InfoNCE at {large} measures how good the "
        "critic is beyond its training K's ceiling.",
        "",
    ]
    for k in small:
        part = q[(q["k"] == k) & q["quantity"].isin(["global estimate", f"InfoNCE at {k}"])]
        part = part.sort_values(["quantity", "method"], kind="stable")
        lines += [
            f"## K = {k}: estimates at the training batch size (log {k} = {math.log(k):.2f})",
            "",
            markdown_table(table(part), "method (data): quantity"),
            "",
        ]
    critics = q[q["quantity"] == f"InfoNCE at {large}"].sort_values(["k", "method", "data"])
    lines += [
        f"## Critic quality: every critic's held-out InfoNCE at {large} "
        f"(a bound, <= log {large} = {math.log(large):.2f})",
        "",
        markdown_table(table(critics), "critic (data)"),
        "",
        f"SogCLR critic minus the InfoNCE critic trained at the same K (InfoNCE at {large}; ± "
        "standard error of the per-seed differences: a seed's two critics share the dataset, "
        "the initialisation and the held-out rows):",
        "",
    ]
    gains = pd.DataFrame(
        {
            f"I = {mi:g}": {
                f"SogCLR (gamma = {g}), K = {k}": f"{found[f'critic_gain/{g}/{k}/{mi:g}']:+.3f} ± "
                f"{found[f'critic_gain_se/{g}/{k}/{mi:g}']:.3f}"
                for k in small
                for g in gammas
            }
            for mi in mis
        }
    )
    lines += [markdown_table(gains, "critic"), ""]

    # in-sample against held-out, for every InfoNCE run at small K: how much is memorised
    infonce = frame[(frame["objective"] == "infonce") & frame["k"].isin(small)]
    infonce = infonce.assign(
        memorised=_training_estimate(infonce) - infonce["estimate_mean"],
        label=infonce.apply(lambda r: f"InfoNCE, K = {r['k']} ({_data(r)})", axis=1),
    )
    infonce = infonce[infonce["critic_label"] == main["critic_label"].iloc[0]]
    lines += [
        "## Memorising: training estimate minus held-out estimate",
        "",
        "InfoNCE at its training K, the mean over the last "
        f"{int(first['curve_every'])} training steps (on the dataset's items) minus the held-out "
        "value; 0 would be no memorising.",
        "",
        markdown_table(
            _mi_columns(
                pm_table(infonce.sort_values(["k", "label"]), "label", "mi", "memorised")
            ).fillna("–"),
            "run",
        ),
        "",
    ]
    smaller = frame[
        (frame["critic_label"] == main["critic_label"].iloc[0]) & ~frame.index.isin(main.index)
    ]
    if not smaller.empty:
        sq = _headline(sogclr_quantities(smaller), large)
        lines += [
            f"## A smaller dataset ({', '.join(sorted(smaller.apply(_data, axis=1).unique()))})",
            "",
            markdown_table(table(sq), "method (data): quantity"),
            "",
        ]
    unbounded = frame[frame["critic_label"] != main["critic_label"].iloc[0]]
    if not unbounded.empty:
        uq = _headline(sogclr_quantities(unbounded), large)
        cells = uq.groupby("objective_label", sort=False)["estimate_mean"].apply(
            lambda v: f"{v.mean():.4g} ± {v.std():.3g}"
        )
        lines += [
            "## An unbounded critic: the dot product "
            f"({params_text(unbounded['critic_params'].iloc[0])}), "
            + ", ".join(f"I = {v:g}" for v in sorted(unbounded["mi"].unique())),
            "",
            markdown_table(cells.to_frame("nats"), "method (data): quantity"),
            "",
        ]
    lines += [
        "## Findings",
        "",
        *_sogclr_finding_lines(found, q, small, large, gammas, mis),
        *_side_finding_lines(smaller, unbounded, q, large),
        "",
    ]
    return [figure, write_text(ctx.tables / "sogclr_gaussian.md", "\n".join(lines))]


def _side_finding_lines(
    smaller: pd.DataFrame, unbounded: pd.DataFrame, q: pd.DataFrame, large: int
) -> list[str]:
    """Findings of the side grids: a smaller dataset, and an unbounded critic."""
    lines = []

    def mean(part: pd.DataFrame, method: str, quantity: str, mi: float) -> float:
        cell = part[
            (part["method"] == method) & (part["quantity"] == quantity) & (part["mi"] == mi)
        ]
        return float(cell["estimate_mean"].mean())

    if not smaller.empty:
        sq = sogclr_quantities(smaller)
        mi, k = float(sq["mi"].min()), int(sq["k"].iloc[0])
        methods = sorted(m for m in sq["method"].unique() if m.startswith("SogCLR"))
        memorised = smaller[smaller["objective"] == "infonce"]
        memorised = _training_estimate(memorised) - memorised["estimate_mean"]
        lines.append(
            f"- On the smaller dataset ({', '.join(sorted(smaller.apply(_data, axis=1).unique()))}"
            f", K = {k}, I = {mi:g}) the global estimate reads "
            + ", ".join(f"{mean(sq, m, 'global estimate', mi):.2f}" for m in methods)
            + f" ({'; '.join(m.split(', K')[0] for m in methods)}), while the same critics' "
            f"held-out InfoNCE at {k} is "
            + ", ".join(f"{mean(sq, m, f'InfoNCE at {k}', mi):.2f}" for m in methods)
            + f" and InfoNCE's training estimate exceeds its held-out one by up to "
            f"{memorised.max():.2f}: read on the training items, the global estimate follows "
            "the fit to them, memorised or not, rather than the MI."
        )
    if not unbounded.empty:
        uq = sogclr_quantities(unbounded)
        mi, k = float(uq["mi"].iloc[0]), int(uq["k"].iloc[0])
        sogclr = next(m for m in uq["method"].unique() if m.startswith("SogCLR"))
        infonce = f"InfoNCE, K = {k}"
        at_large = f"InfoNCE at {large}"
        lines.append(
            f"- With the unbounded dot-product critic (K = {k}, I = {mi:g}) SogCLR diverges: "
            f"global estimate {mean(uq, sogclr, 'global estimate', mi):.3g}, held-out InfoNCE at "
            f"{large} {mean(uq, sogclr, at_large, mi):.3g}; InfoNCE with that critic reaches "
            f"{mean(uq, infonce, at_large, mi):.2f} at {large} (with the cosine critic: "
            f"{mean(q, infonce, at_large, mi):.2f}). SogCLR needs bounded scores; InfoNCE "
            "does not."
        )
    return lines


def _sogclr_finding_lines(
    found: dict[str, float],
    q: pd.DataFrame,
    small: list[int],
    large: int,
    gammas: list[str],
    mis: list[float],
) -> list[str]:
    """The findings, each computed from the numbers above."""
    lines = []
    for g in gammas:
        for k in small:
            diffs = [found[f"global_minus_mi/{g}/{k}/{mi:g}"] for mi in mis]
            above_log_k = [
                f"{mi:g}" for mi, d in zip(mis, diffs, strict=True) if mi + d > math.log(k)
            ]
            over = sum(d > 0 for d in diffs)
            lines.append(
                f"- (a) SogCLR (gamma = {g}) at K = {k}: global estimate minus true MI = "
                + ", ".join(f"{d:+.2f}" for d in diffs)
                + f" at I = {', '.join(f'{mi:g}' for mi in mis)}: above the true MI at {over} of "
                f"{len(mis)} levels; above log K = {math.log(k):.2f} at I = "
                + (", ".join(above_log_k) or "none")
                + "."
            )
    for k in small:
        own = [found[f"infonce_at_k/{k}/{mi:g}"] for mi in mis]
        ours = [
            found[f"sogclr_at_k/{g}/{k}/{mi:g}"] - v
            for g in gammas
            for mi, v in zip(mis, own, strict=True)
        ]
        lines.append(
            f"- (b, c) Read at K = {k} (ceiling log K = {math.log(k):.2f}): InfoNCE's critic "
            f"reaches {', '.join(f'{v:.2f}' for v in own)} at I = "
            f"{', '.join(f'{mi:g}' for mi in mis)}; "
            f"the SogCLR critics differ from it by {min(ours):+.2f} to {max(ours):+.2f} nats."
        )
    significant = {
        (g, k, mi): found[f"critic_gain/{g}/{k}/{mi:g}"]
        for g in gammas
        for k in small
        for mi in mis
        if abs(found[f"critic_gain/{g}/{k}/{mi:g}"]) > 2 * found[f"critic_gain_se/{g}/{k}/{mi:g}"]
    }
    better = sorted((key for key, v in significant.items() if v > 0), key=lambda t: t[2])
    worse = sorted((key for key, v in significant.items() if v < 0), key=lambda t: t[2])

    def where(keys: list[tuple[str, int, float]]) -> str:
        return "; ".join(
            f"gamma = {g}, K = {k}, I = {mi:g} ({found[f'critic_gain/{g}/{k}/{mi:g}']:+.2f})"
            for g, k, mi in keys
        )

    total = len(gammas) * len(small) * len(mis)
    lines.append(
        f"- Critic quality (InfoNCE at {large}): of the {total} (gamma, K, I) comparisons, the "
        f"SogCLR critic beats the InfoNCE critic of the same K beyond 2 standard errors in "
        f"{len(better)}"
        + (f" ({where(better)})" if better else "")
        + f", loses in {len(worse)}"
        + (f" ({where(worse)})" if worse else "")
        + f", and is within noise in {total - len(better) - len(worse)}."
    )
    best = q[(q["quantity"] == f"InfoNCE at {large}") & (q["k"] != large)]
    best = best.groupby(["method", "mi"])["estimate_mean"].mean().groupby("mi").max()
    lines.append(
        f"- Against InfoNCE trained at K = {large}: the best small-K critic reaches "
        + ", ".join(
            f"{best[mi]:.2f} (I = {mi:g}; K = {large}: "
            f"{found.get(f'large_finite/{mi:g}', math.nan):.2f} on the dataset, "
            f"{found.get(f'large_stream/{mi:g}', math.nan):.2f} on the stream)"
            for mi in mis
        )
        + "."
    )
    lines.append(
        violations_line(
            bound_violations(q),
            "Every bound (each held-out InfoNCE) below the true MI: no setting's seed mean above "
            "it by more than 3 standard errors of the held-out mean.",
            "bound(s) above the true MI",
        )
    )
    return lines
