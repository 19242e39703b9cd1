"""What every reproduction's report shares: markdown tables of mean +- sd over seeds, the
run-time header read from the records, the bound-violation test and file writing."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mibounds.harness.config import Sweep

__all__ = [
    "Context",
    "bound_violations",
    "duration",
    "excess_over",
    "markdown_table",
    "mean_sd",
    "params_text",
    "pm_table",
    "shown",
    "shown_grid",
    "violations_line",
    "write_text",
]


def markdown_table(frame: pd.DataFrame, index_name: str | None = None) -> str:
    """A pipe table of ``frame`` (index as the first column), cells as they are."""
    header = [index_name or frame.index.name or "", *map(str, frame.columns)]
    rows = [[str(i), *map(str, row)] for i, row in zip(frame.index, frame.to_numpy(), strict=True)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def mean_sd(values: pd.Series, digits: int = 3) -> str:
    """``mean ± sd`` over seeds with ``digits`` decimals (sd omitted for one seed)."""
    values = values.astype(float)
    mean = round(values.mean(), digits) + 0.0  # + 0.0: no "-0.000"
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {values.std():.{digits}f}"


def pm_table(frame: pd.DataFrame, index: str | list[str], columns: str, value: str) -> pd.DataFrame:
    """``mean ± sd`` of ``value`` over seeds, rows ``index``, columns ``columns``."""
    cells = frame.groupby([*np.atleast_1d(index), columns], sort=False)[value].apply(mean_sd)
    table = cells.unstack(columns)
    return table[sorted(table.columns)]


def params_text(params: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in params.items()) or "defaults"


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


def violations_line(violations: pd.DataFrame, none: str, some: str) -> str:
    """A findings bullet for ``bound_violations``' result: ``none`` when it is empty, else the
    count, ``some`` (what they are) and each offender's excess in nats."""
    if violations.empty:
        return f"- {none}"
    offenders = ", ".join(f"{r.objective} (+{r.excess:.3f})" for r in violations.itertuples())
    return f"- {len(violations)} {some} by more than 3 standard errors: {offenders}"


def excess_over(frame: pd.DataFrame, truth: str = "true_mi") -> pd.DataFrame:
    """Per setting: the seed-mean estimate, its excess over the column ``truth`` (nats) and the
    excess's standard error, a row each with ``setting_key``, ``objective`` (the label), ``k``,
    ``m``, ``rho``, ``estimate``, ``excess``, ``se``.

    The standard error: for a fixed critic each held-out batch's estimate is an independent
    draw, so the mean over R seeds x E batches has standard error ``sqrt(mean_r sd_r^2 / (R E))``
    (the seeds' own spread is not counted: a bound must hold for every critic).
    """
    rows = []
    for key, group in frame.groupby("setting_key", sort=False):
        r, e = len(group), float(group["eval_batches"].iloc[0])
        first = group.iloc[0]
        estimate = float(group["estimate_mean"].mean())
        rows.append(
            {
                "setting_key": key,
                "objective": first["objective_label"],
                "k": first["k"],
                "m": first.get("m"),
                "rho": first.get("rho"),
                "estimate": estimate,
                "excess": estimate - float(first[truth]),
                "se": math.sqrt(float((group["estimate_sd"] ** 2).mean()) / (r * e)),
            }
        )
    columns = ["setting_key", "objective", "k", "m", "rho", "estimate", "excess", "se"]
    return pd.DataFrame(rows, columns=columns)


def bound_violations(frame: pd.DataFrame, sigmas: float = 3.0) -> pd.DataFrame:
    """Settings whose estimate exceeds the true MI it bounds by more than ``sigmas`` standard
    errors (``excess_over``), among runs that are bounds: ``setting_key``, ``objective``,
    ``excess``, ``se``."""
    excess = excess_over(frame[frame["is_bound"].astype(bool)])
    over = excess[excess["excess"] > sigmas * excess["se"]]
    return over[["setting_key", "objective", "excess", "se"]].reset_index(drop=True)


@dataclass(frozen=True)
class Context:
    """What a report needs besides the results: where to write and how it was made."""

    name: str
    quick: bool
    command: str
    sweep: Sweep
    config: Path
    results: Path
    figures: Path
    tables: Path
    started: float

    def header(self, title: str, frame: pd.DataFrame) -> str:
        """Title, the command, and the run time and environment read from the records."""
        this_call = time.perf_counter() - self.started  # reports are written last
        groups = frame.drop_duplicates(["setting_key", "finished_at", "pid"])
        compute = float(groups["wall_time_s"].sum())
        ends = pd.to_datetime(groups["finished_at"])
        starts = ends - pd.to_timedelta(groups["wall_time_s"], unit="s")
        span = (ends.max() - starts.min()).total_seconds()

        def values(column: str) -> str:
            return ", ".join(sorted(map(str, frame[column].unique())))

        cores = f"{values('cpu_count')} CPU cores, " if "cpu_count" in frame else ""

        return "\n".join(
            [
                f"# {title}",
                "",
                f"Regenerate: `{self.command}` (grid: `{shown_grid(self.config)}`"
                f"{', the [quick] variant' if self.quick else ''}; results in "
                f"`{shown(self.results)}`, {len(frame)} runs).",
                "",
                f"Run time: {duration(span)} wall clock from the first run's start to the last "
                f"run's end ({duration(compute)} of training summed over the batched seed "
                f"groups; {values('jobs')} worker process(es) with {values('threads')} torch "
                f"thread(s) each, device {values('device')}, torch {values('torch_version')}, "
                f"{cores}code {values('git_commit')}). This invocation: "
                f"{duration(this_call)}.",
                "",
            ]
        )


def shown_grid(path: Path) -> str:
    """A packaged grid as ``mibounds/reproductions/grids/NAME.toml`` wherever the package is
    installed; any other config as ``shown``."""
    package = Path(__file__).resolve().parent.parent.parent
    try:
        return str(Path(path).resolve().relative_to(package))
    except ValueError:
        return shown(path)


def shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
