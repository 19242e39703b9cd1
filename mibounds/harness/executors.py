"""Where a sweep's groups train: this process, worker processes, a Dask cluster or SLURM.

A *group* is one setting with its pending seeds, trained as one batched model; a *task* is the
groups one worker trains in sequence (one group, except SLURM array tasks that pack several).
``open_executor`` yields a ``Runner`` whose ``completions`` submits every task and hands
back each task's outcome as it finishes, so that the sweep's parent can append the records
itself: workers never touch the results file.

Executors (``check_executor`` validates the choice before anything trains):

- ``"process"``: ``jobs`` worker processes (``concurrent.futures.ProcessPoolExecutor``, spawned),
  ``threads`` torch threads each; ``jobs == 1`` trains in this process instead.
- ``"dask"``: a ``dask.distributed`` cluster, the one at ``scheduler`` or a ``LocalCluster`` of
  ``jobs`` single-threaded worker processes; a task whose workers keep dying is reported by Dask
  (``KilledWorker``) after its retries.
- ``"slurm"``: SLURM job arrays through submitit (``SlurmOptions``).
- any ``concurrent.futures.Executor`` instance (a ``ThreadPoolExecutor``, ``mpi4py.futures``...):
  used as given and never shut down here; each task sets torch's thread count to ``threads`` in
  the process that runs it.

Workers that die (SIGKILL, the out-of-memory killer, a lost node) raise ``LostWorkersError``
once every other outcome is in, naming the settings missing; running the same sweep again
resumes. (A process pool stops all its workers when one dies, so there the groups in flight
and those not yet started are missing too; Dask and SLURM carry on with the others.)
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import multiprocessing
import os
import shutil
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from mibounds._checks import check_at_least, check_positive
from mibounds.harness.config import RunConfig

__all__ = [
    "EXECUTORS",
    "LostWorkersError",
    "Runner",
    "SlurmOptions",
    "check_executor",
    "describe_group",
    "open_executor",
    "pack_groups",
    "train_task",
]

EXECUTORS = ("process", "dask", "slurm")
"""The executors named by string; any ``concurrent.futures.Executor`` instance also serves."""

Group = tuple[RunConfig, tuple[int, ...]]
Task = tuple[Group, ...]
Record = dict[str, Any]
Trainer = Callable[..., list[Record]]

_CONNECT_S = 10.0
"""Seconds to wait for a Dask scheduler to answer before calling it unreachable."""

_POLL_S = 1.0
"""Seconds between looks at SLURM array tasks (submitit reads a result file per look)."""


class LostWorkersError(ValueError):
    """Workers died before returning some groups; every other group's records are saved.

    ``lost`` holds the groups (setting, seeds) whose records are missing. A ``ValueError`` so
    that the command line prints its one-line message, not a traceback.
    """

    def __init__(self, lost: Sequence[Group], cause: str, results: Path) -> None:
        self.lost = list(lost)
        shown = "; ".join(describe_group(s, seeds) for s, seeds in self.lost[:3])
        more = f"; and {len(self.lost) - 3} more" if len(self.lost) > 3 else ""
        runs = sum(len(seeds) for _, seeds in self.lost)
        super().__init__(
            f"{cause}, so {runs} run(s) in {len(self.lost)} group(s) are missing: {shown}{more}. "
            f"Every finished run is saved in {str(results)!r}; run the same command again to "
            "resume"
        )


@dataclass(frozen=True)
class SlurmOptions:
    """How the ``"slurm"`` executor submits its job array (submitit's ``AutoExecutor``).

    Attributes:
        partition: the SLURM partition (``sbatch --partition``); None: the cluster's default.
        time: minutes each array task may run (``--time``); size it for ``runs_per_task`` runs.
        mem: GB of memory per array task (``--mem``); None: the partition's default.
        runs_per_task: runs (setting x seed) each array task trains, whole groups in sequence
            (a group with more seeds runs alone): fewer, longer array tasks. A task killed
            midway loses all its groups, which the next run of the sweep trains again.
        folder: submitit's folder (job scripts, pickled tasks, logs); None: beside the results
            file, ``<results stem>-slurm/``.
        cluster: submitit's executor: ``"slurm"``, or ``"local"`` (subprocesses on this
            machine) and ``"debug"`` (in this process) to try a sweep without a cluster.
        parameters: further submitit parameters, e.g. ``{"slurm_account": "lab",
            "slurm_qos": "short", "slurm_array_parallelism": 32}``.

    Each array task gets ``threads`` CPUs (the sweep's torch threads) and one GPU when the
    sweep's device is CUDA.

    Example:
        >>> SlurmOptions(partition="cpu", time=30, mem=4, runs_per_task=8).runs_per_task
        8
    """

    partition: str | None = None
    time: int = 60
    mem: float | None = None
    runs_per_task: int = 1
    folder: str | Path | None = None
    cluster: str = "slurm"
    parameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.partition is not None and (
            not isinstance(self.partition, str) or not self.partition
        ):
            raise ValueError(f"partition must be a non-empty string, got {self.partition!r}")
        check_at_least(self.time, 1, "time (minutes per array task)")
        if self.mem is not None:
            object.__setattr__(self, "mem", check_positive(self.mem, "mem (GB per array task)"))
        check_at_least(self.runs_per_task, 1, "runs_per_task")
        if self.cluster not in ("slurm", "local", "debug"):
            raise ValueError(f"cluster must be 'slurm', 'local' or 'debug', got {self.cluster!r}")
        object.__setattr__(self, "parameters", dict(self.parameters))


def describe_group(setting: RunConfig, seeds: Sequence[int]) -> str:
    """A group in one line: the setting's ``label()`` and the seeds.

    Example:
        >>> describe_group(RunConfig("nwj", k=8, rho=0.5), (0, 1))
        'nwj k=8 rho=0.5 seeds [0, 1]'
    """
    return f"{setting.label()} seeds {list(seeds)}"


def pack_groups(groups: Sequence[Group], runs_per_task: int = 1) -> list[Task]:
    """Consecutive groups packed into tasks of at most ``runs_per_task`` runs (seeds) each; a
    group with more seeds than that is a task alone. ``runs_per_task = 1``: a task per group.

    Example:
        >>> a, b = RunConfig("nwj", rho=0.5), RunConfig("js", rho=0.5)
        >>> [len(t) for t in pack_groups([(a, (0, 1)), (b, (0, 1)), (a, (2,))], 4)]
        [2, 1]
    """
    check_at_least(runs_per_task, 1, "runs_per_task")
    tasks: list[Task] = []
    current: list[Group] = []
    runs = 0
    for group in groups:
        if current and runs + len(group[1]) > runs_per_task:
            tasks.append(tuple(current))
            current, runs = [], 0
        current.append(group)
        runs += len(group[1])
    if current:
        tasks.append(tuple(current))
    return tasks


_ONE_AT_A_TIME = threading.Lock()
"""Trainings in one process run one at a time: a critic's initialisation seeds torch's global
random stream, so two in threads of one worker would draw each other's numbers."""


def train_task(
    trainer: Trainer, kwargs: Mapping[str, Any], threads: int | None, task: Task
) -> list[Record]:
    """Train a task's groups in sequence, with ``threads`` torch threads (None: as they are);
    the records of every group, in order. This is what a worker runs."""
    with _ONE_AT_A_TIME:
        if threads is not None:
            torch.set_num_threads(threads)
        return [record for setting, seeds in task for record in trainer(setting, seeds, **kwargs)]


def check_executor(
    executor: str | cf.Executor,
    *,
    jobs: int = 1,
    threads: int = 1,
    scheduler: str | None = None,
    slurm: SlurmOptions | None = None,
) -> str:
    """Check the choice of executor and its options, before anything trains; return its name
    (the ``executor`` field of each record: a name of ``EXECUTORS`` or the instance's class).

    Raises ``ValueError`` for an unknown name, options of another executor, a missing optional
    extra (naming the ``pip install``), or SLURM's ``sbatch`` missing for ``cluster="slurm"``.

    Example:
        >>> check_executor("process", jobs=4)
        'process'
    """
    check_at_least(jobs, 1, "jobs")
    check_at_least(threads, 1, "threads")
    if isinstance(executor, cf.Executor):
        name = type(executor).__name__
    elif executor in EXECUTORS:
        name = executor
    else:
        raise ValueError(
            f"executor must be one of {list(EXECUTORS)} or a concurrent.futures.Executor, "
            f"got {executor!r}"
        )
    if scheduler is not None and name != "dask":
        raise ValueError(
            f"scheduler (a Dask scheduler's address) needs executor 'dask', got {name!r}"
        )
    if slurm is not None and name != "slurm":
        raise ValueError(f"slurm options need executor 'slurm', got {name!r}")
    if jobs > 1 and (name == "slurm" or scheduler is not None or name not in EXECUTORS):
        where = {"slurm": "SLURM", "dask": "the Dask scheduler"}.get(name, "the executor")
        raise ValueError(
            f"jobs = {jobs} sets the number of local workers, but with executor {name!r} "
            f"{where} decides how many tasks run at once; leave jobs at 1"
        )
    if name == "dask":
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler):
            raise ValueError(
                f"scheduler must be an address such as tcp://host:8786, got {scheduler!r}"
            )
        _import_extra("distributed", "dask")
    if name == "slurm":
        if slurm is not None and not isinstance(slurm, SlurmOptions):
            raise ValueError(f"slurm must be a SlurmOptions, got {type(slurm).__name__}")
        _import_extra("submitit", "slurm")
        if (slurm or SlurmOptions()).cluster == "slurm" and shutil.which("sbatch") is None:
            raise ValueError(
                "executor 'slurm' submits with SLURM's sbatch, which is not on PATH: run the "
                "sweep on a login node of the cluster (or try it here with cluster='local')"
            )
    return name


