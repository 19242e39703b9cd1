"""Image runs in the harness's sweeps: the ``"vision"`` kind of ``mibounds.harness.interface``.

A sweep TOML with ``trainer = "vision"`` has ``TrainConfig`` settings (its ``[run]`` and
``[grid]`` keys are ``TrainConfig``'s; ``objective`` may be a table ``{name = ..., **params}``),
and everything else of a sweep: seeds, ``[quick]``, several grids, shards, resume, the executors.
``train_group`` trains a setting's seeds one after the other, each in its own run directory
``<workdir>/<setting key>/seed<seed>`` (so a killed sweep resumes a run from its last epoch's
checkpoint), and returns one ``VisionRecord`` per seed (``mibounds.records``). ``epochs = 0``
is a run that only probes the untrained encoder, the floor of an image table.

Importing this module registers the kind; ``mibounds.cli`` and the image reproductions do.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mibounds.harness.interface import KINDS, Kind
from mibounds.records import SCHEMA_VERSION, check_record
from mibounds.vision.config import TrainConfig

__all__ = ["train_group", "vision_record"]


def vision_record(config: TrainConfig, run: dict[str, Any], extra: dict[str, Any]) -> dict:
    """The flat ``VisionRecord`` of a finished run: ``run`` is ``mibounds.vision.train``'s."""
    probe = run["probe"] or {}
    metrics = run["metrics"]
    record = {
        "schema_version": SCHEMA_VERSION,
        "trainer": "vision",
        **extra,
        "setting_key": config.key(),
        "run_key": f"{config.key()}/{config.seed}",
        "seed": config.seed,
        "objective": config.objective,
        "objective_label": config.objective_label,
        "is_bound": False,  # a training loss; the image trainer reports no MI estimate
        "wall_time_s": run["wall_time_s"],
        **run["provenance"],
        "config": config.to_dict(),
        "views": config.views,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "epochs_done": run["epochs_done"],
        "steps": run["steps_per_epoch"] * run["epochs_done"],
        "final_loss": metrics[-1]["loss"] if metrics else None,
        "relative_compute": run["relative_compute"],
        "knn_top1": probe.get("knn_top1"),
        "linear_top1": probe.get("linear_top1"),
        "probe_seconds": probe.get("seconds"),
    }
    check_record(record)
    return record


def train_group(
    setting: TrainConfig,
    seeds: Sequence[int],
    *,
    device: str = "auto",
    extra: dict[str, Any] | None = None,
    workdir: str | Path,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """Train ``setting`` once per seed, each in ``<workdir>/<setting key>/seed<seed>`` (resumed
    from its checkpoint if one is there); one ``VisionRecord`` each, in ``seeds`` order."""
    from mibounds.vision.training import train

    records = []
    for seed in seeds:
        out = Path(workdir) / setting.key() / f"seed{seed}"
        config = setting.replace(seed=seed, out=str(out), device=str(device), progress=progress)
        records.append(vision_record(config, train(config), dict(extra or {})))
    return records


KINDS["vision"] = Kind("vision", TrainConfig, train_group)
