"""The ``mibounds`` command line: one module per area registers its subcommands.

- ``estimate``: ``estimate FILE``, the MI of a user's samples;
- ``harness``: ``sweep``, ``reproduce``, ``plot``, ``analytic``;
- ``vision``: ``vision train``, ``vision probe``;
- ``options``: what every subcommand shares (``--device``, ``--threads``, ``--jobs``, ``--out``,
  ``--no-progress``, ``--debug``) and options generated from config dataclasses;
- ``errors``: bad input and Ctrl-C as one line on stderr.

``python -m mibounds`` with no arguments runs ``mibounds analytic``, the training-free check
of every estimator against the true MI on Poole's staircase.
"""

from __future__ import annotations

import argparse
import signal
import sys
import typing

from mibounds.cli import estimate, harness, vision

__all__ = ["build_parser", "entry", "main"]


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose usage errors (an unknown option or choice, a value of the wrong
    type) are one line, as every other bad input is (the usage is one ``--help`` away)."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mibounds",
        description="Estimate and maximise variational lower bounds on mutual information.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    estimate.register(sub)
    harness.register(sub)
    vision.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv or ["analytic"])
    return int(args.func(args) or 0)


def entry() -> typing.NoReturn:
    """The ``mibounds`` program: ``main`` on ``sys.argv``, then exit with its code.

    Ctrl-C during a command is the command's to answer (``errors``: exit 130). Once the command
    has returned, everything it does is saved, so a Ctrl-C while the interpreter tears down
    (torch's teardown takes a while) is ignored: left to Python it would kill the process with
    SIGINT (exit -2) after a complete run.
    """
    try:
        code = main()
    except KeyboardInterrupt:  # before a command started (imports, parsing) or as it returned
        print("\nmibounds: interrupted.", file=sys.stderr)
        code = 130
    finally:  # also after argparse's own exits (--help, a usage error)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(code)