def _import_extra(module: str, extra: str) -> Any:
    try:
        return __import__(module)
    except ImportError as err:
        raise ValueError(
            f"executor {extra!r} needs the optional extra: pip install 'mibounds[{extra}]' ({err})"
        ) from None


class Runner:
    """A place to train tasks, as ``open_executor`` yields it.

    ``pack(groups)`` makes the tasks; ``completions(tasks, work)`` submits ``work(task)`` for
    every task and yields ``(task, result)`` as each finishes, where ``result()`` returns the
    task's records or raises its error; closing the generator early cancels what is left.
    ``lost``: the errors that mean a worker died (the task's records are missing, nothing is
    wrong with the task); ``cause``: what those errors mean, for ``LostWorkersError``.
    """

    in_process = True  # trains in this process (so the trainer may draw its own bars)
    lost: tuple[type[BaseException], ...] = ()
    cause = "workers died"
    threads: int | None = None  # what each task sets torch's thread count to (None: keep)
    runs_per_task = 1

    def pack(self, groups: Sequence[Group]) -> list[Task]:
        return pack_groups(groups, self.runs_per_task)

    def completions(
        self, tasks: Sequence[Task], work: Callable[[Task], list[Record]]
    ) -> Iterator[tuple[Task, Callable[[], list[Record]]]]:
        for task in tasks:  # in this process, one after another
            yield task, functools.partial(work, task)


