"""Benchmark sweeps: ``mibounds.estimate`` and the classical estimators on the known-MI tasks.

The ``"estimate"`` kind of sweep (``mibounds.harness.interface.KINDS``): a sweep TOML with
``trainer = "estimate"`` has ``EstimateConfig`` settings, one (task, estimator, n, options)
each, and everything else of a sweep (seeds, ``[quick]``, several grids, resume, ``--jobs``)::

    name = "my-benchmark"
    trainer = "estimate"
    seeds = 3
    [run]
    n = 5000                                   # samples drawn from the task per seed
    options = {steps = 2000}                   # keyword arguments of mibounds.estimate
    [grid]
    task = ["student-identity-5-5-2", "spiral-multinormal-sparse-3-3-2-2.0"]
    estimator = ["infonce", {name = "eqco", alpha = 512}, "cca", "ksg"]

A run (a setting and a seed) draws n samples of the task from the seed's own stream (so every
estimator of one seed reads the same sample) and estimates its MI: a catalogue estimator with
:func:`mibounds.estimation.estimate` (train / validation / test split, held-out value; views
with the one-vs-rest poly-view estimators), or a classical one on the whole sample (``cca``:
``mibounds.classical.cca_mi``; ``ksg``: ``ksg_mi``; view tasks as ``(x_a, X_{\\a})``
pairs). One ``EstimateRecord`` (``mibounds.records``) per run, with the task's true MI and the
bias ``value - true_mi`` in nats. ``mibounds reproduce known-mi`` is such a sweep.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from mibounds._checks import check_at_least, suggest
from mibounds.catalogue import entry
from mibounds.harness.config import Params, check_keys, digest, freeze_params, params_label
from mibounds.harness.data import derive_seed
from mibounds.harness.interface import KINDS, Kind
from mibounds.provenance import provenance
from mibounds.records import SCHEMA_VERSION, check_record
from mibounds.tasks import TASKS, Task, split_one_vs_rest

__all__ = ["CLASSICAL", "EstimateConfig", "sample_task", "train_group"]


def _classical() -> dict[str, Callable[..., float]]:
    from mibounds.classical import cca_mi, ksg_mi

    return {"cca": cca_mi, "ksg": ksg_mi}


CLASSICAL = ("cca", "ksg")
"""The classical estimators a setting may name: ``cca`` (``mibounds.classical.cca_mi``, the
Gaussian MI of the sample covariance) and ``ksg`` (``ksg_mi``, k = 3 nearest neighbours)."""


def _estimate_options() -> tuple[str, ...]:
    """The keyword arguments of ``estimate`` a setting's ``options`` may give (not the data,
    the estimator, its parameters, the seeds, the device or the progress bar)."""
    from mibounds.estimation import estimate

    fixed = {"x", "y", "views", "estimator", "params", "seeds", "device", "progress"}
    return tuple(p for p in inspect.signature(estimate).parameters if p not in fixed)


@dataclass(frozen=True)
class EstimateConfig:
    """One benchmark setting, validated on construction (no training).

    Attributes:
        task: a name in ``mibounds.tasks.TASKS``.
        estimator: a catalogue name ``mibounds.estimate`` takes for the task's samples
            (``applicable_estimators``), with its ``params``; or one of ``CLASSICAL``.
        n: samples drawn from the task per seed (estimate splits them into train, validation
            and test rows; a classical estimator reads them all).
        options: keyword arguments of ``mibounds.estimate`` (``steps``, ``batch_size``, ...);
            empty: its defaults. A classical estimator does not train: its options are dropped.
        tag: a free label, part of the setting's identity when set.
    """

    task: str
    estimator: str
    n: int = 5000
    params: Params = ()
    options: Params = ()
    tag: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if self.task not in TASKS:
            raise ValueError(
                f"unknown task {self.task!r}{suggest(str(self.task), TASKS)}; expected one of "
                f"the {len(TASKS)} tasks of mibounds.tasks.TASKS (docs/tasks.md)"
            )
        check_at_least(self.n, 2, "n (samples per seed)")
        if not isinstance(self.tag, str):
            raise ValueError(f"tag must be a string, got {self.tag!r}")
        set_(self, "params", freeze_params(self.params, "estimator"))
        set_(self, "options", freeze_params(self.options, "options"))
        check_keys(dict(self.options), _estimate_options(), "options (of mibounds.estimate)")
        if self.estimator in CLASSICAL:
            if self.params:
                raise ValueError(
                    f"classical estimator {self.estimator!r} takes no params, got "
                    f"{dict(self.params)}"
                )
            set_(self, "options", ())  # it does not train: a grid's options do not apply
            return
        from mibounds.estimation import applicable_estimators  # estimation imports the harness

        views = self.task_spec.views is not None
        names = applicable_estimators(views)
        if self.estimator not in names:
            entry(self.estimator)  # an unknown name: the catalogue's message, with a suggestion
            what = "view task (one-vs-rest MI)" if views else "pair task"
            raise ValueError(
                f"estimator {self.estimator!r} cannot estimate the MI of {what} {self.task!r}; "
                f"use one of {[*names, *CLASSICAL]}"
            )
        entry(self.estimator).check_params(dict(self.params))

    @property
    def task_spec(self) -> Task:
        """The task, ``TASKS[self.task]``."""
        return TASKS[self.task]

    @property
    def estimator_label(self) -> str:
        """``estimator(param=value, ...)``, e.g. ``eqco(alpha=512)``."""
        return params_label(self.estimator, self.params)

    def label(self) -> str:
        """``task estimator [n=..] [options] [tag=..]``: the setting in one line."""
        options = f" {params_label('options', self.options)}" if self.options else ""
        tag = f" tag={self.tag}" if self.tag else ""
        return f"{self.task} {self.estimator_label} n={self.n}{options}{tag}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (parameters as dicts)."""
        out = dataclasses.asdict(self)
        out["params"], out["options"] = dict(self.params), dict(self.options)
        return out

    def key(self) -> str:
        """A stable 16-hex-digit hash of every field: the identity of this setting."""
        return digest({"kind": "estimate", **self.to_dict()})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "estimate config") -> EstimateConfig:
        """Build from TOML-style values: ``estimator`` may be a name or a table
        ``{name = ..., **params}``; unknown keys are an error."""
        values = dict(values)
        spec = values.get("estimator")
        if isinstance(spec, Mapping):
            spec = dict(spec)
            if "name" not in spec:
                raise ValueError(f"estimator table in {where} needs a 'name', got {spec}")
            values["estimator"] = spec.pop("name")
            values["params"] = {**dict(values.get("params", {})), **spec}
        check_keys(values, [f.name for f in dataclasses.fields(cls)], where)
        for name in ("task", "estimator"):
            if name not in values:
                raise ValueError(f"{where} needs a {name}")
        return cls(**values)


