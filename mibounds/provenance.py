"""Where and with what a run ran: one record of provenance for every trainer (a leaf).

``provenance(device)`` gives versions (torch, mibounds), the device, torch's thread count, the
machine's CPU count, the host, the process id, the time the run finished and the git commit of
the code (with ``+uncommitted`` when the package differs from it), so that every table can say
how its numbers were made from the records alone.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import torch

__all__ = ["git_commit", "provenance"]

_PACKAGE = Path(__file__).resolve().parent


@functools.cache
def git_commit() -> str:
    """The checkout's commit, with ``+uncommitted`` if the package differs from it (new files
    included: ``git describe --dirty`` would miss those); ``"unknown"`` outside a checkout (an
    installed wheel)."""

    def git(*args: str) -> str:
        out = subprocess.run(
            ["git", *args], cwd=_PACKAGE, capture_output=True, text=True, timeout=10, check=True
        )
        return out.stdout.strip()

    try:
        top = Path(git("rev-parse", "--show-toplevel"))
        if not (top / "mibounds").resolve() == _PACKAGE:  # the package is not this checkout's
            return "unknown"
        commit = git("rev-parse", "--short=12", "HEAD")
        changed = git("status", "--porcelain", "--", str(_PACKAGE))
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+uncommitted" if changed else "")


def provenance(device: torch.device | str) -> dict[str, object]:
    """Where a run ran, as record fields: ``torch_version``, ``mibounds_version``, ``device``,
    ``threads``, ``cpu_count``, ``host``, ``pid``, ``finished_at`` (UTC, ISO 8601) and
    ``git_commit``."""
    from mibounds import __version__

    return {
        "torch_version": torch.__version__,
        "mibounds_version": __version__,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "host": platform.node(),
        "pid": os.getpid(),
        "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
    }
