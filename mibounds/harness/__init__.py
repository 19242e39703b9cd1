"""The Gaussian harness: train critics with any objective, sweep grids, reproduce the papers.

- ``config``: ``RunConfig`` (one setting), ``Sweep`` (a grid x seeds), TOML loading, shards.
- ``data``: ``Batch`` and pluggable data sources (``GaussianStream``, the finite
  ``GaussianDataset``, ``register_source``).
- ``objectives``: every bound of ``mibounds.bounds`` / ``mibounds.polyview`` as a training
  objective (``OBJECTIVES``, ``register_objective``).
- ``trainer``: ``train(config, seeds)``, the R seeds of a setting as one batched model.
- ``results``: atomic JSON-lines records, ``load_results`` into a DataFrame.
- ``sweep``: ``run_sweep``, resumable, optionally sharded or in worker processes.
- ``reproduce``: ``reproduce(name)``, the papers' figures and tables.
- ``commands``: the ``mibounds sweep | reproduce | plot`` subcommands.
"""

from mibounds.harness.config import RunConfig, Sweep, load_sweep, parse_shard, sweep_from_dict
from mibounds.harness.data import (
    SOURCES,
    Batch,
    DataSource,
    GaussianDataset,
    GaussianStream,
    register_source,
)
from mibounds.harness.objectives import OBJECTIVES, ObjectiveSpec, register_objective
from mibounds.harness.results import CorruptRecordWarning, append_records, load_results
from mibounds.harness.sweep import run_sweep
from mibounds.harness.trainer import StackedCritic, train, true_mi

__all__ = [
    "OBJECTIVES",
    "SOURCES",
    "Batch",
    "CorruptRecordWarning",
    "DataSource",
    "GaussianDataset",
    "GaussianStream",
    "ObjectiveSpec",
    "RunConfig",
    "StackedCritic",
    "Sweep",
    "append_records",
    "load_results",
    "load_sweep",
    "parse_shard",
    "register_objective",
    "register_source",
    "run_sweep",
    "sweep_from_dict",
    "train",
    "true_mi",
]
