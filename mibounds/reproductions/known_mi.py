"""The known-MI benchmark: every applicable estimator on every task of ``mibounds.tasks`` at
n = 5,000 samples, several seeds, through ``mibounds.estimate`` (docs/experiments.md#known-mi).

In the style of the "Beyond Normal" benchmark (Czyż et al. 2023): the neural estimators of the
catalogue with ``estimate``'s procedure (train / validation / test split, early stopping on the
validation rows, the value read on the test rows), the poly-view ones on the view tasks'
one-vs-rest MI, and the two classical baselines (CCA, KSG) on the whole sample. The grid is
``grids/known-mi.toml`` (an ``"estimate"`` sweep, ``mibounds.harness.benchmark``), so the run
resumes, takes ``--jobs`` and writes one record per (task, estimator, seed). ``report`` writes
``known_mi.md`` (bias and spread per task, the tasks within 0.1 nats per estimator, findings)
and ``known_mi.png`` (estimate against the true MI, and the bias per task).
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from mibounds import plots
from mibounds.estimation import applicable_estimators
from mibounds.harness.benchmark import CLASSICAL
from mibounds.reproductions.report import Context, markdown_table, pm_table, write_text

__all__ = ["BIAS_RANGE", "TOLERANCE", "figure", "findings", "report", "summary", "task_group"]

TOLERANCE = 0.1
"""A task is estimated well when the mean over seeds is within this many nats of the true MI
(the benchmark's criterion, as in Czyż et al. 2023)."""


def task_group(name: str) -> str:
    """What makes a task hard, from its name: ``"heavy tails"`` (Student-t, also transformed),
    ``"spiral"``, ``"high dimension"`` (d >= 25), ``"Gaussian"``, ``"transformed Gaussian"``,
    ``"additive uniform"`` or ``"views"``.

    Example:
        >>> task_group("asinh-student-identity-5-5-2"), task_group("multinormal-dense-50-50-0.5")
        ('heavy tails', 'high dimension')
    """
    dims = [int(t) for t in name.split("-") if t.isdigit()]
    if "student" in name:
        return "heavy tails"
    if name.startswith("spiral"):
        return "spiral"
    if "views" in name:
        return "views"
    if "additive" in name:
        return "additive uniform"
    if dims and max(dims[:2]) >= 25:
        return "high dimension"
    if name.startswith(("multinormal", "1v1-normal")):
        return "Gaussian"
    return "transformed Gaussian"


def _order(frame: pd.DataFrame) -> list[str]:
    """Estimator labels in catalogue order, then the classical baselines."""
    catalogue = [*applicable_estimators(False), *applicable_estimators(True), *CLASSICAL]
    rank = {name: i for i, name in enumerate(catalogue)}
    labels = frame["objective_label"].unique()
    return sorted(labels, key=lambda label: (rank.get(label.split("(")[0], len(rank)), label))


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per (task, estimator): ``true_mi``, the mean ``value`` and ``bias`` over the seeds whose
    estimate is finite, the sd of their bias (NaN for one), ``seeds``, ``failed`` (seeds whose
    training failed or gave a non-finite value), ``within`` (``|mean bias| <= TOLERANCE`` and
    no seed failed), ``group`` (``task_group``) and ``is_bound``."""
    frame = frame.assign(failed=~np.isfinite(frame["value"].astype(float)))
    grouped = frame.groupby(["task", "objective_label"], sort=False)
    out = grouped.agg(
        true_mi=("true_mi", "first"),
        value=("value", "mean"),
        bias=("bias", "mean"),
        sd=("bias", "std"),
        seeds=("seed", "size"),
        failed=("failed", "sum"),
        is_bound=("is_bound", "max"),
        batch_size=("batch_size", "max"),
    ).reset_index()
    out["within"] = (out["bias"].abs() <= TOLERANCE) & (out["failed"] == 0)
    out["group"] = out["task"].map(task_group)
    return out


def _bias_table(frame: pd.DataFrame, cells: pd.DataFrame) -> pd.DataFrame:
    """Rows: tasks; columns: the true MI, then ``mean ± sd`` of each estimator's bias over the
    seeds with a finite estimate, ``(k failed)`` added where k seeds failed, ``—`` where the
    estimator does not apply."""
    tasks = list(dict.fromkeys(frame["task"]))
    finite = frame[np.isfinite(frame["value"].astype(float))]
    table = pm_table(finite, "task", "objective_label", "bias").reindex(tasks)
    for row in cells[cells["failed"] > 0].itertuples():
        shown = table.at[row.task, row.objective_label] if row.objective_label in table else None
        failed = f"({row.failed} of {row.seeds} failed)"
        shown = failed if pd.isna(shown) else f"{shown} {failed}"
        table.loc[row.task, row.objective_label] = shown
    table = table[[c for c in _order(frame) if c in table.columns]].fillna("—")
    truth = frame.groupby("task")["true_mi"].first()
    table.insert(0, "true MI", [f"{truth[t]:.3f}" for t in tasks])
    return table


def _counts(cells: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    rows = []
    for label in order:
        part = cells[cells["objective_label"] == label]
        missed = part.loc[~part["within"], "task"]
        rows.append(
            {
                "estimator": label,
                f"within {TOLERANCE:g} nats": f"{int(part['within'].sum())} of {len(part)}",
                "median abs(bias)": f"{part['bias'].abs().median():.3f}",
                "missed": ", ".join(missed) or "none",
            }
        )
    return pd.DataFrame(rows).set_index("estimator")


def findings(cells: pd.DataFrame) -> list[str]:
    """Findings bullets read from ``summary``'s cells: the best estimators, where they fail
    by task group, the InfoNCE-type cap, bounds above the true MI, and the classical
    baselines; every number comes from the cells."""
    lines = []
    neural = cells[~cells["objective_label"].isin(CLASSICAL)]
    counts = cells.groupby("objective_label")["within"].agg(["sum", "size"])
    best = counts["sum"].max()
    leaders = sorted(counts.index[counts["sum"] == best])
    sizes = "/".join(sorted({str(int(counts.loc[name, "size"])) for name in leaders}))
    everywhere = sorted(counts.index[(counts["sum"] == counts["size"]) & (counts["size"] > 1)])
    lines.append(
        f"- Most tasks within {TOLERANCE:g} nats: {', '.join(leaders)} ({int(best)} of "
        f"{sizes}). "
        + (
            f"Within it on every task it ran: {', '.join(everywhere)}."
            if everywhere
            else "No estimator is within it on every task it ran."
        )
    )
    failed = cells[cells["failed"] > 0]
    if not failed.empty:
        shown = ", ".join(
            f"{r.objective_label} on {r.task} ({r.failed} of {r.seeds})"
            for r in failed.itertuples()
        )
        lines.append(
            f"- Failed runs (training diverged, or a non-finite estimate): {shown}; such a "
            "cell does not count as within the tolerance."
        )
    for group, part in neural.groupby("group", sort=False):
        share = part["within"].mean()
        if share >= 0.75:
            continue
        finite = part[np.isfinite(part["bias"])]
        worst = finite.loc[finite["bias"].abs().idxmax()] if not finite.empty else None
        worst_text = (
            f", worst {worst['objective_label']} on {worst['task']} ({worst['bias']:+.3f})"
            if worst is not None
            else ""
        )
        lines.append(
            f"- {group} ({', '.join(sorted(part['task'].unique()))}): the neural estimators are "
            f"within {TOLERANCE:g} nats on {share:.0%} of (task, estimator) cells; median bias "
            f"{finite['bias'].median():+.3f} nats{worst_text}. {_WHY.get(group, '')}".rstrip()
        )
    if not neural.empty and neural["batch_size"].notna().any():
        k = int(neural["batch_size"].max())
        high = cells["true_mi"].max()
        lines.append(
            f"- The cap log K of InfoNCE-type bounds: the largest true MI here is {high:.2f} "
            f"nats, below log K = log {k} = {math.log(k):.2f}, so the cap does not bind on "
            "these tasks; their shortfall is the critic's and the finite sample's (a task above "
            "log K would be capped there whatever the critic)."
        )
    over = neural[neural["is_bound"].astype(bool) & (neural["bias"] > 0)]
    if not over.empty:
        se = over["sd"] / np.sqrt(over["seeds"])
        beyond = over[over["bias"] > 2 * se.fillna(0)]
        if not beyond.empty:
            shown = ", ".join(
                f"{r.objective_label} on {r.task} ({r.bias:+.3f})"
                for r in beyond.nlargest(4, "bias").itertuples()
            )
            lines.append(
                f"- {len(beyond)} (task, bound) cells lie above the true MI by more than two "
                f"standard errors over seeds, e.g. {shown}: a held-out lower bound may exceed "
                "the truth by its read noise on the finite test rows (1,500 at n = 5,000), and "
                "early stopping picks the checkpoint with the best validation read."
            )
    for name in CLASSICAL:
        part = cells[cells["objective_label"] == name]
        if part.empty:
            continue
        gauss = part[part["group"] == "Gaussian"]["bias"].abs().max()
        bad = part.loc[part["bias"].abs().nlargest(3).index]
        bad = bad[bad["bias"].abs() > TOLERANCE]
        worst = ", ".join(f"{r.task} ({r.bias:+.3f})" for r in bad.itertuples()) or "none"
        lines.append(
            f"- {name.upper()}: |bias| <= {gauss:.3f} on the Gaussian tasks; beyond "
            f"{TOLERANCE:g} nats worst on {worst}. {_CLASSICAL_WHY[name]}"
        )
    return lines


_WHY = {
    "heavy tails": "Student-t samples have rare huge values: the critic sees few of them in "
    "training, a held-out batch's value is dominated by them, and the MI is carried by the "
    "shared scale rather than by correlation.",
    "spiral": "The spiral rotates x by an angle that grows with |x|^2: the dependence is "
    "global and oscillating, which a small critic trained on 2,800 rows resolves poorly.",
    "high dimension": "With 25-50 coordinates per side the 2,800 training rows are few for the "
    "critic; the estimates fall short and early stopping halts a slow climb.",
    "additive uniform": "The density ratio has sharp edges (uniform noise), which a smooth "
    "critic approximates from below.",
}
_CLASSICAL_WHY = {
    "cca": "It is the MI of the Gaussian with the sample's covariance: exact for Gaussians, "
    "blind to dependence the covariance does not show (spiral, asinh of Student), inflated by "
    "outliers (Student, nu = 1).",
    "ksg": "Nearest-neighbour counts are biased low at high MI and in many dimensions, and are "
    "not invariant to nonlinear monotone maps.",
}


BIAS_RANGE = (-1.5, 1.0)
"""The figure's bias axis (nats); estimates beyond it are drawn at its edge with their value."""


def figure(cells: pd.DataFrame, title: str) -> plt.Figure:
    """(a) the mean estimate against the true MI per task and estimator, the diagonal and the
    +-TOLERANCE band; (b) the bias per task (mean +- sd over seeds), one marker per estimator.
    Values beyond ``BIAS_RANGE`` of the truth sit at the edge, labelled with their value."""
    order = _order(cells)
    tasks = list(dict.fromkeys(cells["task"]))
    lo, hi = BIAS_RANGE
    fig, (a, b) = plt.subplots(
        1, 2, figsize=(16, max(5.0, 0.32 * len(tasks) + 1.5)), width_ratios=(1, 1.4)
    )
    shown = cells.assign(
        value=cells["value"].clip(cells["true_mi"] + lo, cells["true_mi"] + hi),
        bias=cells["bias"].clip(lo, hi),
    )
    sns.scatterplot(data=shown, x="true_mi", y="value", hue="objective_label", hue_order=order,
                    style="objective_label", style_order=order, ax=a, s=40)  # fmt: skip
    top = float(cells["true_mi"].max()) + hi
    grid = np.array([0.0, top])
    a.plot(grid, grid, "k-", lw=1, label="estimate = true MI")
    a.fill_between(grid, grid - TOLERANCE, grid + TOLERANCE, color="0.85", zorder=0,
                   label=f"within {TOLERANCE:g} nats")  # fmt: skip
    a.set_xlim(0, float(cells["true_mi"].max()) * 1.05)
    a.set_ylim(lo, top)
    a.set_xlabel("true MI (nats)")
    a.set_ylabel("estimate, mean over seeds (nats)")
    a.set_title("(a) estimate against true MI")
    position = {t: i for i, t in enumerate(tasks)}
    markers = "osD^v<>pX*hP"
    for i, label in enumerate(order):
        part = shown[shown["objective_label"] == label]
        y = part["task"].map(position) + (i - (len(order) - 1) / 2) * 0.6 / max(len(order), 1)
        b.errorbar(part["bias"], y, xerr=part["sd"].fillna(0).clip(upper=hi - lo),
                   fmt=markers[i % len(markers)], ms=4, lw=0.8, label=label)  # fmt: skip
        original = cells.loc[part.index, "bias"]
        for x, yy, value in zip(part["bias"], y, original, strict=True):
            if np.isfinite(value) and not lo < value < hi:
                b.annotate(f"{value:+.3g}", (x, yy), fontsize=6, ha="left" if x < 0 else "right")
    b.axvspan(-TOLERANCE, TOLERANCE, color="0.85", zorder=0)
    b.axvline(0, color="k", lw=0.8)
    b.set_xlim(lo - 0.05, hi + 0.05)
    b.set_yticks(range(len(tasks)))
    b.set_yticklabels(tasks, fontsize=8)
    b.invert_yaxis()
    b.set_xlabel("bias = estimate - true MI (nats), mean ± sd over seeds")
    b.set_title("(b) bias per task")
    a.legend(fontsize=7, loc="upper left")
    b.legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _median_step(neural: pd.DataFrame) -> str:
    steps = neural["checkpoint_step"].dropna() if "checkpoint_step" in neural else []
    return f"{float(np.median(steps)):g}" if len(steps) else "none"


def report(frame: pd.DataFrame, ctx: Context) -> list[Path]:
    """Write ``known_mi.md`` (header, set-up, the bias table, the counts within
    ``TOLERANCE``, findings) and ``known_mi.png``."""
    cells = summary(frame)
    order = _order(frame)
    seeds = int(frame.groupby("setting_key").size().max())
    n = sorted(frame["n"].unique())
    neural = frame[~frame["objective"].isin(CLASSICAL)]
    options = sorted({str(o) for o in neural["options"].map(dict)} - {"{}"})
    first = neural.iloc[0]["settings"] if not neural.empty else {}
    split = (
        f"{first.get('n_train')} / {first.get('n_validation')} / {first.get('n_test')} train / "
        f"validation / test rows, batch size {first.get('batch_size')}, at most "
        f"{first.get('max_steps')} steps with a checkpoint every {first.get('eval_every')} and "
        f"patience {first.get('patience')}"
        if first
        else "no neural estimator ran"
    )
    tasks = frame.drop_duplicates("task")
    lines = [
        ctx.header("Known-MI benchmark: every estimator on every task", frame),
        f"Tasks: {int((tasks['views'].isna()).sum())} pair task(s) and "
        f"{int(tasks['views'].notna().sum())} view task(s) of `mibounds.tasks` (docs/tasks.md; "
        "names as in Czyż et al. 2023), true MI exact; on a view task the one-vs-rest MI "
        f"I(x_a; X_rest). n = {', '.join(map(str, n))} samples per seed, drawn from the seed's "
        f"own stream (every estimator of a seed reads the same sample); {seeds} seed(s).",
        "",
        f"Neural estimators: `mibounds.estimate` with its defaults{' and ' + ', '.join(options) if options else ''} "  # noqa: E501
        f"({split}; the test rows' value of the checkpoint with the best validation value, "
        "`mibounds.estimation`). Pair tasks: every pairwise estimator `estimate` takes (EqCo at "
        "alpha = 512, as its paper); view tasks: the poly-view one-vs-rest estimators. CCA "
        "(Gaussian MI of the sample covariance) and KSG (k = 3) read the whole sample, no "
        "split (docs/tasks.md#classical-baselines).",
        "",
        f"Sized for a 2-core CPU with `--jobs 2` (its run time above): {seeds} "
        "seed(s), and `estimate`'s early stopping ends most trainings well before its step "
        f"cap (median chosen checkpoint: step {_median_step(neural)}). A run whose training "
        "fails (a non-finite estimate) is recorded with its reason and counts as a miss.",
        "",
        f"## Bias: estimate - true MI (nats), mean ± sd over {seeds} seed(s)",
        "",
        markdown_table(_bias_table(frame, cells), "task"),
        "",
        f"## Tasks within {TOLERANCE:g} nats (|mean bias| <= {TOLERANCE:g})",
        "",
        markdown_table(_counts(cells, order)),
        "",
        "## Findings",
        "",
        *findings(cells),
        "",
    ]
    table = write_text(ctx.tables / "known_mi.md", "\n".join(lines))
    title = f"Known-MI benchmark, n = {', '.join(map(str, n))}, {seeds} seed(s)"
    return [table, plots.save(figure(cells, title), ctx.figures / "known_mi.png")]
