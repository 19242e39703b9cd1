"""Run a sweep so that nothing is lost: skip what is done, append each finished run at once.

``run_sweep`` reads the results file (repairing a partial last line), refuses a file written by
another grid, trains every setting's missing seeds as one batched group and appends their
records as soon as the group finishes. Killing it (Ctrl-C, a crash, a full disk) loses at most
the groups in flight; running the same command again resumes.

With ``jobs > 1`` the groups train in that many worker processes (one torch thread each) and
the parent alone writes the results file, so records never interleave.
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm import tqdm

from mibounds._checks import check_at_least
from mibounds.harness.config import RunConfig, Sweep
from mibounds.harness.results import (
    append_records,
    check_grid,
    load_results,
    read_records,
    repair_tail,
)
from mibounds.harness.trainer import train

__all__ = ["pending", "results_path", "run_sweep"]

Trainer = Callable[..., list[dict[str, Any]]]


def results_path(out_dir: str | Path, sweep: Sweep) -> Path:
    """``out_dir/results.jsonl``, or ``out_dir/results-shard{i}of{n}.jsonl`` for a shard."""
    if sweep.shard_index is None:
        return Path(out_dir) / "results.jsonl"
    i, n = sweep.shard_index
    return Path(out_dir) / f"results-shard{i}of{n}.jsonl"


def pending(sweep: Sweep, done: set[str]) -> list[tuple[RunConfig, tuple[int, ...]]]:
    """Each setting with the seeds whose run key is not in ``done`` (settings with none dropped)."""
    out = []
    for setting in sweep.settings:
        key = setting.key()
        seeds = tuple(s for s in sweep.seeds_of(setting) if f"{key}/{s}" not in done)
        if seeds:
            out.append((setting, seeds))
    return out


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _train_group(
    trainer: Trainer, kwargs: dict[str, Any], group: tuple[RunConfig, tuple[int, ...]]
) -> list[dict[str, Any]]:
    setting, seeds = group
    return trainer(setting, seeds, **kwargs)


def _in_workers(
    todo: list[tuple[RunConfig, tuple[int, ...]]],
    trainer: Trainer,
    jobs: int,
    threads: int,
    **kwargs: Any,
) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """Yield ``(seeds done, records)`` per group as the worker processes finish them. If the
    caller stops early (an error, Ctrl-C), the workers are terminated, not left to finish."""
    context = multiprocessing.get_context("spawn")  # no forked torch thread pools
    pool = context.Pool(jobs, initializer=_worker_init, initargs=(threads,))
    finished = False
    try:
        work = functools.partial(_train_group, trainer, kwargs)
        for records in pool.imap_unordered(work, todo):
            yield len(records), records
        finished = True
    finally:
        if finished:
            pool.close()
        else:
            pool.terminate()
        pool.join()


def run_sweep(
    sweep: Sweep,
    results: str | Path,
    *,
    device: torch.device | str = "cpu",
    progress: bool = True,
    jobs: int = 1,
    threads: int = 1,
    trainer: Trainer = train,
) -> pd.DataFrame:
    """Run every run of ``sweep`` not yet in ``results`` (a JSON-lines file) and return all of
    the file's runs as a DataFrame (``load_results``).

    ``jobs``: worker processes (each with ``threads`` torch threads); 1 trains in this process
    with its current thread setting. Raises ``ValueError`` before any training if the file holds
    runs of another grid.
    """
    check_at_least(jobs, 1, "jobs")
    results = Path(results)
    done: set[str] = set()
    if results.exists():
        repair_tail(results)
        records = read_records(results)
        check_grid(records, sweep.grid_hash, results)
        done = {r["run_key"] for r in records if "run_key" in r}
    todo = pending(sweep, done)
    extra = {"sweep": sweep.name, "grid_hash": sweep.grid_hash, "jobs": jobs}
    n_todo = sum(len(seeds) for _, seeds in todo)
    with tqdm(
        total=n_todo,
        desc=f"{sweep.name}: runs",
        unit="run",
        disable=not progress or not n_todo,
        dynamic_ncols=True,
    ) as bar:
        if jobs == 1:
            groups: Iterator[tuple[int, list[dict[str, Any]]]] = (
                (len(seeds), trainer(setting, seeds, device=device, progress=progress, extra=extra))
                for setting, seeds in todo
            )
        else:
            groups = _in_workers(todo, trainer, jobs, threads, device=device, extra=extra)
        with contextlib.closing(groups):  # an error here stops the workers at once
            for n, records in groups:
                append_records(results, records)
                bar.update(n)
    return load_results(results)
