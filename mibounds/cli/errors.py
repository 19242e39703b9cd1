"""What every ``mibounds`` subcommand does with bad input and Ctrl-C: one line on stderr.

A ``ValueError`` (the library's argument and data checks) or an ``OSError`` (a file that cannot
be read or written) prints ``mibounds <name>: error: <message>`` and exits 2, argparse's code
for bad usage; Ctrl-C prints what was kept and how to resume, and exits 130 (the shell's code
for SIGINT). No traceback either way, unless ``--debug`` asks for one: both are the user's input
or machine, not a bug.
"""

from __future__ import annotations

import argparse
import functools
import os
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
            except BrokenPipeError:  # the reader went away (`| head`): nothing left to say
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                return 141
            except (ValueError, OSError) as err:
                if getattr(args, "debug", False):
                    raise
                message = " ".join(str(err).split())  # one line, whatever the message holds
                print(f"mibounds {name(args)}: error: {message}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"\nmibounds {name(args)}: interrupted. {kept}".rstrip(), file=sys.stderr)
                return 130

        return run

    return wrap
