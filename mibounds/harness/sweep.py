"""Run a sweep so that nothing is lost: skip what is done, append each finished run at once.

``run_sweep`` reads the results file (repairing a partial last line), refuses a file written by
another grid, trains every setting's missing seeds as one batched group and appends their
records as soon as the group finishes. Killing it (Ctrl-C, a crash, a full disk) loses at most
the groups in flight; running the same command again resumes.

Where the groups train is the ``executor`` (``mibounds.harness.executors``); wherever that is,
this process alone writes the results file, so records never interleave:

- ``"process"`` (default): ``jobs`` worker processes on this machine, ``threads`` torch threads
  each (``jobs = 1``: in this process). A worker killed (e.g. by the out-of-memory killer)
  stops the sweep within seconds with ``LostWorkersError``, after saving what finished.
- ``"dask"``: a Dask cluster; without ``scheduler``, a local one of ``jobs`` workers.
- ``"slurm"``: SLURM job arrays (``SlurmOptions``), submitted and gathered from this process.

Across machines with Dask (``pip install 'mibounds[dask]'``, the same mibounds on every
machine)::

    dask scheduler                                 # on one machine; prints tcp://HOST:8786
    dask worker tcp://HOST:8786 --nthreads 1 --nworkers 8   # on each machine, one per core
    mibounds sweep CONFIG --executor dask --scheduler tcp://HOST:8786

Each worker trains one group at a time: give workers one thread each and start as many as
cores (``--nworkers``). A worker that dies has its task retried elsewhere by Dask; one that
keeps killing workers is reported (``LostWorkersError``). Tasks wait for workers to join.

On a SLURM cluster (``pip install 'mibounds[slurm]'``, from a login node, with the results
folder on a file system the nodes share)::

    mibounds sweep CONFIG --executor slurm --partition cpu --time 60 --mem 4 --runs-per-task 8

submits one job array (each array task trains groups of 8 runs in sequence, with ``--threads``
CPUs, for at most 60 minutes and 4 GB) and gathers the records here as tasks finish; keep this
process alive (tmux, screen, or a small SLURM job of its own): if it stops, it cancels the
array, and rerunning the command resubmits only what is missing. Without ``--executor``, a
sweep can also be split by hand into array tasks that each run ``--shard $SLURM_ARRAY_TASK_ID/n``
with their own results file.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from mibounds.harness.config import RunConfig, Sweep
from mibounds.harness.executors import (
    LostWorkersError,
    SlurmOptions,
    check_executor,
    open_executor,
    train_task,
)
from mibounds.harness.results import (
    append_records,
    check_grid,
    load_results,
    read_records,
    repair_tail,
)
from mibounds.harness.trainer import train

__all__ = [
    "LostWorkersError",
    "SlurmOptions",
    "pending",
    "results_path",
    "run_sweep",
    "trainer_of",
    "workdir",
]

Trainer = Callable[..., list[dict[str, Any]]]


def results_path(out_dir: str | Path, sweep: Sweep) -> Path:
    """``out_dir/results.jsonl``, or ``out_dir/results-shard{i}of{n}.jsonl`` for a shard."""
    if sweep.shard_index is None:
        return Path(out_dir) / "results.jsonl"
    i, n = sweep.shard_index
    return Path(out_dir) / f"results-shard{i}of{n}.jsonl"


def trainer_of(kind: str) -> Trainer:
    """The trainer of a sweep's settings: the harness's ``train`` for Gaussian runs, else the
    registered kind's (``mibounds.harness.interface.KINDS``)."""
    from mibounds.harness.config import setting_type
    from mibounds.harness.interface import KINDS

    setting_type(kind)  # a clear error for an unknown kind
    return train if kind == "gaussian" else KINDS[kind].trainer


def workdir(results: str | Path) -> Path:
    """Where a trainer that writes one directory per run (the image trainer) keeps them:
    ``<results stem>-runs/`` beside the results file, so a rerun finds and resumes them."""
    results = Path(results)
    return results.parent / f"{results.stem}-runs"


def pending(sweep: Sweep, done: set[str]) -> list[tuple[RunConfig, tuple[int, ...]]]:
    """Each setting with the seeds whose run key is not in ``done`` (settings with none dropped)."""
    out = []
    for setting in sweep.settings:
        key = setting.key()
        seeds = tuple(s for s in sweep.seeds_of(setting) if f"{key}/{s}" not in done)
        if seeds:
            out.append((setting, seeds))
    return out


def run_sweep(
    sweep: Sweep,
    results: str | Path,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
    jobs: int = 1,
    threads: int = 1,
    trainer: Trainer | None = None,
    executor: str | concurrent.futures.Executor = "process",
    scheduler: str | None = None,
    slurm: SlurmOptions | None = None,
) -> pd.DataFrame:
    """Run every run of ``sweep`` not yet in ``results`` (a JSON-lines file) and return all of
    the file's runs as a DataFrame (``load_results``).

    ``executor``: where the groups train (``mibounds.harness.executors``): ``"process"``
    (``jobs`` worker processes with ``threads`` torch threads each; ``jobs = 1`` trains in this
    process with its current thread setting), ``"dask"`` (the cluster at ``scheduler``, or a
    local one of ``jobs`` workers), ``"slurm"`` (job arrays, ``slurm`` options) or any
    ``concurrent.futures.Executor``. Every record gains ``sweep``, ``grid_hash``, ``jobs`` and
    ``executor``.

    Raises ``ValueError`` before any training if the file holds runs of another grid or the
    executor's options are wrong (``check_executor``); ``LostWorkersError`` (a ``ValueError``)
    after saving every finished run if workers died; ``ResultsWriteError`` if appending fails.
    """
    name = check_executor(executor, jobs=jobs, threads=threads, scheduler=scheduler, slurm=slurm)
    results = Path(results)
    trainer = trainer or trainer_of(sweep.kind)
    done: set[str] = set()
    if results.exists():
        repair_tail(results)
        records = read_records(results)
        check_grid(records, sweep.grid_hash, results)
        done = {r["run_key"] for r in records if "run_key" in r}
    todo = pending(sweep, done)
    if not todo:
        return load_results(results)
    extra = {"sweep": sweep.name, "grid_hash": sweep.grid_hash, "jobs": jobs, "executor": name}
    with (
        open_executor(
            executor,
            jobs=jobs,
            threads=threads,
            scheduler=scheduler,
            slurm=slurm,
            results=results,
            device=device,
            name=f"mibounds-{sweep.name}",
        ) as runner,
        tqdm(
            total=sum(len(seeds) for _, seeds in todo),
            desc=f"{sweep.name}: runs",
            unit="run",
            disable=not progress,
            dynamic_ncols=True,
        ) as bar,
    ):
        # in this process the trainer may show its own bar; workers' bars would interleave
        shown = {"progress": progress} if runner.in_process else {}
        kwargs = {"device": device, "extra": extra, **shown}
        if "workdir" in inspect.signature(trainer).parameters:  # runs with directories of their own
            kwargs["workdir"] = workdir(results)
        work = functools.partial(train_task, trainer, kwargs, runner.threads)
        lost: list[tuple[RunConfig, tuple[int, ...]]] = []
        with contextlib.closing(runner.completions(runner.pack(todo), work)) as finished:
            for task, result in finished:  # an error here stops the workers at once
                try:
                    records = result()
                except runner.lost:
                    lost.extend(task)
                    continue
                append_records(results, records)
                bar.update(len(records))
        if lost:
            raise LostWorkersError(lost, runner.cause, results)
    return load_results(results)
