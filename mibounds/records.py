"""The run record: one flat JSON object per trained run, the same schema version for every
trainer, read by the reports and the plots by field name (a leaf: it imports nothing from the
package).

A results file holds one record per line (``mibounds.harness.results``). Every record has the
fields of ``RunRecord`` (identity, objective, timing and provenance, ``mibounds.provenance``);
a Gaussian harness run adds those of ``GaussianRecord`` (its config, the true MIs and the
estimate), an image run those of ``VisionRecord`` (its config, loss and probe accuracies), a
benchmark run on a known-MI task those of ``EstimateRecord``.
``check_record`` says what is missing or unknown; the trainers call it on what they return.

Schema versions: 1, the records written before the version field existed (read as they are);
2, this one (adds ``schema_version``, ``trainer``, ``cpu_count``, ``mi_factor``,
``gap_factor``, ``relative_mi_factor`` and ``tag``).
"""

# no "from __future__ import annotations": TypedDict must see NotRequired at class creation

import re
from collections.abc import Mapping
from typing import Any

import pandas as pd
from typing_extensions import NotRequired, TypedDict

__all__ = [
    "SCHEMA_VERSION",
    "EstimateRecord",
    "GaussianRecord",
    "RunRecord",
    "VisionRecord",
    "check_record",
    "curves",
]

SCHEMA_VERSION = 2


class RunRecord(TypedDict):
    """What every run record holds."""

    schema_version: int
    trainer: str
    """``"gaussian"`` (``mibounds.harness.train``) or ``"vision"`` (``mibounds.vision.train``)."""
    setting_key: str
    """A stable hash of the run's configuration without its seed."""
    run_key: str
    """``setting_key/seed``: the run's identity in a results file."""
    seed: int
    objective: str
    objective_label: str
    """``objective(param=value, ...)``."""
    is_bound: bool
    """Whether the run's reported estimate is a lower bound on MI (``False`` for a loss)."""
    wall_time_s: float
    sweep: NotRequired[str]
    grid_hash: NotRequired[str]
    jobs: NotRequired[int]
    executor: NotRequired[str]
    """Where a sweep trained the run: process, dask, slurm, or an executor's class name."""
    # provenance (mibounds.provenance)
    torch_version: str
    mibounds_version: str
    device: str
    threads: int
    cpu_count: int | None
    host: str
    pid: int
    finished_at: str
    git_commit: str


class GaussianRecord(RunRecord):
    """A run of the Gaussian harness: its ``RunConfig`` fields, then the estimate (nats). The
    name is the harness's: its source may also be a known-MI task or a user's data."""

    critic: str
    k: int
    d: int
    m: int | None
    rho: float | None
    mi: float | None
    mi_levels: list[float]
    steps: int
    lr: float
    eval_batches: int
    curve_every: int
    objective_params: dict[str, Any]
    critic_params: dict[str, Any]
    source: str
    source_params: dict[str, Any]
    eval_infonce_k: list[int]
    tag: str
    critic_label: str
    data: str
    """``"pairs"`` or ``"views"``."""
    target: str
    """The MI the objective estimates: ``"pairwise"`` or ``"one_vs_rest"``."""
    estimate_on: str
    """``"held-out"`` or ``"training set"`` (per-item objectives)."""
    rho_final: float | None
    """None for a source with data of its own (``mibounds.harness.data.SourceSpec``)."""
    log_k: float
    mi_pairwise: float | None
    mi_one_vs_rest: float | None
    mi_factor: float | None
    """I(x_a; c) = -(d/2) log(1 - rho) for views (NaN, written null, for pairs)."""
    true_mi: float | None
    """The MI the objective estimates; None (and so ``gap`` and ``relative_mi``) when the
    source's MI is unknown (a user's data)."""
    batched_seeds: int
    estimate_mean: float
    estimate_sd: float
    gap: float | None
    relative_mi: float | None
    gap_one_vs_rest: float | None
    relative_mi_one_vs_rest: float | None
    gap_factor: float | None
    relative_mi_factor: float | None
    diverged_step: int | None
    curve_step: list[int]
    curve_estimate: list[float]


class VisionRecord(RunRecord):
    """A run of the image trainer: its ``TrainConfig`` fields (``config``), then the results."""

    config: dict[str, Any]
    views: int
    batch_size: int
    epochs: int
    epochs_done: int
    steps: int
    """Optimiser steps over the epochs done."""
    final_loss: float | None
    relative_compute: float | None
    """Views processed / the views SimCLR (M = 2) processes in the run's epochs."""
    knn_top1: float | None
    linear_top1: float | None
    probe_seconds: float | None


class EstimateRecord(RunRecord):
    """A benchmark run (``mibounds.harness.benchmark``): one estimator on one sample of a
    known-MI task, its ``EstimateConfig`` fields, then the estimate (nats)."""

    task: str
    estimator: str
    n: int
    params: dict[str, Any]
    options: dict[str, Any]
    """Keyword arguments given to ``mibounds.estimate`` (empty: its defaults)."""
    tag: str
    family: str
    views: int | None
    dim_x: int
    dim_y: int
    target: str
    """``"pairwise"`` I(x; y) or ``"one_vs_rest"`` I(x_a; X_{\\a}) (view tasks)."""
    true_mi: float
    value: float
    """The estimate: held out for ``estimate``, on the whole sample for a classical one."""
    stderr: float | None
    bias: float
    """``value - true_mi`` (NaN, written null, when the value is not finite)."""
    failure: str | None
    """Why the estimate failed (training diverged, a non-finite value), or None."""
    selection: str
    checkpoint_step: int | None
    batch_size: int | None
    settings: dict[str, Any]
    """``Estimate.settings``: the resolved batch size, hidden width, split sizes, ..."""


_SCHEMAS: dict[str, type] = {
    "gaussian": GaussianRecord,
    "vision": VisionRecord,
    "estimate": EstimateRecord,
}
_READOUT = re.compile(r"infonce_k\d+_(mean|sd)")
"""Gaussian records may add held-out InfoNCE readouts at other batch sizes."""


def check_record(record: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming every field that ``record``'s schema requires and it lacks,
    or that the schema does not know."""
    kind = record.get("trainer")
    if kind not in _SCHEMAS:
        raise ValueError(f"record has trainer {kind!r}; expected one of {sorted(_SCHEMAS)}")
    schema = _SCHEMAS[kind]
    required, known = schema.__required_keys__, set(schema.__annotations__)
    missing = sorted(required - set(record))
    unknown = sorted(k for k in set(record) - known if not _READOUT.fullmatch(k))
    if record.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(
            f"record has schema_version {record.get('schema_version')!r}, expected {SCHEMA_VERSION}"
        )
    if missing or unknown:
        raise ValueError(
            f"a {kind} record must have the fields of {schema.__name__}: missing {missing}, "
            f"unknown {unknown}"
        )


def curves(frame: pd.DataFrame) -> pd.DataFrame:
    """Training curves of Gaussian records in long form: a row per (run, curve point) with
    ``step``, ``estimate`` (the mean over the block of steps ending at ``step``, nats),
    ``loss = -estimate`` and every scalar column of ``frame``."""
    scalar = [c for c in frame.columns if c not in ("curve_step", "curve_estimate")]
    long = frame.explode(["curve_step", "curve_estimate"], ignore_index=True)
    long = long.rename(columns={"curve_step": "step", "curve_estimate": "estimate"})
    long["step"] = long["step"].astype(int)
    long["estimate"] = long["estimate"].astype(float)
    long["loss"] = -long["estimate"]
    return long[[*scalar, "step", "estimate", "loss"]]
