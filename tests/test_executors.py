"""Sweeps on every executor give the same records, and survive what kills them.

Faults: the sweep's parent SIGKILLed (or Ctrl-C'd) at random moments, a worker SIGKILLed, a
Dask worker that keeps dying, a SLURM array task that dies, a full disk while appending. After
each, the same sweep run again completes with every run exactly once and estimates bitwise
equal to an uninterrupted run: every executor trains a group with the same code, seeds and one
torch thread, so nothing may differ at all.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import errno
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from mibounds.harness import RunConfig, load_results, load_sweep, run_sweep, train
from mibounds.harness import executors as ex
from mibounds.harness.executors import LostWorkersError, SlurmOptions, pack_groups
from mibounds.harness.results import ResultsWriteError, read_records

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]

# 6 settings x 2 seeds. The full grid's 150 steps make a group last a few tenths of a second,
# so that kills of the command line land inside training and appends as well as between them;
# the executors are compared on the quick grid (3 steps)
CONFIG = """\
name = "faults"
seeds = 2
[run]
d = 1
rho = 0.5
steps = 150
eval_batches = 2
curve_every = 3
critic = {name = "separable", hidden_dim = 4, embed_dim = 2, n_hidden = 1}
[grid]
objective = ["infonce", "js", "nwj"]
k = [4, 6]
[quick]
run = {steps = 3}
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    path = tmp_path_factory.mktemp("config") / "faults.toml"
    path.write_text(CONFIG)
    return path


