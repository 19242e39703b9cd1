"""What every ``mibounds`` subcommand does with bad input and Ctrl-C: one line on stderr.

A ``ValueError`` (the library's argument and data checks) prints ``mibounds <name>: error:
<message>`` and exits 2, argparse's code for bad usage; Ctrl-C prints what was kept and how to
resume, and exits 130 (the shell's code for SIGINT). No traceback either way: both are the
user's input, not a bug.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable

Command = Callable[[argparse.Namespace], int]


def one_line_errors(name: Callable[[argparse.Namespace], str], kept: str = "") -> Callable:
    """Decorator for a subcommand ``command(args) -> exit code``; ``name(args)`` names it in
    messages ("sweep", "vision train"), ``kept`` says what survives an interruption."""

    def wrap(command: Command) -> Command:
        @functools.wraps(command)
        def run(args: argparse.Namespace) -> int:
            try:
                return command(args)
            except ValueError as err:
                print(f"mibounds {name(args)}: error: {err}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"\nmibounds {name(args)}: interrupted. {kept}".rstrip(), file=sys.stderr)
                return 130

        return run

    return wrap
