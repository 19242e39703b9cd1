"""The Gaussian harness: train critics with any objective, sweep grids, reproduce the papers.

- ``interface``: ``Batch`` and the data-source and objective protocols (a leaf).
- ``config``: ``RunConfig`` (one setting), ``Sweep`` (a grid x seeds), TOML loading, shards.
- ``data``: pluggable data sources (``GaussianStream``, the finite ``GaussianDataset``,
  ``register_source``).
- ``sources``: the known-MI tasks of ``mibounds.tasks`` as data sources (``task``,
  ``task_finite``), registered on import.
- ``files``: a user's samples in a file as a finite data source (``file``), registered on
  import; its records carry no true MI.
- ``benchmark``: the ``"estimate"`` kind of sweeps, ``mibounds.estimate`` and the classical
  estimators on the known-MI tasks (``mibounds reproduce known-mi``).
- ``objectives``: the training objectives, built from the catalogue (``mibounds.catalogue``):
  a new estimator registered there trains here.
- ``trainer``: ``train(config, seeds)``, the R seeds of a setting as one batched model.
- ``results``: atomic JSON-lines records, ``load_results`` into a DataFrame.
- ``sweep``: ``run_sweep``, resumable, optionally sharded or in worker processes.
- ``analytic``: estimators at analytic optimal critics, no training.

The papers' reproductions are ``mibounds.reproductions``; the commands, ``mibounds.cli``.
"""

# importing these registers the task data sources and the "estimate" kind of sweeps
from mibounds.harness import benchmark, files, sources  # noqa: F401
from mibounds.harness.config import RunConfig, Sweep, load_sweep, parse_shard, sweep_from_dict
from mibounds.harness.data import (
    SOURCES,
    Batch,
    DataSource,
    GaussianDataset,
    GaussianStream,
    register_source,
)
from mibounds.harness.results import CorruptRecordWarning, append_records, load_results
from mibounds.harness.sweep import run_sweep
from mibounds.harness.trainer import StackedCritic, train, true_mi

__all__ = [
    "SOURCES",
    "Batch",
    "CorruptRecordWarning",
    "DataSource",
    "GaussianDataset",
    "GaussianStream",
    "RunConfig",
    "StackedCritic",
    "Sweep",
    "append_records",
    "load_results",
    "load_sweep",
    "parse_shard",
    "register_source",
    "run_sweep",
    "sweep_from_dict",
    "train",
    "true_mi",
]
