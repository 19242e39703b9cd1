"""Faults of the image trainer, end to end: ``mibounds vision train`` killed (SIGKILL) mid-epoch
and run again resumes to bitwise the weights of an uninterrupted run; in a two-process job
(gloo, the environment ``torchrun`` sets) a killed or stopped process ends the other with one
line naming the epoch and the checkpoint, and the same command then resumes the job.

The runs are tiny (8x8 digits, K = 8, one torch thread) so that the subprocesses cost mostly
their start-up; a run is killed as soon as its first checkpoint appears, inside epoch 2 of 3
(an epoch is about 0.3 s, the polling 10 ms).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from mibounds.cli import main
from mibounds.vision.distributed import (
    GroupFailure,
    failure_reason,
    group_failure,
    init_distributed,
)
from mibounds.vision.training import CHECKPOINT, load_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

# on the CPU: bitwise repeatability is a CPU promise (CUDA kernels may sum in any order)
TINY = (
    "vision train --image-size 8 --subset 64 -K 8 --epochs 3 --workers 0 --threads 1 "
    "--no-probe --no-progress --proj-hidden 32 --proj-dim 16 --device cpu"
).split()


def start(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "mibounds", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )


def wait_for(path: Path, process: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll every 10 ms until ``path`` exists (failing if ``process`` ends first)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            pytest.fail(f"the run ended before writing {path}: {process.communicate()[1]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {path} after {timeout} s")
        time.sleep(0.01)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def same_tensors(a: dict, b: dict) -> list[str]:
    """The keys whose tensors differ (bitwise)."""
    return [k for k, v in a.items() if not torch.equal(v, b[k])]


def test_killed_mid_epoch_then_rerun_gives_bitwise_the_uninterrupted_weights(
    tmp_path, capsys
) -> None:
    # SGD with a warm-up over epoch 1 and the cosine after: the resumed run must restore the
    # schedule's step, the momentum buffers, BatchNorm's statistics, the data order of epochs
    # 2 and 3 and their augmentations (seeded per item); any of these off changes the weights
    killed = tmp_path / "killed"
    run = start([*TINY, "--out", str(killed)])
    wait_for(killed / CHECKPOINT, run)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert run.returncode == -signal.SIGKILL
    assert load_checkpoint(killed)["epoch"] == 1  # killed inside epoch 2

    assert main([*TINY, "--out", str(killed)]) == 0  # the same command again: resumes
    assert main([*TINY, "--out", str(tmp_path / "straight")]) == 0
    capsys.readouterr()
    resumed, straight = load_checkpoint(killed), load_checkpoint(tmp_path / "straight")
    assert resumed["epoch"] == straight["epoch"] == 3
    assert same_tensors(straight["model"], resumed["model"]) == []
    assert same_tensors(straight["objective"], resumed["objective"]) == []
    assert [m["loss"] for m in resumed["metrics"]] == [m["loss"] for m in straight["metrics"]]


def _rank(argv: list[str], env: dict[str, str], log: str) -> None:
    """A forked process: the environment ``torchrun`` sets, stdout and stderr to ``log``, the
    command's exit code as the process's (``os._exit``: none of pytest's exit handlers)."""
    os.environ.update(env)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    sys.stdout = sys.stderr = open(fd, "w", buffering=1)  # closed by the exit
    code = 1
    try:
        code = main(argv)
    finally:
        sys.stderr.flush()
        os._exit(code)


def two_processes(out: Path, timeout: float) -> list[mp.Process]:
    """``mibounds vision train`` as ranks 0 and 1 of a gloo group, forked from this process
    (which has torch imported: the processes start in milliseconds, not seconds)."""
    common = {
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "MIBOUNDS_DIST_TIMEOUT": str(timeout),
    }
    argv = [*TINY, "--out", str(out)]
    # fork, unless this process has started CUDA (which a forked child cannot use or restart)
    context = mp.get_context("spawn" if torch.cuda.is_initialized() else "fork")
    ranks = []
    for r in range(2):
        env = {**common, "RANK": str(r), "LOCAL_RANK": str(r)}
        log = str(out.parent / f"rank{r}.log")
        ranks.append(context.Process(target=_rank, args=(argv, env, log)))
        ranks[-1].start()
    return ranks


def log(out: Path, rank: int) -> str:
    return (out.parent / f"rank{rank}.log").read_text()


def wait_for_checkpoint(out: Path, ranks: list[mp.Process], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not (out / CHECKPOINT).exists():
        if any(p.exitcode is not None for p in ranks):
            pytest.fail(f"a process ended before the first checkpoint: {log(out, 0)}")
        if time.monotonic() > deadline:
            pytest.fail(f"no checkpoint after {timeout} s")
        time.sleep(0.01)


def stop_all(ranks: list[mp.Process]) -> None:
    for p in ranks:
        if p.is_alive():
            p.kill()
        p.join()


@pytest.mark.parametrize("victim", [0, 1])
def test_a_killed_process_ends_the_other_in_one_line_and_the_job_resumes(tmp_path, victim) -> None:
    # rank 0 holds the group's store and writes the checkpoints; either may die
    out = tmp_path / "run"
    ranks = two_processes(out, timeout=60)
    try:
        wait_for_checkpoint(out, ranks)
        os.kill(ranks[victim].pid, signal.SIGKILL)
        survivor = ranks[1 - victim]
        start_wait = time.monotonic()
        survivor.join(timeout=60)
        waited = time.monotonic() - start_wait
    finally:
        stop_all(ranks)
    # a killed peer closes its connections: the survivor fails at its next collective, long
    # before the 60 s timeout (the bound leaves room for a loaded machine)
    err = log(out, 1 - victim)
    assert survivor.exitcode == 2, err
    assert waited < 20
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("mibounds vision train: error: a process of the group died or ")
    assert f"during epoch 2 (rank {1 - victim} of 2 saw: " in lines[0]
    assert f"the checkpoint of the last finished epoch is in {out}; run the same command" in err
    first = load_checkpoint(out)
    assert first["epoch"] == 1

    again = two_processes(out, timeout=60)  # a fresh job, the same command: resumes
    try:
        for p in again:
            p.join(timeout=120)
    finally:
        stop_all(again)
    assert [p.exitcode for p in again] == [0, 0], log(out, 0) + log(out, 1)
    final = load_checkpoint(out)
    assert final["epoch"] == 3 and len(final["metrics"]) == 3
    assert final["metrics"][0] == first["metrics"][0]  # epoch 1 kept, not trained again
    assert '"epochs": 3' in log(out, 0)


def test_a_stopped_process_ends_the_other_after_the_timeout(tmp_path) -> None:
    # SIGSTOP: the peer's connections stay open and silent; only the timeout ends the wait
    out = tmp_path / "run"
    ranks = two_processes(out, timeout=3)
    try:
        wait_for_checkpoint(out, ranks)
        os.kill(ranks[1].pid, signal.SIGSTOP)
        start_wait = time.monotonic()
        ranks[0].join(timeout=60)
        waited = time.monotonic() - start_wait
    finally:
        stop_all(ranks)  # SIGKILL ends a stopped process too
    err = log(out, 0)
    assert ranks[0].exitcode == 2, err
    assert 2.5 < waited < 30
    assert "died or stopped answering during epoch 2 (rank 0 of 2 saw: Timed out" in err
    assert err.count("\n") == 1


def test_a_process_alone_fails_to_form_the_group_within_the_timeout(monkeypatch) -> None:
    import torch.distributed as dist

    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1"}
    for key, value in {**env, "MASTER_PORT": str(free_port())}.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(GroupFailure, match=r"rank 0 of 2 could not join the process group"):
        init_distributed("cpu", timeout=1)
    assert not dist.is_initialized()
    monkeypatch.setenv("MIBOUNDS_DIST_TIMEOUT", "soon")
    with pytest.raises(ValueError, match=r"MIBOUNDS_DIST_TIMEOUT must be a number of seconds"):
        init_distributed("cpu")
    with pytest.raises(ValueError, match=r"timeout .* must be a finite number > 0, got 0"):
        init_distributed("cpu", timeout=0)


def test_group_failures_are_told_from_other_runtime_errors() -> None:
    # the messages gloo gives a dead and a silent peer (torch 2.x), and a bug's message
    reset = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/pair.cc:545] Read error "
        "[127.0.0.1]:25520: Connection reset by peer. This is typically caused by a remote "
        "worker hanging or bugs in the application."
    )
    silent = RuntimeError(
        "[/pytorch/third_party/gloo/gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting "
        "5000ms for recv operation to complete"
    )
    assert group_failure(reset) and group_failure(silent)
    assert failure_reason(reset) == "Read error [127.0.0.1]:25520: Connection reset by peer"
    assert failure_reason(silent).startswith("Timed out waiting 5000ms")
    assert not group_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not group_failure(ValueError("gloo"))
    assert isinstance(GroupFailure("x"), OSError)  # the command line's one-line errors
