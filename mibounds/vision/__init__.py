"""Image experiments: ResNet encoders trained with the objectives of ``mibounds.bounds`` and
``mibounds.polyview`` on M augmented views per image, and probes that score them.

Modules (one idea each): ``encoders`` (ResNet backbones, the SimCLR projector), ``views``
(multi-view augmentation), ``datasets`` (digits, CIFAR-10, ImageFolder; local files only),
``objectives`` (the training losses, built from the catalogue), ``distributed`` (process groups, a
differentiable all-gather), ``training`` (the training loop, checkpoints, run records), ``probe``
(linear and kNN probes on frozen features) and ``commands`` (``mibounds vision ...``).

Names are imported lazily, so ``import mibounds.vision`` does not import torchvision.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Encoder": "encoders",
    "ViewConfig": "views",
    "MultiView": "views",
    "load_dataset": "datasets",
    "build_objective": "objectives",
    "TrainConfig": "config",
    "train": "training",
    "probe_run": "training",
    "evaluate": "probe",
    "knn_accuracy": "probe",
    "linear_probe": "probe",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mibounds.vision' has no attribute {name!r}")
    module = importlib.import_module(f"mibounds.vision.{_EXPORTS[name]}")
    return getattr(module, name)
