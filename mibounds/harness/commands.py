"""``mibounds sweep``, ``mibounds reproduce`` and ``mibounds plot``: the harness's subcommands.

The help lists the registered objectives, critics and reproductions (so it cannot drift from
them); matplotlib and seaborn are imported only by the commands that plot.
"""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path

from mibounds._command import one_line_errors

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
  objective = ["multicrop", "arithmetic", {name = "eqco", alpha = 512}]
  m = [2, 4, 8]                       # views per sample (poly-view objectives only)
  [quick]                             # optional overrides for --quick
  seeds = 2
  run = {steps = 100}

Keys of [run] and [grid]: objective, critic, k, d, m, rho, mi, mi_levels, steps, lr,
eval_batches, curve_every, objective_params, critic_params, source, source_params,
eval_infonce_k (batch sizes at which every trained critic's InfoNCE is also read, held out).
A finite dataset: source = {name = "gaussian_finite", n = 4096} (n pairs drawn once, shuffled
epochs, n a multiple of K); per-item objectives (sogclr) need one.
NAMES
The papers' grids ship with the package (mibounds/reproductions/grids/).
"""

_SHARD_HELP = (
    "run only part i of n (0 <= i < n) of the grid, e.g. in a cluster array job "
    "(--shard $SLURM_ARRAY_TASK_ID/4); part i writes results-shard{i}of{n}.jsonl, and the "
    "parts merge by concatenation (cat results-shard*.jsonl > results.jsonl) or by passing "
    "the directory to `mibounds plot`"
)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--device", default="cpu", help="torch device to train on, e.g. cpu or cuda (default cpu)"
    )
    p.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="train N settings at once in N worker processes; results are written by this "
        "process only (default 1)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        metavar="N",
        help="torch threads per process (default 1: the per-step tensors here are small, and "
        "one thread per process avoids contention on shared machines; use --jobs for more cores)",
    )
    p.add_argument(
        "--no-progress", action="store_true", help="hide the progress bars (default: shown)"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sweep``, ``reproduce`` and ``plot`` to the ``mibounds`` command line."""
    from mibounds.critics import CRITICS
    from mibounds.harness.data import SOURCES
    from mibounds.harness.objectives import OBJECTIVES
    from mibounds.reproductions import REPRODUCTIONS

    fmt = argparse.RawDescriptionHelpFormatter
    catalogue = (
        f"Objectives for pairs: {' '.join(n for n, o in OBJECTIVES.items() if o.data == 'pairs')}. "
        f"For M views: {' '.join(n for n, o in OBJECTIVES.items() if o.data == 'views')}. "
        f"Critics: {' '.join(CRITICS)}. Data sources: {' '.join(SOURCES)}."
    )
    p = subparsers.add_parser(
        "sweep",
        help="run a grid of trainings from a TOML config",
        description=_SWEEP_HELP.replace("NAMES", textwrap.fill(catalogue, width=92)),
        formatter_class=fmt,
    )
    p.add_argument("config", type=Path, metavar="CONFIG", help="the sweep's TOML file")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="directory of the results file (default runs/<name>, or runs/<name>-quick)",
    )
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
    _common(p)
    p.set_defaults(func=_RESUMABLE(_sweep))

    listing = "\n".join(f"  {n:<18} {r.summary}" for n, r in REPRODUCTIONS.items())
    p = subparsers.add_parser(
        "reproduce",
        help="regenerate a paper's Gaussian figure or table",
        formatter_class=fmt,
        description="Run one of the papers' Gaussian experiments (its grid in "
        "shipped with the package) and write its\nfigures and markdown table, with the command and "
        "run time inside. Full runs write figures/ and\npaper_tables/ (results in runs/NAME/, "
        "resumable); --quick runs a small real version into\nruns/NAME-quick/.\n\nNAME is one "
        f"of:\n{listing}\n",
    )
    p.add_argument("name", choices=list(REPRODUCTIONS), metavar="NAME", help="which reproduction")
    p.add_argument(
        "--quick",
        action="store_true",
        help="fewer seeds and steps (the config's [quick] table); minutes on a laptop CPU",
    )
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write results, figures and table to DIR (default: runs/NAME-quick with --quick; "
        "otherwise figures/ and paper_tables/)",
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="PATH",
        help="another grid to report on: a TOML path, or a packaged grid's name such as "
        "eqco-toy-paper (default: the reproduction's own)",
    )
    _common(p)
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
    p.set_defaults(func=one_line_errors(lambda args: args.command)(_plot))


_RESUMABLE = one_line_errors(
    lambda args: args.command,
    "Every finished run is saved; run the same command again to resume.",
)


def _set_threads(args: argparse.Namespace) -> None:
    import torch

    from mibounds._checks import check_at_least

    check_at_least(args.threads, 1, "--threads")
    check_at_least(args.jobs, 1, "--jobs")
    torch.set_num_threads(args.threads)


def _sweep(args: argparse.Namespace) -> int:
    from mibounds.harness.config import load_sweep, parse_shard
    from mibounds.harness.results import read_records
    from mibounds.harness.sweep import pending, results_path, run_sweep

    sweep = load_sweep(args.config, quick=args.quick)
    if args.shard:
        sweep = sweep.shard(*parse_shard(args.shard))
    out = args.out or Path("runs") / (sweep.name + ("-quick" if args.quick else ""))
    results = args.results or results_path(out, sweep)
    _set_threads(args)
    if args.dry_run:
        done = {r.get("run_key") for r in read_records(results)} if results.exists() else set()
        todo = pending(sweep, done)
        print(
            f"{sweep.name}: {len(sweep.settings)} settings, {sweep.n_runs} runs, "
            f"{sum(len(s) for _, s in todo)} pending, results {results}"
        )
        for setting, seeds in todo:
            print(
                f"  {setting.objective_label:<28} k={setting.k} m={setting.m} "
                f"rho={setting.rho} mi={setting.mi} steps={setting.steps}  seeds {list(seeds)}"
            )
        return 0
    frame = run_sweep(
        sweep,
        results,
        device=args.device,
        progress=not args.no_progress,
        jobs=args.jobs,
        threads=args.threads,
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
    from mibounds.reproductions import reproduce

    _set_threads(args)
    command = " ".join(["mibounds", "reproduce", args.name] + (["--quick"] if args.quick else []))
    if args.config:
        command += f" --config {args.config}"
    paths = reproduce(
        args.name,
        quick=args.quick,
        out=args.out,
        config=args.config,
        device=args.device,
        progress=not args.no_progress,
        jobs=args.jobs,
        threads=args.threads,
        command=command,
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
