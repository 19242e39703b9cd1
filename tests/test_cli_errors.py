"""Tests of mibounds.cli.errors: bad input and Ctrl-C become one stderr line and an exit code."""

from __future__ import annotations

import argparse

import pytest

from mibounds.cli.errors import one_line_errors

ARGS = argparse.Namespace(command="sweep")


def named(kept: str = ""):
    return one_line_errors(lambda args: args.command, kept)


def test_a_value_error_is_one_line_and_exit_code_2(capsys) -> None:
    def bad(args):
        raise ValueError("rho must be in [0, 1), got 1.5")

    assert named()(bad)(ARGS) == 2
    err = capsys.readouterr().err
    assert err == "mibounds sweep: error: rho must be in [0, 1), got 1.5\n"


def test_ctrl_c_says_what_is_kept_and_exits_130(capsys) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    assert named("All runs are saved.")(interrupted)(ARGS) == 130
    assert capsys.readouterr().err == "\nmibounds sweep: interrupted. All runs are saved.\n"
    assert named()(interrupted)(ARGS) == 130
    assert capsys.readouterr().err == "\nmibounds sweep: interrupted.\n"


def test_success_and_other_errors_pass_through(capsys) -> None:
    assert named()(lambda args: 0)(ARGS) == 0

    def bug(args):
        raise RuntimeError("a bug keeps its traceback")

    with pytest.raises(RuntimeError):
        named()(bug)(ARGS)
    assert capsys.readouterr().err == ""