class _Futures(Runner):
    """Any ``concurrent.futures.Executor``: every task submitted at once, taken as it ends."""

    in_process = False

    def __init__(
        self, pool: cf.Executor, threads: int, lost: tuple[type[BaseException], ...], cause: str
    ) -> None:
        self.pool, self.threads, self.lost, self.cause = pool, threads, lost, cause

    def completions(
        self, tasks: Sequence[Task], work: Callable[[Task], list[Record]]
    ) -> Iterator[tuple[Task, Callable[[], list[Record]]]]:
        futures = {self.pool.submit(work, task): task for task in tasks}
        try:
            for future in cf.as_completed(futures):
                yield futures[future], future.result
        finally:
            for future in futures:
                future.cancel()


class _Submitit(Runner):
    """SLURM (or submitit's local and debug stand-ins): all tasks as one job array."""

    in_process = False

    def __init__(self, executor: Any, options: SlurmOptions, threads: int, folder: Path) -> None:
        from submitit.core.utils import UncompletedJobError

        self.executor, self.threads, self.runs_per_task = executor, threads, options.runs_per_task
        self.lost = (UncompletedJobError,)
        self.cause = (
            "SLURM array tasks ended without a result (killed, out of memory or out of time; "
            f"their logs are in {str(folder)!r})"
        )

    def completions(
        self, tasks: Sequence[Task], work: Callable[[Task], list[Record]]
    ) -> Iterator[tuple[Task, Callable[[], list[Record]]]]:
        jobs = self.executor.map_array(work, list(tasks))
        pending = dict(enumerate(zip(jobs, tasks, strict=True)))
        try:
            while pending:
                done = [i for i, (job, _) in pending.items() if job.done()]
                for i in done:
                    job, task = pending.pop(i)
                    yield task, job.result
                if pending and not done:
                    time.sleep(_POLL_S)
        finally:
            for job, _ in pending.values():
                job.cancel(check=False)


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (SIGKILL) exits rather than live on as an orphan."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _process_worker_init(parent: int) -> None:
    # Ctrl-C is the parent's to handle: it stops the workers, who would only print tracebacks
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm's default lock is a multiprocessing semaphore, which a killed worker leaks (the
    # resource tracker then warns at exit); workers draw no bars, so a thread lock will do
    tqdm.set_lock(threading.RLock())
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _stop_workers(pool: cf.ProcessPoolExecutor) -> None:
    """Kill the workers now, not after their running groups (an error, Ctrl-C)."""
    stop = getattr(pool, "terminate_workers", None)  # Python >= 3.14
    if stop is not None:
        stop()
    else:
        for process in list((pool._processes or {}).values()):
            process.terminate()
    pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def _process_pool(jobs: int, threads: int) -> Iterator[Runner]:
    pool = cf.ProcessPoolExecutor(
        jobs,
        mp_context=multiprocessing.get_context("spawn"),  # no forked torch thread pools
        initializer=_process_worker_init,
        initargs=(os.getpid(),),
    )
    finished = False
    try:
        yield _Futures(
            pool,
            threads,
            (cf.process.BrokenProcessPool,),
            "a worker process died (killed by a signal, e.g. by the out-of-memory killer)",
        )
        finished = True
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            _stop_workers(pool)


