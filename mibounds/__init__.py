"""mibounds: variational lower bounds on mutual information, pairwise and poly-view, in PyTorch.

``mibounds.estimate(x, y)`` (``mibounds.estimation``) estimates MI from your own samples; it and
``Estimate`` are imported on first use, so ``import mibounds`` stays light.
"""

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {"estimate": "mibounds.estimation", "Estimate": "mibounds.estimation"}

__all__ = ["Estimate", "__version__", "estimate"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mibounds' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
