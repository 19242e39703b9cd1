"""Multi-process training helpers: process-group set-up from ``torchrun``'s environment, and a
differentiable all-gather so that negatives span the global batch.

Gradients through the gather. Process r computes a loss ``L_r`` from its own anchors and every
process's embeddings. Its backward gives ``dL_r / dz_s`` for every process s; ``all_gather``'s
backward sums these over r (an all-reduce of the gathered gradient, then each process keeps its
rows), so process s holds ``sum_r dL_r / dz_s``. DistributedDataParallel then averages the
parameter gradients over the W processes, which is the gradient of ``mean_r L_r``: with ``L_r``
the mean over local anchors, exactly the single-process loss on the global batch. (A loss every
process computes in full on the gathered batch, ``L_r = L``, gets ``W dL/dz_s`` and, after the
average, ``dL/dtheta`` again.)

A process that dies or hangs. Every collective of the group waits at most ``timeout`` seconds
(``init_distributed``; default ``DEFAULT_TIMEOUT``, or ``$MIBOUNDS_DIST_TIMEOUT``): on gloo a
peer that was killed fails the next collective at once (its connections close), one that stops
answering fails it after the timeout. ``group_failure`` tells these errors from others, so that
the trainer can stop every surviving process with one line saying where its checkpoint is. On
NCCL, torch's watchdog ends a process whose collective passes the timeout itself (it cannot be
caught), after printing why.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from mibounds._checks import check_positive, resolve_device

Gather = Callable[[Tensor], tuple[Tensor, int]]

__all__ = [
    "DEFAULT_TIMEOUT",
    "DistEnv",
    "Gather",
    "GroupFailure",
    "all_gather_with_grad",
    "failure_reason",
    "gather_hook",
    "group_failure",
    "init_distributed",
    "shutdown",
]

DEFAULT_TIMEOUT = 300.0
"""Seconds a collective waits for the other processes before failing: long enough for process 0
to write a checkpoint or the slowest process to scan its data, short enough that a job with a
hung process ends in minutes rather than torch's default 30 (gloo) or 10 (NCCL)."""
TIMEOUT_ENV = "MIBOUNDS_DIST_TIMEOUT"


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the job: ``rank`` of ``world_size``, on ``device``;
    ``owns_group`` when ``init_distributed`` created the process group (and so ends it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


class GroupFailure(ConnectionError):
    """Another process of the group died or stopped answering (a ``ConnectionError``, so the
    command line prints its message as one line and exits 2)."""


def group_failure(error: BaseException) -> bool:
    """Whether ``error`` is a collective failing because a peer is gone or silent: torch's
    distributed errors, and the ``RuntimeError`` gloo raises when a connection is reset or a
    collective times out (its messages name gloo's transport).

    Example:
        >>> from mibounds.vision.distributed import failure_reason, group_failure
        >>> reset = RuntimeError(
        ...     "[gloo/transport/tcp/pair.cc:545] Read error [::1]:5: Connection reset by peer. "
        ...     "This is typically caused by a remote worker hanging."
        ... )
        >>> group_failure(reset), group_failure(RuntimeError("shapes cannot be multiplied"))
        (True, False)
        >>> failure_reason(reset)
        'Read error [::1]:5: Connection reset by peer'
    """
    if isinstance(error, dist.DistError):
        return True
    return isinstance(error, RuntimeError) and "gloo" in str(error)


def failure_reason(error: BaseException) -> str:
    """The first sentence of a collective's error, without gloo's source-file prefix."""
    text = " ".join(str(error).split())
    if text.startswith("[") and "] " in text:
        text = text.split("] ", 1)[1]
    return text.split(". ", 1)[0].rstrip(".")


def _timeout(timeout: float | None) -> float:
    if timeout is None:
        text = os.environ.get(TIMEOUT_ENV, "")
        try:
            timeout = float(text) if text else DEFAULT_TIMEOUT
        except ValueError:
            raise ValueError(f"${TIMEOUT_ENV} must be a number of seconds, got {text!r}") from None
    return check_positive(timeout, f"the process-group timeout (${TIMEOUT_ENV}, seconds)")


def init_distributed(device: str = "auto", timeout: float | None = None) -> DistEnv:
    """Join the process group that ``torchrun`` describes (``RANK``, ``WORLD_SIZE``,
    ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT`` in the environment), or run as one process.

    The backend is NCCL on CUDA and gloo on CPU; ``timeout`` (seconds; default
    ``$MIBOUNDS_DIST_TIMEOUT`` or ``DEFAULT_TIMEOUT``) bounds forming the group and every
    collective. A group that is already initialised (tests spawning their own processes) is
    used as it is. Raises ``GroupFailure`` if the other processes do not join in time.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local_rank)
    seconds = _timeout(timeout)
    if world == 1 and not dist.is_initialized():
        return DistEnv(device=dev)
    owns_group = not dist.is_initialized()
    if owns_group:
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        try:
            dist.init_process_group(
                "nccl" if dev.type == "cuda" else "gloo",
                timeout=datetime.timedelta(seconds=seconds),
            )
        except (RuntimeError, TimeoutError) as error:  # e.g. DistStoreError: a peer never came
            raise GroupFailure(
                f"rank {os.environ.get('RANK', '?')} of {world} could not join the process group "
                f"({failure_reason(error)}); every process must start within {seconds:g} s of "
                "the others, with the same MASTER_ADDR and MASTER_PORT"
            ) from error
    return DistEnv(dist.get_rank(), dist.get_world_size(), local_rank, dev, owns_group)


def shutdown(env: DistEnv) -> None:
    """Leave the process group if ``init_distributed`` created it."""
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


class _AllGather(torch.autograd.Function):
    """Concatenate every process's ``(K, ...)`` tensor along dim 0; backward: all-reduce the
    gradient (sum over processes) and keep this process's rows. Works on gloo, which has no
    reduce-scatter."""

    @staticmethod
    def forward(ctx, t: Tensor) -> Tensor:  # type: ignore[override]
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(t) for _ in range(world)]
        dist.all_gather(parts, t.contiguous())
        ctx.rows = (rank * t.shape[0], t.shape[0])
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start, rows = ctx.rows
        return grad[start : start + rows]


def all_gather_with_grad(t: Tensor) -> tuple[Tensor, int]:
    """``t: (K, ...)`` on each of W processes -> ``((W K, ...), offset = rank K)``.

    Every process must pass the same shape (the trainer's batches all have K / W items).
    Differentiable for floating tensors (see the module docstring for the gradient); integer
    tensors (dataset indices) are gathered as they are.
    """
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return t, 0
    offset = dist.get_rank() * t.shape[0]
    if t.is_floating_point() and t.requires_grad:
        return _AllGather.apply(t), offset
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts), offset


def gather_hook(env: DistEnv) -> Gather | None:
    """The ``gather`` hook an objective gets: ``all_gather_with_grad`` in a multi-process job,
    ``None`` (no gathering) in a single process."""
    return all_gather_with_grad if env.distributed else None