@contextlib.contextmanager
def _dask(scheduler: str | None, jobs: int, threads: int) -> Iterator[Runner]:
    from distributed import Client, KilledWorker, LocalCluster

    with contextlib.ExitStack() as stack:
        if scheduler is None:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None
                )
            )
            client = stack.enter_context(Client(cluster))
            # the local workers share this terminal: Ctrl-C is this process's to handle (it
            # closes the cluster), not theirs (they would only print tracebacks)
            client.register_plugin(_ignore_ctrl_c())
        else:
            try:
                client = stack.enter_context(Client(scheduler, timeout=_CONNECT_S))
            except (OSError, TimeoutError) as err:
                raise ValueError(
                    f"no Dask scheduler answered at {scheduler!r} within {_CONNECT_S:g} s ({err}); "
                    "start one with `dask scheduler` and workers with `dask worker ADDRESS "
                    "--nthreads 1 --nworkers N`"
                ) from None
            _check_dask_workers(client, scheduler)
        yield _Futures(
            client.get_executor(pure=False),  # pure=False: a rerun task is run, not looked up
            threads,
            (KilledWorker, cf.CancelledError),
            "Dask workers died running some tasks until Dask gave up on them (KilledWorker), or "
            "the scheduler dropped them",
        )


def _ignore_ctrl_c() -> Any:
    """A Dask worker plugin that makes each worker, and each that replaces it, ignore SIGINT."""
    from distributed import WorkerPlugin

    class IgnoreCtrlC(WorkerPlugin):
        def setup(self, worker: Any) -> None:
            signal.signal(signal.SIGINT, signal.SIG_IGN)

    return IgnoreCtrlC()


