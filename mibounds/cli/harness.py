"""``mibounds sweep``, ``reproduce``, ``plot`` and ``analytic``: the Gaussian harness's commands.

The help lists the catalogue's objectives, the critics and the reproductions (so it cannot
drift from them); matplotlib and seaborn are imported only by the commands that plot.
"""

from __future__ import annotations

import argparse
import math
import textwrap
from pathlib import Path

import mibounds.vision.sweeps  # noqa: F401 (registers the "vision" kind of sweeps)
from mibounds.cli.errors import one_line_errors
from mibounds.cli.options import (
    add_common,
    apply_common,
    catalogue_params_help,
    check_writable,
)

__all__ = ["register"]

_SWEEP_HELP = """\
Train critics over a grid of settings x seeds and append one JSON record per run to a results
file. Re-running the same command skips the runs already there, so a killed sweep (Ctrl-C, a
crash, a full disk) resumes where it stopped; a results file of a different grid is refused.

CONFIG is a TOML file:

  name = "my-sweep"
  seeds = 4                           # a count (0..3) or a list of seeds
  [run]                               # fixed for every setting
  d = 1
  rho = 0.9                           # or mi = 4.0 (pairwise MI, nats), or mi_levels = [...]
  critic = {name = "separable", hidden_dim = 64}
  steps = 500
  [grid]                              # every combination is a setting ([[grid]]: a union)
  objective = ["multicrop", "arithmetic", {name = "arithmetic", negatives = "all_views"}]
  m = [2, 4, 8]                       # views per sample (poly-view objectives only)
  [quick]                             # optional overrides for --quick
  seeds = 2
  run = {steps = 100}

Keys of [run] and [grid]: objective, critic, k, d, m, rho, mi, mi_levels, steps, lr,
eval_batches, curve_every, objective_params, critic_params, source, source_params,
eval_infonce_k (batch sizes at which every trained critic's InfoNCE is also read, held out),
tag (a label a report selects settings by). A [[grid]] table may set its own seeds.
A finite dataset: source = {name = "gaussian_finite", n = 4096} (n pairs drawn once, shuffled
epochs, n a multiple of K); per-item objectives (sogclr) need one.
A known-MI task (mibounds.tasks, docs/tasks.md) instead of rho / mi / mi_levels:
source = {name = "task", task = "student-identity-5-5-2"} (or "task_finite" with n); d and m
default to the task's, and the records carry its true MI.
Your own samples: source = {name = "file", path = "data.npz", x = "x", y = "y"} (.npz, .npy,
.csv, .parquet; held_out = 0.3 of the rows per seed, standardised on the rest); no true MI.
NAMES
The papers' grids ship with the package (mibounds/reproductions/grids/).
"""

_SHARD_HELP = (
    "run only part i of n (0 <= i < n) of the grid, e.g. in a cluster array job "
    "(--shard $SLURM_ARRAY_TASK_ID/4); part i writes results-shard{i}of{n}.jsonl, and the "
    "parts merge by concatenation (cat results-shard*.jsonl > results.jsonl) or by passing "
    "the directory to `mibounds plot`"
)

_RESUMABLE = one_line_errors(
    lambda args: args.command,
    "Every finished run is saved; run the same command again to resume.",
)


def _add_executor(p: argparse.ArgumentParser) -> None:
    """Where the groups of runs train: local processes, a Dask cluster or SLURM job arrays."""
    g = p.add_argument_group("distributed engine (mibounds.harness.executors)")
    g.add_argument(
        "--executor",
        choices=("process", "dask", "slurm"),
        default="process",
        help="process: --jobs local processes; dask: a Dask cluster (--scheduler, or a local "
        "one of --jobs workers; extra [dask]); slurm: submitit job arrays (extra [slurm]) "
        "(default process)",
    )
    g.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler, tcp://host:8786")
    g.add_argument("--partition", help="SLURM partition (--executor slurm)")
    g.add_argument("--time", type=int, metavar="MIN", help="minutes per SLURM array task")
    g.add_argument("--mem", type=float, metavar="GB", help="memory per SLURM array task")
    g.add_argument(
        "--runs-per-task", type=int, metavar="N", help="runs packed into each SLURM array task"
    )