def uninterrupted(sweep, tmp_path_factory):
    """estimate_mean by run_key of the sweep run in this process, with one torch thread (as
    every worker has)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        frame = run_sweep(sweep, tmp_path_factory.mktemp("ref") / "r.jsonl", progress=False)
    finally:
        torch.set_num_threads(threads)
    return estimates(frame)


@pytest.fixture(scope="module")
def sweep(config):
    return load_sweep(config, quick=True)


@pytest.fixture(scope="module")
def reference(sweep, tmp_path_factory):
    return uninterrupted(sweep, tmp_path_factory)


@pytest.fixture(scope="module")
def full_sweep(config):
    return load_sweep(config)


@pytest.fixture(scope="module")
def full_reference(full_sweep, tmp_path_factory):
    return uninterrupted(full_sweep, tmp_path_factory)


def estimates(frame):
    assert frame["run_key"].is_unique
    return frame.set_index("run_key")["estimate_mean"].sort_index()


def assert_complete_and_equal(results, sweep, reference):
    records = read_records(results)
    keys = [r["run_key"] for r in records]
    assert len(keys) == len(set(keys)) == sweep.n_runs  # nothing lost, nothing twice
    got = estimates(load_results(results))
    assert list(got.index) == list(reference.index)
    assert (got.to_numpy() == reference.to_numpy()).all()  # bitwise


# ---------------------------------------------------------------- checks before training


def never(setting, seeds, **kwargs):
    raise AssertionError("trained although the options were wrong")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"executor": "mpi"}, r"executor must be one of \['process', 'dask', 'slurm'\]"),
        ({"scheduler": "tcp://h:8786"}, "scheduler .* needs executor 'dask', got 'process'"),
        ({"slurm": SlurmOptions()}, "slurm options need executor 'slurm'"),
        ({"executor": "slurm", "jobs": 4}, "jobs = 4 .* SLURM decides"),
        ({"executor": "dask", "scheduler": "tcp://h:1", "jobs": 2}, "Dask scheduler decides"),
        ({"jobs": 0}, "jobs"),
        ({"threads": 0}, "threads"),
    ],
)
def test_bad_options_fail_before_training(tmp_path, sweep, options, message):
    results = tmp_path / "r.jsonl"
    with pytest.raises(ValueError, match=message):
        run_sweep(sweep, results, progress=False, trainer=never, **options)
    assert not results.exists()


def test_a_missing_extra_is_named(monkeypatch, sweep, tmp_path):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    monkeypatch.setitem(sys.modules, "submitit", None)
    with pytest.raises(ValueError, match=r"pip install 'mibounds\[dask\]'"):
        run_sweep(sweep, tmp_path / "r.jsonl", executor="dask", trainer=never)
    with pytest.raises(ValueError, match=r"pip install 'mibounds\[slurm\]'"):
        ex.check_executor("slurm", slurm=SlurmOptions(cluster="local"))


def test_slurm_needs_sbatch_and_valid_options(monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setattr(ex.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="sbatch, which is not on PATH"):
        ex.check_executor("slurm")
    assert ex.check_executor("slurm", slurm=SlurmOptions(cluster="local")) == "slurm"
    for bad, message in [
        ({"time": 0}, "time"),
        ({"mem": -1}, "mem"),
        ({"runs_per_task": 0}, "runs_per_task"),
        ({"partition": ""}, "partition"),
        ({"cluster": "pbs"}, "cluster"),
    ]:
        with pytest.raises(ValueError, match=message):
            SlurmOptions(**bad)


def test_submitit_refusing_a_parameter_fails_before_training(tmp_path, sweep):
    pytest.importorskip("submitit")
    slurm = SlurmOptions(cluster="local", parameters={"slurm_acount": "lab"}, folder=tmp_path)
    with pytest.raises(ValueError, match=r"refused by submitit.*slurm_acount"):
        run_sweep(sweep, tmp_path / "r.jsonl", executor="slurm", slurm=slurm, trainer=never)


def test_an_unreachable_scheduler_is_reported_before_training(monkeypatch, tmp_path, sweep):
    pytest.importorskip("distributed")
    monkeypatch.setattr(ex, "_CONNECT_S", 1.0)
    started = time.monotonic()
    with pytest.raises(ValueError, match=r"no Dask scheduler answered at 'tcp://127.0.0.1:9'"):
        run_sweep(sweep, tmp_path / "r.jsonl", executor="dask", scheduler="tcp://127.0.0.1:9")
    assert time.monotonic() - started < 20  # the 1 s timeout, plus dask's retries


class FakeClient:
    def __init__(self, *nthreads):
        self.workers = {f"tcp://w{i}": {"nthreads": n} for i, n in enumerate(nthreads)}

    def scheduler_info(self):
        return {"workers": self.workers}


def test_dask_workers_that_waste_threads_or_are_missing_are_warned_about():
    with pytest.warns(UserWarning, match=r"have \[4\] threads each.*--nthreads 1"):
        ex._check_dask_workers(FakeClient(1, 4), "tcp://h:8786")
    with pytest.warns(UserWarning, match="no Dask workers are connected to tcp://h:8786 yet"):
        ex._check_dask_workers(FakeClient(), "tcp://h:8786")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ex._check_dask_workers(FakeClient(1, 1), "tcp://h:8786")  # one thread each: silent


groups_strategy = st.lists(st.integers(1, 5), max_size=12)


@given(groups_strategy, st.integers(1, 8))
def test_packing_keeps_order_and_fills_tasks_greedily(seed_counts, runs_per_task):
    """Concatenated tasks are the groups in order; a task holds <= runs_per_task runs unless it
    is one group; and the next group would not have fitted into the task before it."""
    config = RunConfig("nwj", rho=0.5)
    groups = [(config, tuple(range(n))) for n in seed_counts]
    tasks = pack_groups(groups, runs_per_task)
    assert [g for task in tasks for g in task] == groups
    runs = [sum(len(seeds) for _, seeds in task) for task in tasks]
    for task, n in zip(tasks, runs, strict=True):
        assert n <= runs_per_task or len(task) == 1
    for n, after in zip(runs, tasks[1:], strict=False):
        assert n + len(after[0][1]) > runs_per_task


# ---------------------------------------------------------------- the same records everywhere


def test_a_thread_pool_executor_gives_the_same_records(tmp_path, sweep, reference):
    results = tmp_path / "r.jsonl"
    with cf.ThreadPoolExecutor(2) as pool:
        run_sweep(sweep, results, progress=False, executor=pool)
    assert_complete_and_equal(results, sweep, reference)
    assert {r["executor"] for r in read_records(results)} == {"ThreadPoolExecutor"}


# ---------------------------------------------------------------- workers that die


def dies_on_nwj(setting, seeds, **kwargs):
    """A worker killed while training nwj at K = 4, as the out-of-memory killer does (SIGKILL)."""
    if setting.objective == "nwj" and setting.k == 4:
        os.kill(os.getpid(), signal.SIGKILL)
    return train(setting, seeds, **kwargs)


def check_lost_then_resume(err, results, sweep, reference):
    lost = {f"{s.key()}/{seed}" for s, seeds in err.value.lost for seed in seeds}
    saved = {r["run_key"] for r in read_records(results)} if results.exists() else set()
    dead = {
        f"{s.key()}/{i}" for s in sweep.settings if (s.objective, s.k) == ("nwj", 4) for i in (0, 1)
    }
    assert dead <= lost and not lost & saved  # the dead worker's group is named as missing
    message = str(err.value)
    assert "\n" not in message and "run the same command again" in message
    assert "nwj k=4 rho=0.5 seeds [0, 1]" in message
    run_sweep(sweep, results, progress=False)
    assert_complete_and_equal(results, sweep, reference)


def test_a_dask_local_cluster_gives_the_same_records_and_reports_dead_workers(
    tmp_path, sweep, reference
):
    """Dask retries a task whose worker died; with no retries allowed (to keep this short), the
    first death of each nwj task reports it (KilledWorker) while the other tasks finish."""
    pytest.importorskip("distributed")
    import dask

    results = tmp_path / "r.jsonl"
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        with pytest.raises(LostWorkersError, match="KilledWorker") as err:
            run_sweep(sweep, results, executor="dask", jobs=2, trainer=dies_on_nwj)
    records = read_records(results)
    assert {r["executor"] for r in records} == {"dask"} and {r["threads"] for r in records} == {1}
    check_lost_then_resume(err, results, sweep, reference)


def test_submitit_local_job_arrays_give_the_same_records_and_report_dead_tasks(
    monkeypatch, tmp_path, sweep, reference
):
    pytest.importorskip("submitit")
    from submitit.core.core import Job

    monkeypatch.setattr(Job, "_results_timeout_s", 0)  # no wait for a slow shared file system
    monkeypatch.setenv("PYTHONPATH", f"{ROOT / 'tests'}{os.pathsep}{ROOT}")  # for dies_on_nwj
    results = tmp_path / "r.jsonl"
    # 12 runs in groups of 2, at most 8 a task: infonce and js in one array task, nwj in another
    slurm = SlurmOptions(cluster="local", runs_per_task=8, time=5)
    with pytest.raises(LostWorkersError, match="SLURM array tasks ended without a result") as err:
        run_sweep(sweep, results, executor="slurm", slurm=slurm, trainer=dies_on_nwj)
    assert len(err.value.lost) == 2 and len(read_records(results)) == 8
    assert len(list((tmp_path / "r-slurm").glob("*/*_result.pkl"))) == 1
    check_lost_then_resume(err, results, sweep, reference)


def cli(config, results, *args):
    command = ["sweep", str(config), "--results", str(results), "--no-progress", *args]
    return subprocess.Popen(
        [sys.executable, "-m", "mibounds", *command],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def n_records(results):
    return results.read_bytes().count(b"\n") if results.exists() else 0


def workers(parent):
    """The parent's pool workers (spawned), not multiprocessing's resource tracker."""
    return [p for p in parent.children() if "spawn_main" in " ".join(p.cmdline())]


def alive(processes):
    """Those still running (a zombie has exited: only its exit status waits to be read)."""
    import psutil

    out = []
    for p in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
    return out


def test_a_killed_worker_stops_the_cli_within_seconds_with_one_line(
    tmp_path, config, full_sweep, full_reference
):
    psutil = pytest.importorskip("psutil")
    results = tmp_path / "r.jsonl"
    proc = cli(config, results, "--jobs", "2")
    parent = psutil.Process(proc.pid)
    wait_for(lambda: n_records(results) >= 2, 120, "the first group")  # workers are training
    victim = workers(parent)[0]
    others = [p for p in workers(parent) if p.pid != victim.pid]
    victim.kill()
    killed = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    elapsed = time.monotonic() - killed
    assert proc.returncode == 2 and elapsed < 10, (elapsed, stderr)
    line = stderr.strip()
    assert "\n" not in line and line.startswith("mibounds sweep: error: a worker process died")
    assert "run the same command again to resume" in line and "seeds [0, 1]" in line
    assert not alive(others)  # the pool stopped the other worker
    run_sweep(full_sweep, results, progress=False)  # the same sweep again resumes
    assert_complete_and_equal(results, full_sweep, full_reference)


def interrupt_after_a_new_group(config, results, jobs, how, delay):
    """Run the CLI, send it ``how`` ``delay`` seconds after the next group is saved; return
    its exit code once it and its workers are gone."""
    import psutil

    before = n_records(results)
    proc = cli(config, results, "--jobs", str(jobs))
    parent = psutil.Process(proc.pid)
    wait_for(lambda: n_records(results) > before or proc.poll() is not None, 120, "a new group")
    time.sleep(delay)
    children = workers(parent) if proc.poll() is None else []
    proc.send_signal(how)
    _, stderr = proc.communicate(timeout=60)
    wait_for(lambda: not alive(children), 10, "the workers to exit with their parent")
    return proc.returncode, stderr


KILL, CTRL_C = signal.SIGKILL, signal.SIGINT


@pytest.mark.parametrize(
    "lives",
    [
        [(2, KILL), (1, CTRL_C)],  # each python start costs seconds: few in the default run
        pytest.param(
            [(2, KILL), (1, CTRL_C), (1, KILL), (2, CTRL_C), (1, KILL)], marks=pytest.mark.slow
        ),
    ],
    ids=["short", "long"],
)
def test_the_parent_killed_at_random_moments_loses_nothing(
    tmp_path, config, full_sweep, full_reference, lives
):
    """SIGKILL or Ctrl-C the CLI (with ``jobs`` workers) a random moment after each new group
    is saved, so that kills fall during training and appends alike; the last run finishes."""
    pytest.importorskip("psutil")
    rng = random.Random(0)
    results = tmp_path / "r.jsonl"
    for jobs, how in lives:
        code, stderr = interrupt_after_a_new_group(config, results, jobs, how, rng.uniform(0, 0.4))
        # SIGKILL: -9, or 0 if it had just finished; Ctrl-C: 130, the shell's code for SIGINT
        assert code in ((0, -KILL) if how == KILL else (0, 130)), stderr
    proc = cli(config, results)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert_complete_and_equal(results, full_sweep, full_reference)


# ---------------------------------------------------------------- write errors


def test_a_full_disk_mid_append_leaves_no_partial_record(monkeypatch, tmp_path, sweep, reference):
    results = tmp_path / "r.jsonl"
    real_write, calls = os.write, []

    def write(fd, data):
        if not results.exists() or os.fstat(fd).st_ino != results.stat().st_ino:  # another file
            return real_write(fd, data)
        calls.append(len(data))
        if len(calls) == 2:  # the second group: half of it reaches the disk, then it is full
            return real_write(fd, bytes(data)[: len(data) // 2])
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    with pytest.raises(ResultsWriteError, match="No space left") as err:
        run_sweep(sweep, results, progress=False)
    monkeypatch.undo()
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert f"could not append to results file {str(results)!r}" in str(err.value)
    assert "the file is as it was before" in str(err.value)
    assert results.read_bytes().endswith(b"\n") and len(read_records(results)) == 2
    run_sweep(sweep, results, progress=False)
    assert_complete_and_equal(results, sweep, reference)


def test_an_unwritable_results_file_is_named(monkeypatch, tmp_path, sweep):
    results = tmp_path / "r.jsonl"
    real_open = os.open

    def read_only(path, flags, *args):
        if Path(path) == results and flags & os.O_WRONLY:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    with pytest.raises(ValueError, match=r"could not append to .*r\.jsonl': Permission denied"):
        run_sweep(sweep, results, progress=False)