def _check_dask_workers(client: Any, scheduler: str) -> None:
    workers = client.scheduler_info()["workers"].values()
    if not workers:
        warnings.warn(
            f"no Dask workers are connected to {scheduler} yet; the sweep waits for them "
            "(start them with `dask worker ADDRESS --nthreads 1 --nworkers N`)",
            stacklevel=4,
        )
    threaded = sorted({w["nthreads"] for w in workers if w["nthreads"] > 1})
    if threaded:
        warnings.warn(
            f"Dask workers at {scheduler} have {threaded} threads each, but a worker trains one "
            "group at a time (torch's global random stream seeds each critic); start them with "
            "`dask worker ADDRESS --nthreads 1 --nworkers N` to use every core",
            stacklevel=4,
        )


@contextlib.contextmanager
def _slurm(
    options: SlurmOptions, threads: int, folder: Path, device: torch.device | str, name: str
) -> Iterator[Runner]:
    import submitit

    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=options.cluster)
    parameters: dict[str, Any] = {
        "name": name,
        "timeout_min": options.time,
        "cpus_per_task": threads,
        "slurm_partition": options.partition,  # None: unset
        "mem_gb": options.mem,
        "gpus_per_node": 1 if torch.device(device).type == "cuda" else None,
        **options.parameters,
    }
    try:
        executor.update_parameters(**parameters)
    except (NameError, AssertionError, ValueError) as err:  # submitit's ways of refusing
        raise ValueError(f"SLURM parameters {parameters} refused by submitit: {err}") from None
    yield _Submitit(executor, options, threads, folder)


@contextlib.contextmanager
def open_executor(
    executor: str | cf.Executor,
    *,
    jobs: int = 1,
    threads: int = 1,
    scheduler: str | None = None,
    slurm: SlurmOptions | None = None,
    results: Path = Path("results.jsonl"),
    device: torch.device | str = "cpu",
    name: str = "mibounds",
) -> Iterator[Runner]:
    """The ``Runner`` for a checked choice (``check_executor``); its workers are stopped (or
    its cluster closed, or its array tasks cancelled) on leaving, at once after an error.

    ``results`` places SLURM's default folder; ``device`` asks SLURM for a GPU when CUDA;
    ``name`` names SLURM's jobs.

    Example:
        >>> groups = [(RunConfig("nwj", rho=0.5), (0, 1))]
        >>> with open_executor("process") as runner:  # jobs = 1: in this process
        ...     [result() for _, result in runner.completions(runner.pack(groups), len)]
        [1]
    """
    label = check_executor(executor, jobs=jobs, threads=threads, scheduler=scheduler, slurm=slurm)
    if isinstance(executor, cf.Executor):
        yield _Futures(executor, threads, (cf.BrokenExecutor,), f"{label} lost its workers")
    elif label == "process" and jobs == 1:
        yield Runner()
    elif label == "process":
        with _process_pool(jobs, threads) as ex:
            yield ex
    elif label == "dask":
        with _dask(scheduler, jobs, threads) as ex:
            yield ex
    else:
        options = slurm or SlurmOptions()
        folder = Path(options.folder or results.parent / f"{results.stem}-slurm")
        with _slurm(options, threads, folder, device, name) as ex:
            yield ex