def _executor_options(args: argparse.Namespace) -> dict:
    """``run_sweep``'s executor keywords from the options, checked."""
    from mibounds.harness.executors import SlurmOptions

    given = {
        k: v
        for k, v in {
            "partition": args.partition,
            "time": args.time,
            "mem": args.mem,
            "runs_per_task": args.runs_per_task,
        }.items()
        if v is not None
    }
    if given and args.executor != "slurm":
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
        raise ValueError(f"{flags} {'needs' if len(given) == 1 else 'need'} --executor slurm")
    slurm = SlurmOptions(**given) if args.executor == "slurm" else None
    return {"executor": args.executor, "scheduler": args.scheduler, "slurm": slurm}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep``, ``reproduce``, ``plot`` and ``analytic`` to the ``mibounds`` command."""
    from mibounds.catalogue import CATALOGUE
    from mibounds.critics import CRITICS
    from mibounds.harness.data import SOURCES
    from mibounds.reproductions import REPRODUCTIONS

    fmt = argparse.RawDescriptionHelpFormatter
    trainable = [n for n, e in CATALOGUE.items() if e.takes != "embeddings"]
    catalogue = (
        "Objectives (the catalogue, mibounds.catalogue; parameters as a table, e.g. "
        '{name = "eqco", alpha = 512}):\n'
        + catalogue_params_help(trainable)
        + "\n"
        + textwrap.fill(f"Critics: {' '.join(CRITICS)}. Data sources: {' '.join(SOURCES)}.", 92)
    )
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of trainings from a TOML config",
        description=_SWEEP_HELP.replace("NAMES", catalogue),
        formatter_class=fmt,
    )
    p.add_argument("config", type=Path, metavar="CONFIG", help="the sweep's TOML file")
    p.add_argument(
        "--results",
        type=Path,
        metavar="FILE",
        help="the results file itself (overrides --out and the shard's file name)",
    )
    p.add_argument("--shard", metavar="i/n", help=_SHARD_HELP)
    p.add_argument("--quick", action="store_true", help="use the config's [quick] overrides")
    p.add_argument("--plot", action="store_true", help="also write a figure of the results")
    p.add_argument(
        "--dry-run", action="store_true", help="list the settings and pending runs; train nothing"
    )
    add_common(
        p,
        out="directory of the results file (default runs/<name>, or runs/<name>-quick)",
        jobs="train N settings at once",
    )
    _add_executor(p)
    p.set_defaults(func=_RESUMABLE(_sweep))

    listing = "\n".join(f"  {n:<18} {r.summary}" for n, r in REPRODUCTIONS.items())
    p = subparsers.add_parser(
        "reproduce",
        help="regenerate a paper's figure or table",
        formatter_class=fmt,
        description="Run one of the papers' experiments (its grid ships with the package) and "
        "write its figures and\nmarkdown table, with the command and run time inside. Full runs "
        "write figures/ and paper_tables/\n(results in runs/NAME/, resumable); --quick runs a "
        "small real version into runs/NAME-quick/.\n\nNAME is one of:\n"
        f"{listing}\n",
    )
    p.add_argument("name", choices=list(REPRODUCTIONS), metavar="NAME", help="which reproduction")
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer seeds and steps (the grid's [quick] table); minutes on a laptop CPU",
    )
    p.add_argument(
        "--config",
        metavar="PATH",
        help="another grid to report on: a TOML path, or a packaged grid's name such as "
        "eqco-toy-paper (default: the reproduction's own)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="list the runs it would train; train nothing"
    )
    add_common(
        p,
        out="write results, figures and table to DIR (default: runs/NAME-quick with --quick; "
        "otherwise figures/ and paper_tables/)",
        jobs="train N settings at once",
    )
    _add_executor(p)
    p.set_defaults(func=_RESUMABLE(_reproduce))

    p = subparsers.add_parser(
        "plot",
        help="plot a results file (mean +- sd bands over seeds)",
        description="Plot sweep results: the estimate with the true MI and log K, the gap and "
        "the relative MI against the first grid axis that varies, and the training curves "
        "(or Poole's staircase). Several files or directories are read as one table.",
    )
    p.add_argument(
        "results",
        type=Path,
        nargs="+",
        metavar="RESULTS",
        help="results .jsonl files, or directories of them (shards)",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="figure path; the suffix sets the format (default: beside the first input, .png)",
    )
    p.add_argument(
        "--debug", action="store_true", help="show a traceback on errors instead of one line"
    )
    p.set_defaults(func=one_line_errors(lambda args: args.command)(_plot))

    from mibounds.harness import analytic

    p = subparsers.add_parser(
        "analytic",
        help="every estimator at the analytic optimal critic on the d = 20 staircase (no training)",
        description=analytic.__doc__,
        formatter_class=fmt,
    )
    p.add_argument("-k", type=int, default=128, help="batch size K (default 128)")
    p.add_argument("--batches", type=int, default=20, help="batches per MI level (default 20)")
    p.add_argument("--alpha", type=float, default=512.0, help="EqCo's alpha (default 512)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--debug", action="store_true", help="show a traceback on errors instead of one line"
    )
    p.set_defaults(func=one_line_errors(lambda args: args.command)(_analytic))


def _print_pending(sweep, todo, results: Path) -> None:
    print(
        f"{sweep.name}: {len(sweep.settings)} settings, {sweep.n_runs} runs, "
        f"{sum(len(s) for _, s in todo)} pending, results {results}"
    )
    for setting, seeds in todo:
        print(f"  {setting.label()}  seeds {list(seeds)}")


def _pending(sweep, results: Path) -> list:
    from mibounds.harness.results import check_grid, read_records
    from mibounds.harness.sweep import pending

    if results.is_dir():
        raise ValueError(f"results file {str(results)!r} is a directory")
    done: set[str] = set()
    if results.exists():
        records = read_records(results)
        check_grid(records, sweep.grid_hash, results)
        done = {r.get("run_key") for r in records}
    return pending(sweep, done)


def _sweep(args: argparse.Namespace) -> int:
    from mibounds.harness.config import load_sweep, parse_shard
    from mibounds.harness.sweep import results_path, run_sweep

    sweep = load_sweep(args.config, quick=args.quick)
    if args.shard:
        sweep = sweep.shard(*parse_shard(args.shard))
    args.out = args.out or Path("runs") / (sweep.name + ("-quick" if args.quick else ""))
    apply_common(args)
    engine = _executor_options(args)
    results = args.results or results_path(args.out, sweep)
    todo = _pending(sweep, results)  # refuses a results file of another grid, before training
    if args.dry_run:
        _print_pending(sweep, todo, results)
        return 0
    frame = run_sweep(
        sweep,
        results,
        device=args.device,
        progress=not args.no_progress,
        jobs=args.jobs,
        threads=args.threads,
        **engine,
    )
    print(f"{len(frame)} runs in {results}")
    if args.plot:
        from mibounds import plots

        path = plots.save(
            plots.results_figure(frame, title=sweep.name), results.with_suffix(".png")
        )
        print(f"figure: {path}")
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from mibounds.reproductions import load_grid, outputs, reproduce

    sweep = load_grid(args.name, args.config, quick=args.quick)
    results, figures, tables = outputs(sweep, args.out, quick=args.quick)
    apply_common(args)
    engine = _executor_options(args)
    for directory in {results.parent, figures, tables}:
        check_writable(directory)
    todo = _pending(sweep, results)
    if args.dry_run:
        _print_pending(sweep, todo, results)
        return 0
    paths = reproduce(
        args.name,
        quick=args.quick,
        out=args.out,
        config=args.config,
        device=args.device,
        progress=not args.no_progress,
        jobs=args.jobs,
        threads=args.threads,
        **engine,
    )
    print("wrote:\n" + "\n".join(f"  {p}" for p in paths))
    return 0


def _plot(args: argparse.Namespace) -> int:
    from mibounds import plots
    from mibounds.harness.results import load_results

    frame = load_results(args.results)
    if frame.empty:
        raise ValueError(f"no runs in {[str(p) for p in args.results]}")
    first = args.results[0]
    out = args.out or (first / "results.png" if first.is_dir() else first.with_suffix(".png"))
    title = ", ".join(sorted(map(str, frame["sweep"].unique()))) if "sweep" in frame else ""
    print(f"figure: {plots.save(plots.results_figure(frame, title=title), out)}")
    return 0


def _analytic(args: argparse.Namespace) -> int:
    from mibounds.harness.analytic import analytic_table, format_table

    table = analytic_table(k=args.k, batches=args.batches, eqco_alpha=args.alpha, seed=args.seed)
    print(
        f"Estimators at the optimal critic log p(y|x)/p(y), d = 20 Gaussian pairs, K = {args.k}, "
        f"{args.batches} batches per level (nats, mean ± sd). log K = {math.log(args.k):.2f}."
    )
    print(format_table(table))
    return 0
