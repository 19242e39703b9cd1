"""Data sources with known MI beyond the Gaussians: the named tasks of ``mibounds.tasks``.

Two sources, registered when the harness is imported (``mibounds.harness``), train any
catalogue objective on a task, its true MI the task's (docs/tasks.md):

- ``task`` (``TaskStream``, ``source_params = {task = NAME}``): a fresh batch of the task's
  samples every step, an unlimited stream;
- ``task_finite`` (``TaskDataset``, ``source_params = {task = NAME, n = ...}``): n samples
  drawn once per seed, shuffled into epochs (``GaussianDataset``'s epochs, n a multiple of K),
  the finite-sample setting; held-out batches are fresh draws.

A run config on them gives no ``rho`` / ``mi`` / ``mi_levels``: the task sets the data. Its
``d`` and ``m`` default to the task's (``dim_x`` and, for a view task, its M views) and must
match them when given. Records carry the task's true MI: ``I(x; y)`` for a pair task; for a
view task ``I(x_a; x_b)`` (``mi_pairwise``) and ``I(x_a; X_{\\a})`` (``mi_one_vs_rest``), the
objective's target the one it estimates.

Example:
    >>> from mibounds.harness import RunConfig, train
    >>> config = RunConfig("infonce", source="task", steps=4, k=8, eval_batches=2,
    ...     curve_every=2, source_params={"task": "multinormal-dense-2-2-0.5"})
    >>> config.d, config.label()
    (2, 'infonce k=8 task(task=multinormal-dense-2-2-0.5)')
    >>> (record,) = train(config, [0])
    >>> round(record["true_mi"], 4), record["gap"] == record["true_mi"] - record["estimate_mean"]
    (0.2939, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from mibounds._checks import suggest
from mibounds.harness.data import (
    GaussianDataset,
    GaussianStream,
    check_finite_config,
    register_source,
)
from mibounds.tasks import TASKS, Task

__all__ = ["TaskDataset", "TaskStream", "task_dims", "task_of", "task_truth"]


def task_of(params: Mapping[str, Any]) -> Task:
    """The task ``params["task"]`` names, or ``ValueError`` naming the tasks there are."""
    name = params.get("task")
    if not isinstance(name, str) or name not in TASKS:
        raise ValueError(
            f"unknown task {name!r} in source_params{suggest(str(name), TASKS)}; expected one of "
            f"the {len(TASKS)} tasks of mibounds.tasks.TASKS (docs/tasks.md), e.g. "
            "'multinormal-dense-5-5-0.5'"
        )
    return TASKS[name]


def task_dims(params: Mapping[str, Any]) -> tuple[int, int | None]:
    """``(d, m)`` of the task's samples: its dimension and its views (None for a pair task).

    The harness's critics take one ``d`` for both sides, so a pair task with ``dim_x != dim_y``
    is refused.
    """
    task = task_of(params)
    if task.views is None and task.dim_x != task.dim_y:
        raise ValueError(
            f"task {task.name!r} has dim_x = {task.dim_x} != dim_y = {task.dim_y}; the "
            "harness's critics take one dimension d for x and y (use mibounds.estimate instead)"
        )
    return task.dim_x, task.views


def task_truth(params: Mapping[str, Any]) -> dict[str, float]:
    """The task's true MIs in nats: ``pairwise`` (``I(x; y)``, or ``I(x_a; x_b)`` for views)
    and, for a view task, ``one_vs_rest`` (``I(x_a; X_{\\a})``)."""
    task = task_of(params)
    if task.views is None:
        return {"pairwise": task.mi}
    return {"pairwise": float(task.mi_pairwise), "one_vs_rest": task.mi}


class TaskStream(GaussianStream):
    """A task's samples, a fresh batch every step: ``GaussianStream``'s seeded streams (so a
    seed's numbers do not depend on the seeds beside it) drawing from ``mibounds.tasks``.

    Batches: pairs ``x, y: (R, K, d)``; views ``x: (R, K, M, d)``, in the default float dtype.
    """

    def levels(self) -> tuple[float, ...]:
        """One level: the task's data do not change during training."""
        return (0.0,)

    def _draw(self, gen: torch.Generator, rows: int, rho: float) -> tuple[Tensor, ...]:
        """``rows`` i.i.d. samples of the task from one seed's generator (``rho`` unused)."""
        task = task_of(dict(self.config.source_params))
        out = task.sample(rows, generator=gen, device=self.device, dtype=torch.get_default_dtype())
        return out if isinstance(out, tuple) else (out,)


class TaskDataset(TaskStream, GaussianDataset):
    """A finite sample of a task: n samples drawn once per seed, shuffled into epochs
    (``GaussianDataset``'s epochs and indices, ``TaskStream``'s samples); held-out batches are
    fresh draws from the task."""


register_source("task", TaskStream, required=("task",), dims=task_dims, truth=task_truth)
register_source(
    "task_finite",
    TaskDataset,
    required=("task", "n"),
    finite=True,
    check_config=check_finite_config,
    dims=task_dims,
    truth=task_truth,
)
