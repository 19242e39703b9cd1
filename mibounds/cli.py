"""The ``mibounds`` command line: each area registers its own subcommands.

``python -m mibounds`` with no arguments runs ``mibounds analytic``, the training-free check
of every estimator against the true MI on Poole's staircase.
"""

from __future__ import annotations

import argparse
import sys

from mibounds.harness import analytic
from mibounds.harness import commands as harness_commands
from mibounds.vision import commands as vision_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mibounds",
        description="Estimate and maximise variational lower bounds on mutual information.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    analytic.register(sub)
    harness_commands.register(sub)
    vision_commands.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv or ["analytic"])
    return int(args.func(args) or 0)