def sample_task(task: Task, n: int, seed: int) -> tuple[torch.Tensor, ...]:
    """The n samples of a run: ``(x, y)`` each ``(n, d)`` for a pair task, ``(views,)`` with
    ``views: (n, M, d)`` for a view task, float64, from the seed's stream ``"task-sample"``
    (``mibounds.harness.data.derive_seed``): every estimator of one seed reads the same sample.

    Example:
        >>> x, y = sample_task(TASKS["1v1-normal-0.75"], 10, seed=0)
        >>> x.shape, torch.equal(x, sample_task(TASKS["1v1-normal-0.75"], 10, seed=0)[0])
        (torch.Size([10, 1]), True)
    """
    generator = torch.Generator().manual_seed(derive_seed(seed, "task-sample"))
    out = task.sample(n, generator=generator)
    return out if isinstance(out, tuple) else (out,)


_FAILED = {
    "value": math.nan,
    "stderr": None,
    "is_bound": False,
    "selection": "none: training failed",
    "checkpoint_step": None,
    "batch_size": None,
    "settings": {},
}


def _run(setting: EstimateConfig, seed: int, device: str, progress: bool) -> dict[str, Any]:
    """One run's estimate: ``value`` (nats; NaN when training failed), ``failure`` (why, or
    None), ``stderr``, ``is_bound``, ``selection``, ``checkpoint_step``, ``batch_size``,
    ``settings`` and the ``device`` it ran on. A failed training (``estimate`` raising on a
    non-finite estimate) is a result of the benchmark, recorded, not an error of the sweep."""
    task = setting.task_spec
    data = sample_task(task, setting.n, seed)
    if setting.estimator in CLASSICAL:
        x, y = split_one_vs_rest(data[0]) if task.views else data
        return {
            "value": _classical()[setting.estimator](x, y),
            "failure": None,
            "stderr": None,
            "is_bound": False,
            "selection": "none: the whole sample, no training",
            "checkpoint_step": None,
            "batch_size": None,
            "settings": {},
            "device": "cpu",
        }
    from mibounds.estimation import estimate

    inputs = {"views": data[0]} if task.views else {"x": data[0], "y": data[1]}
    try:
        result = estimate(
            **inputs,
            estimator=setting.estimator,
            params=dict(setting.params),
            seeds=[seed],
            device=device,
            progress=progress,
            **dict(setting.options),
        )
    except (ValueError, FloatingPointError) as err:  # the setting was checked: training failed
        return {**_FAILED, "failure": str(err), "device": device}
    failure = None if math.isfinite(result.value) else f"the estimate is {result.value}"
    return {
        "value": result.value,
        "failure": failure,
        "stderr": result.stderr if math.isfinite(result.stderr) else None,
        "is_bound": result.is_bound,
        "selection": result.selection,
        "checkpoint_step": result.steps[0],
        "batch_size": result.settings.get("batch_size"),
        "settings": dict(result.settings),
        "device": str(result.settings.get("device", device)),
    }


def train_group(
    setting: EstimateConfig,
    seeds: Sequence[int],
    *,
    device: str = "cpu",
    extra: dict[str, Any] | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Estimate the MI of ``setting``'s task once per seed (each on its own sample); one
    ``EstimateRecord`` each, in ``seeds`` order. ``bias = value - true_mi`` (nats)."""
    task = setting.task_spec
    records = []
    for seed in seeds:
        started = time.perf_counter()
        out = _run(setting, seed, device, progress)
        record = {
            "schema_version": SCHEMA_VERSION,
            "trainer": "estimate",
            **(extra or {}),
            "setting_key": setting.key(),
            "run_key": f"{setting.key()}/{seed}",
            "seed": seed,
            "objective": setting.estimator,
            "objective_label": setting.estimator_label,
            "is_bound": out["is_bound"],
            "wall_time_s": time.perf_counter() - started,
            **provenance(out["device"]),
            **setting.to_dict(),
            "family": task.family,
            "views": task.views,
            "dim_x": task.dim_x,
            "dim_y": task.dim_y,
            "target": "pairwise" if task.views is None else "one_vs_rest",
            "true_mi": task.mi,
            "value": out["value"],
            "stderr": out["stderr"],
            "bias": out["value"] - task.mi,
            "failure": out["failure"],
            "selection": out["selection"],
            "checkpoint_step": out["checkpoint_step"],
            "batch_size": out["batch_size"],
            "settings": out["settings"],
        }
        check_record(record)
        records.append(record)
    return records


KINDS["estimate"] = Kind("estimate", EstimateConfig, train_group)
