"""The catalogue of bad inputs (docs/reliability.md), as data: each case is one bad input and a
fragment of the one-line message it must give.

A library case is a Python call (the text is evaluated), which must raise ``ValueError`` with a
one-line message. A command-line case is a ``mibounds`` command run by ``mibounds.cli.main``
in this process, in an empty directory (after its ``setup`` wrote the files it names; ``--out
out`` is added where the command takes one): it must exit 2 with exactly one line on stderr
(``mibounds <command>: error: ...``), no traceback, and leave the directory as it was (no
``out``, results, checkpoint or probe file). The options of ``mibounds vision train`` are
generated from ``TrainConfig``'s fields and the objectives' parameters from the catalogue's
``Param`` lists; a test fails when a field or a parameter has no bad value here.

``PYTHONPATH=. python tests/test_bad_input.py`` (from the repository root) prints the tables of
docs/reliability.md, every message as the code gives it now.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import pickle
import re
import shlex
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from mibounds.catalogue import CATALOGUE, REQUIRED
from mibounds.cli import main
from mibounds.vision.config import TrainConfig

GROUPS = ("library functions", "configs and grids", "the command line", "files and data")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "reliability.md"
TAKES_OUT = (("vision", "train"), ("sweep",), ("reproduce",))


@dataclass(frozen=True)
class Case:
    """One bad input: a library call or a ``mibounds`` command line (``library``), the
    fragment its message must hold, and what writes the files it names (``setup(tmp)``)."""

    id: str
    group: str
    input: str
    expect: str
    setup: Callable[[Path], object] | None = None
    note: str = ""  # what the setup made, for the docs
    library: bool = False
    needs_run: bool = False  # the command names RUN, a trained run directory
    skip: str = ""  # why it cannot run on this machine
    unclear: str = ""  # why it is not yet answered in one line (an expected failure)

    def argv(self) -> list[str]:
        args = shlex.split(self.input)
        if any(tuple(args[: len(c)]) == c for c in TAKES_OUT) and "--out" not in args:
            args += ["--out", "out"]
        return args


CASES: list[Case] = []


def add(group: str, id: str, input: str, expect: str, **kw) -> None:
    CASES.append(Case(id, group, input, expect, **kw))


# ---------------------------------------------------------------------------- library functions

LIBRARY = [
    ("bounds-1d", "bounds.infonce(torch.zeros(5))", "must have shape (..., K, K)"),
    ("bounds-k1", "bounds.nwj(torch.zeros(1, 1))", "needs K >= 2 samples"),
    ("bounds-nan", "bounds.dv(torch.tensor([[1, nan], [0, 1]]))", "has 1 non-finite entries"),
    ("bounds-int", "bounds.js(torch.zeros(3, 3, dtype=torch.long))", "floating-point tensor"),
    ("bounds-not-square", "bounds.nwj(torch.zeros(3, 4))", "must be square"),
    ("bounds-n-below-k", "bounds.infonce(torch.zeros(4, 3))", "N >= K candidates"),
    ("bounds-not-a-tensor", "bounds.infonce([[0.0, 1.0], [1.0, 0.0]])", "must be a torch.Tensor"),
    ("bounds-overflow", "bounds.nwj(torch.full((4, 4), 1e4))", "overflow"),
    ("bounds-eqco-alpha-0", "bounds.eqco(torch.zeros(3, 3), alpha=0.0)", "alpha must be"),
    ("bounds-eqco-alpha-bool", "bounds.eqco(torch.zeros(3, 3), alpha=True)", "alpha must be"),
    ("bounds-interpolated-alpha", "bounds.interpolated(torch.zeros(3, 3), alpha=1.5)", "alpha"),
    ("bounds-smile-clip-0", "bounds.smile(torch.zeros(3, 3), clip=0.0)", "clip must be"),
    ("bounds-tuba-baseline", "bounds.tuba(torch.zeros(3, 3), torch.zeros(4))", "log_baseline must"),
    ("bounds-mine-momentum-1", "bounds.MINE(momentum=1.0)", "momentum must"),
    ("polyview-shape", "polyview.arithmetic(torch.zeros(4, 3, 4, 2))", "(..., K, M, K, M)"),
    ("polyview-m1", "polyview.geometric(torch.zeros(4, 1, 4, 1))", "needs M >= 2 views"),
    (
        "polyview-negatives",
        "polyview.multicrop(torch.zeros(4, 3, 4, 3), negatives='every_view')",
        "negatives must be one of",
    ),
    (
        "multicrop-bound-string",
        "polyview.multicrop(torch.zeros(4, 3, 4, 3), 'nwj')",
        "bound must be a pairwise estimator (a callable",
    ),
    (
        "one-vs-rest-bound-string",
        "polyview.one_vs_rest(torch.zeros(3, 4, 4), bound='x')",
        "bound must be a pairwise estimator (a callable",
    ),
    (
        "sufficient-statistics-bound-string",
        "polyview.sufficient_statistics(torch.zeros(4, 3, 2), bound='x')",
        "bound must be a pairwise estimator (a callable",
    ),
    ("one-vs-rest-shape", "polyview.one_vs_rest(torch.zeros(3, 4, 5))", "(..., M, K, K)"),
    ("loss-temperature", "polyview_loss.polyview_loss(torch.zeros(4, 3, 2), 0.0)", "temperature"),
    (
        "loss-offset",
        "polyview_loss.polyview_loss(torch.zeros(4, 3, 2), offset=-1)",
        "offset must be",
    ),
    ("gaussian-rho-1", "gaussian.mi_from_rho(1.0, 2)", "rho must lie in (-1, 1)"),
    ("gaussian-k1", "gaussian.sample_pairs(1, 2, 0.5)", "k must be an integer >= 2"),
    ("gaussian-d0", "gaussian.rho_from_mi(1.0, 0)", "d must be an integer >= 1"),
    ("gaussian-mi-too-large", "gaussian.rho_from_mi(1000.0, 1)", "needs rho = 1"),
    ("gaussian-int", "gaussian.sample_pairs(4, 2, 0.5, dtype=torch.int64)", "floating-point"),
    ("gaussian-cov", "gaussian.gaussian_mi(torch.ones(2, 2), [0], [1])", "positive definite"),
    ("critic-similarity", "critics.SeparableCritic(3, similarity='l2')", "similarity must be"),
    ("critic-temperature", "critics.SeparableCritic(3, temperature=0.0)", "temperature must be"),
    (
        "critic-wrong-d",
        "critics.ConcatCritic(3)(torch.zeros(4, 2), torch.zeros(4, 2))",
        "built for d = 3",
    ),
    (
        "critic-shapes",
        "critics.SeparableCritic(3)(torch.zeros(4, 3), torch.zeros(5, 3))",
        "same shape",
    ),
    ("catalogue-unknown", "catalogue.entry('infonse')", "did you mean 'infonce'"),
    (
        "catalogue-unknown-param",
        "catalogue.entry('eqco').check_params({'alpah': 1.0})",
        "'eqco' got unknown parameter 'alpah'",
    ),
    ("catalogue-k1", "catalogue.is_bound('infonce', 1)", "k must be an integer >= 2"),
    (
        "sogclr-index",
        "sogclr.GlobalContrastive(4)(torch.zeros(3, 3), torch.tensor([0, 1, 4]))",
        "[0, 4)",
    ),
    ("barlow-beta", "barlow.MultiViewBarlowLoss(beta=-0.1)", "beta must be a finite number >= 0"),
    (
        "tiled-dtypes",
        "tiled.negatives_logsumexp(torch.zeros(2, 2, 3), torch.zeros(2, 2, 3).double())",
        "dtype of anchors",
    ),
    ("ksg-k", "classical.ksg_mi(np.eye(10), np.eye(10), 10)", "n > k samples"),
    ("task-n1", "tasks.TASKS['1v1-additive-0.1'].sample(1)", "n must be an integer >= 2"),
    ("take-too-many", "datasets.load_dataset('digits')[0].take(5000)", "subset of 5000"),
    (
        "samples-n-mismatch",
        "arrays.as_samples(np.arange(10.0).reshape(5, 2), np.arange(4.0))",
        "same number of rows n, got 5 and 4",
    ),
    (
        "samples-nan-rows",
        "arrays.as_samples(np.array([[1.0, nan], [2, 3], [nan, 1]]), np.arange(3.0))",
        "x has 2 of 3 rows with NaN or inf",
    ),
    (
        "samples-constant-column",
        "arrays.as_samples(np.arange(6.0).reshape(3, 2) * [1, 0], np.arange(3.0))",
        "x has constant columns [1]",
    ),
    (
        "samples-non-numeric",
        "arrays.as_samples(np.array(['a', 'b']), np.arange(2.0))",
        "x must hold real numbers",
    ),
    (
        "samples-3d",
        "arrays.as_samples(np.random.rand(4, 2, 2), np.arange(4.0))",
        "x must have shape (n, d) or (n,)",
    ),
    (
        "samples-one-view",
        "arrays.as_samples(views=np.random.rand(4, 1, 2))",
        "views needs M >= 2 views",
    ),
    (
        "estimate-too-few-rows",
        "estimation.estimate(np.arange(20.0), np.arange(20.0) ** 2)",
        "too few for a held-out estimate",
    ),
    (
        "estimate-batch-too-big",
        "estimation.estimate(np.arange(600.0), np.arange(600.0) ** 2, batch_size=512)",
        "each part needs at least batch_size = 512 rows",
    ),
    (
        "estimate-unknown",
        "estimation.estimate(np.arange(600.0), np.arange(600.0) ** 2, estimator='infonc')",
        "unknown estimator 'infonc'",
    ),
    (
        "estimate-views-on-pairs",
        "estimation.estimate(np.arange(600.0), np.arange(600.0) ** 2, estimator='arithmetic')",
        "cannot estimate from pairs x, y",
    ),
    (
        "estimate-selection",
        "estimation.estimate(np.arange(600.0), np.arange(600.0) ** 2, selection='max')",
        "selection must be one of",
    ),
]


def _namespace() -> dict:
    """What the library cases' text may name: torch, numpy, NaN and the package's modules."""
    import importlib

    modules = (
        "arrays barlow bounds catalogue classical critics estimation gaussian polyview "
        "polyview_loss sogclr tasks tiled"
    )
    names = {n: importlib.import_module(f"mibounds.{n}") for n in modules.split()}
    datasets = importlib.import_module("mibounds.vision.datasets")
    return {"torch": torch, "np": np, "nan": float("nan"), "datasets": datasets, **names}


for id, call, expect in LIBRARY:
    add("library functions", id, call, expect, library=True)

# --------------------------------------------------------------- configs: TrainConfig's fields


def _write(path: Path, data: bytes | str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)


def files(contents: dict[str, bytes | str | None]) -> Callable[[Path], None]:
    """A setup writing each ``path: data`` (None: a directory)."""

    def setup(tmp: Path) -> None:
        for name, data in contents.items():
            (tmp / name).mkdir(parents=True) if data is None else _write(tmp / name, data)

    return setup


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else repr(value)


def _kind(f: dataclasses.Field) -> str:
    """How a field's bad values are made: from its annotation and its metadata."""
    hint = typing.get_type_hints(TrainConfig)[f.name]
    types = {a for a in typing.get_args(hint) if a is not type(None)} or {hint}
    if f.metadata.get("choices") is not None:
        return "choice"
    if typing.get_origin(hint) is tuple:
        return "scale"
    if types <= {int, float}:
        return "number"
    if types == {bool}:
        return "flag"
    return {"device": "device", "objective_params": "table"}.get(f.name, "text")


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
# one value out of range per numeric field (the ranges are the documented ones in --help)
OUT_OF_RANGE = {
    "image_size": 0, "subset": 1, "views": 0, "jitter": -0.5, "grayscale_p": 1.5,
    "flip_p": -0.1, "proj_hidden": 0, "proj_dim": 0, "temperature": 0.0, "batch_size": 1,
    "epochs": -1, "lr": 0.0, "momentum": 1.0, "weight_decay": -1.0, "warmup_epochs": -1.0,
    "seed": -1, "workers": -1, "probe_epochs": 0, "knn_k": 0, "knn_temperature": 0.0,
    "dist_timeout": 0.0, "memory_budget": 0.0,
}  # fmt: skip
CONFIGS = "configs and grids"


def in_config(id: str, name: str, value, expect: str) -> None:
    """``vision train --config train.toml`` of the one key ``name = value``."""
    line = f"{name} = {_toml(value)}"
    setup = files({"train.toml": line + "\n"})
    add(CONFIGS, id, "vision train --config train.toml", expect, setup=setup, note=f"`{line}`")


for name, f in FIELDS.items():
    kind, flag = _kind(f), "--" + name.replace("_", "-")
    shown = f"{name} ({flag})"
    if kind == "number":
        bad = OUT_OF_RANGE[name]
        add(CONFIGS, f"{name}-out-of-range", f"vision train {flag} {bad}", f"{shown} must be")
        in_config(f"{name}-true", name, True, f"{shown} must be")
    elif kind == "choice":
        add(CONFIGS, f"{name}-unknown", f"vision train {flag} bogus", "invalid choice: 'bogus'")
        in_config(f"{name}-unknown-in-config", name, "bogus", f"{shown} must be one of")
    elif kind == "flag":
        in_config(f"{name}-not-a-bool", name, 1, f"{shown} must be true or false")
    elif kind == "text":
        in_config(f"{name}-empty", name, "", f"{shown} must be a non-empty string")
    elif kind == "table":
        in_config(f"{name}-not-a-table", name, 3, "objective_params must be a table")
    elif kind == "scale":
        add(CONFIGS, f"{name}-reversed", f"vision train {flag} 0.5,0.2", f"{shown} must satisfy")
        add(CONFIGS, f"{name}-one-number", f"vision train {flag} 0.5", "expected LOW,HIGH")
    elif kind == "device":
        in_config(f"{name}-in-config", name, "foo", f"{shown} must be one of auto, cpu")

for id, command, expect in (
    ("unknown-option", "vision train --epohcs 3", "unrecognized arguments: --epohcs"),
    ("warmup-past-epochs", "vision train --epochs 2 --warmup-epochs 3", "must lie in [0, epochs"),
    ("simclr-three-views", "vision train --objective simclr -M 3", "'simclr' needs 2 <= M <= 2"),
    ("polyview-one-view", "vision train --objective arithmetic -M 1", "needs M >= 2 views"),
    ("image-too-small", "vision train --image-size 4", "too small for the tiny encoder's stem"),
    ("crop-too-small", "vision train --crop-scale 0.02,1", "too small for crop_scale"),
    ("batch-over-subset", "vision train --subset 8 -K 16", "K = 16 exceeds the 8 training images"),
    ("sync-bn-on-cpu", "vision train --sync-bn --device cpu", "sync_bn needs CUDA"),
    ("param-unknown", "vision train --param beta=0.1", "'simclr' got unknown parameter 'beta'"),
    ("param-without-equals", "vision train --param alpha", "--param takes NAME=VALUE"),
    ("param-without-name", "vision train --param =3", "--param takes NAME=VALUE"),
):
    add(CONFIGS, id, command, expect)
in_config("unknown-key", "epoch", 3, "unknown key 'epoch' in train.toml (did you mean")

# ------------------------------------------------------- configs: the catalogue's parameters

# bad values by parameter name (a name means the same wherever it appears); numbers also get a
# bool (true)
PARAM_BAD = {
    "log_baseline": "nan", "clip": "0", "alpha": "0", "momentum": "1", "gamma": "0",
    "beta": "-1", "bound": "nope", "negatives": "every_view", "normalize": "1",
}  # fmt: skip
NUMERIC_PARAMS = {"log_baseline", "clip", "alpha", "momentum", "gamma", "beta"}

for objective, e in CATALOGUE.items():
    for p in e.params:
        for value in [PARAM_BAD[p.name]] + ["true"] * (p.name in NUMERIC_PARAMS):
            command = f"vision train --objective {objective} --param {p.name}={value}"
            add(CONFIGS, f"param-{objective}-{p.name}-{value}", command, f"'{objective}': {p.name}")
        if p.default is REQUIRED:
            command = f"vision train --objective {objective}"
            expect = f"needs parameter '{p.name}'"
            add(CONFIGS, f"param-{objective}-{p.name}-missing", command, expect)

# -------------------------------------------------------------------- configs: sweep grids

SWEEP = """name = "bad"
seeds = 1
[run]
k = 4
d = 1
rho = 0.5
steps = 2
eval_batches = 2
curve_every = 1
lr = 0.01
critic = {name = "separable", hidden_dim = 4, embed_dim = 2, n_hidden = 1}
[grid]
objective = ["infonce"]
"""
GRID = 'objective = ["infonce"]'
CRITIC = "n_hidden = 1}"
TASK = '{name = "task", task = "%s"}'


def sweep_config(old: str = "", new: str = "") -> Callable[[Path], None]:
    assert old in SWEEP, old
    return files({"sweep.toml": SWEEP.replace(old, new)})


for id, old, new, expect in (
    ("rho-1.5", "rho = 0.5", "rho = 1.5", "rho must lie in [0, 1), got 1.5"),
    ("rho-in-grid", GRID, GRID + "\nrho = [0.5, 1.5]", "rho must lie in [0, 1)"),
    ("k-1", "k = 4", "k = 1", "k must be an integer >= 2"),
    ("unknown-run-key", "d = 1", "d = 1\nkk = 3", "unknown key 'kk'"),
    ("unknown-grid-key", GRID, 'objectve = ["infonce"]', "unknown key 'objectve'"),
    ("unknown-top-key", 'name = "bad"', 'name = "bad"\nextra = 1', "unknown key 'extra'"),
    ("eqco-alpha-0", GRID, 'objective = [{name = "eqco", alpha = 0}]', "alpha must be a number"),
    ("eqco-without-alpha", GRID, 'objective = ["eqco"]', "'eqco' needs parameter 'alpha'"),
    ("interpolated-alpha-0", GRID, 'objective = [{name = "interpolated", alpha = 0}]',
     "alpha must be a number in (0, 1]"),
    ("smile-clip-negative", GRID, 'objective = [{name = "smile", clip = -1}]',
     "clip must be a number in (0"),
    ("mine-momentum-1", GRID, 'objective = [{name = "mine", momentum = 1}]',
     "momentum must be a number in [0, 1)"),
    ("similarity-l2", CRITIC, 'n_hidden = 1, similarity = "l2"}', "similarity must be one of"),
    ("temperature-0", CRITIC, "n_hidden = 1, temperature = 0}", "temperature must be"),
    ("critic-unknown", '{name = "separable"', '{name = "seperable"', "unknown critic"),
    ("lr-true", "lr = 0.01", "lr = true", "lr must be"),
    ("steps-0", "steps = 2", "steps = 0", "steps must be"),
    ("seeds-0", "seeds = 1", "seeds = 0", "seeds (a count) must be an integer >= 1"),
    ("grid-empty", GRID, "objective = []", "the grid is empty"),
    ("objective-unknown", GRID, 'objective = ["infonse"]', "did you mean 'infonce'"),
    ("source-unknown", "d = 1", 'd = 1\nsource = "imagenet"', "unknown data source 'imagenet'"),
    ("not-toml", "seeds = 1", "seeds = ", "is not valid TOML"),
    ("no-rho", "rho = 0.5", "", "give exactly one of rho (correlation), mi"),
    ("task-unknown", "rho = 0.5", f"source = {TASK % 'student-5'}", "unknown task 'student-5'"),
    ("task-and-rho", "d = 1", f"d = 1\nsource = {TASK % '1v1-normal-0.75'}", "takes no ['rho']"),
    ("task-d", "rho = 0.5", f"source = {TASK % 'multinormal-dense-2-2-0.5'}",
     "d = 1, but source 'task' gives samples of dimension 2"),
    ("task-finite-n", "rho = 0.5",
     'source = {name = "task_finite", task = "1v1-normal-0.75", n = 10}', "multiple of K = 4"),
):  # fmt: skip
    note = f"sweep config with `{new.splitlines()[-1]}`" if new else f"sweep config without `{old}`"
    add(CONFIGS, f"sweep-{id}", "sweep sweep.toml", expect, setup=sweep_config(old, new), note=note)

# ----------------------------------------------------- configs: benchmark grids ("estimate")

BENCH = """name = "bench"
trainer = "estimate"
seeds = 1
[run]
n = 300
[grid]
task = ["1v1-normal-0.75"]
estimator = ["infonce"]
"""
BENCH_GRID = 'estimator = ["infonce"]'

for id, old, new, expect in (
    ("task-unknown", '["1v1-normal-0.75"]', '["1v1-normal"]', "unknown task '1v1-normal'"),
    ("estimator-unknown", BENCH_GRID, 'estimator = ["infonse"]', "did you mean 'infonce'"),
    ("views-estimator-on-pairs", BENCH_GRID, 'estimator = ["arithmetic"]',
     "estimator 'arithmetic' cannot estimate the MI of pair task '1v1-normal-0.75'"),
    ("option-unknown", "n = 300", "n = 300\noptions = {stepz = 10}", "unknown key 'stepz'"),
    ("classical-params", BENCH_GRID, 'estimator = [{name = "ksg", k = 5}]',
     "classical estimator 'ksg' takes no params"),
    ("n-1", "n = 300", "n = 1", "n (samples per seed) must be an integer >= 2"),
):  # fmt: skip
    assert old in BENCH, old
    note = f"benchmark grid with `{new.splitlines()[-1]}`"
    setup = files({"bench.toml": BENCH.replace(old, new)})
    add(CONFIGS, f"bench-{id}", "sweep bench.toml", expect, setup=setup, note=note)

# ------------------------------------------------------------------------ the command line

COMMAND = "the command line"
NO_CUDA = "this machine has CUDA" if torch.cuda.is_available() else ""
VALID_SWEEP = sweep_config()
for command, setup in (("vision train", None), ("sweep sweep.toml", VALID_SWEEP)):
    name = command.split()[0]
    for id, option, expect, skip in (
        ("device-foo", "--device foo", "must be one of auto, cpu, cuda, cuda:N or mps", ""),
        ("device-cuda-99", "--device cuda:99", "--device cuda:99: ", ""),
        ("device-cuda", "--device cuda", "--device cuda: CUDA is not available", NO_CUDA),
        ("threads-0", "--threads 0", "--threads must be an integer >= 1, got 0", ""),
        ("threads-text", "--threads many", "argument --threads: invalid int value", ""),
        ("out-is-a-file", "--out taken", "--out 'taken': 'taken' is a file, not a directory", ""),
    ):
        taken = files({"taken": "a file where --out should go\n"})
        prepare = taken if setup is None else (lambda tmp, s=setup, t=taken: (s(tmp), t(tmp)))
        add(COMMAND, f"{name}-{id}", f"{command} {option}", expect, setup=prepare, skip=skip)

for id, command, expect in (
    ("sweep-jobs-0", "sweep sweep.toml --jobs 0", "--jobs must be an integer >= 1, got 0"),
    ("sweep-shard-text", "sweep sweep.toml --shard abc", "--shard must look like i/n"),
    ("sweep-shard-past-end", "sweep sweep.toml --shard 2/2", "0 <= i < n"),
    ("sweep-slurm-option", "sweep sweep.toml --partition p", "--partition needs --executor slurm"),
    ("sweep-slurm-time", "sweep sweep.toml --executor slurm --time 0", "time (minutes per array"),
    ("sweep-executor", "sweep sweep.toml --executor mpi", "invalid choice: 'mpi'"),
    ("sweep-no-quick", "sweep sweep.toml --quick", "has no [quick] table"),
):
    add(COMMAND, id, command, expect, setup=VALID_SWEEP)
for id, command, expect, unclear in (
    ("reproduce-jobs-0", "reproduce eqco-toy --quick --jobs 0", "--jobs must be an integer", ""),
    ("reproduce-unknown", "reproduce no-such-paper", "invalid choice: 'no-such-paper'", ""),
    ("reproduce-grid", "reproduce eqco-toy --config nope", "no packaged grid 'nope'", ""),
    ("analytic-k-1", "analytic -k 1", "k must be an integer >= 2, got 1", ""),
    ("analytic-alpha-0", "analytic -k 4 --alpha 0", "alpha must be a finite number > 0", ""),
    (
        "analytic-batches-0",
        "analytic -k 4 --batches 0",
        "batches must be an integer >= 1",
        "",
    ),
    ("unknown-command", "train", "argument COMMAND: invalid choice: 'train'", ""),
):
    add(COMMAND, id, command, expect, unclear=unclear)
for id, option, expect in (
    ("probe-epochs-0", "--probe-epochs 0", "probe_epochs (--probe-epochs) must be an integer >= 1"),
    ("probe-knn-k-0", "--knn-k 0", "knn_k (--knn-k) must be an integer >= 1, got 0"),
    ("probe-knn-temperature-0", "--knn-temperature 0", "knn_temperature (--knn-temperature)"),
    ("probe-workers", "--workers -1", "workers (--workers) must be an integer >= 0, got -1"),
    ("probe-threads-0", "--threads 0", "--threads must be an integer >= 1, got 0"),
):
    add(COMMAND, id, f"vision probe RUN {option}", expect, needs_run=True)

# ---------------------------------------------------------------------------- files and data

DATA = "files and data"
NOT_UTF8 = b'name = "\xff\xfe"\n'
DIRECTORY = files({"grids": None})
RESULTS_DIRECTORY = files({"results": None})


_CSV = "a,b,name\n1,2,u\n2,1,v\n3,5,w\n"


def _npz(path: Path) -> None:
    np.savez(path, x=np.arange(4.0), y=np.arange(4.0) ** 2)


def _other_grid_results(tmp: Path) -> None:
    VALID_SWEEP(tmp)
    record = '{"run_key": "x", "sweep": "old", "grid_hash": "other"}\n'
    _write(tmp / "out" / "results.jsonl", record)


def _results_directory(tmp: Path) -> None:
    VALID_SWEEP(tmp)
    RESULTS_DIRECTORY(tmp)


for id, command, expect, setup in (
    ("sweep-config-missing", "sweep missing.toml", "sweep config 'missing.toml' does not", None),
    ("sweep-config-directory", "sweep grids", "sweep config 'grids' is a directory", DIRECTORY),
    ("sweep-config-not-utf8", "sweep sweep.toml", "'sweep.toml' is not valid TOML: 'utf-8' codec",
     files({"sweep.toml": NOT_UTF8})),
    ("train-config-missing", "vision train --config no.toml", "config 'no.toml' does not exist",
     None),
    ("train-config-directory", "vision train --config grids", "config 'grids' is a directory",
     DIRECTORY),
    ("train-config-not-utf8", "vision train --config train.toml", "'train.toml' is not valid TOML",
     files({"train.toml": NOT_UTF8})),
    ("results-of-another-grid", "sweep sweep.toml --dry-run", "holds runs of a different grid",
     _other_grid_results),
    ("results-directory", "sweep sweep.toml --results results --dry-run",
     "results file 'results' is a directory", _results_directory),
    ("plot-missing", "plot missing.jsonl", "results file 'missing.jsonl' does not exist", None),
    ("plot-empty-directory", "plot results", "no results files found in ['results']",
     RESULTS_DIRECTORY),
    ("probe-not-a-run", "vision probe results", "no checkpoint at 'results/checkpoint.pt'",
     RESULTS_DIRECTORY),
    ("estimate-missing", "estimate missing.npz", "'missing.npz' is no such file", None),
    ("estimate-suffix", "estimate data.txt", "unknown file type '.txt'",
     files({"data.txt": "1 2\n"})),
    ("estimate-not-npz", "estimate data.npz", "'data.npz' is not a readable .npz file",
     files({"data.npz": b"not a zip"})),
    ("estimate-unknown-key", "estimate data.npz --x inputs",
     "has no array 'inputs' for x; it has ['x', 'y']", lambda tmp: _npz(tmp / "data.npz")),
    ("estimate-unknown-column", "estimate data.csv --x a --y target",
     "has no column 'target' nor columns target0", files({"data.csv": _CSV})),
    ("estimate-non-numeric", "estimate data.csv --x a,name --y b",
     "x has non-numeric columns ['name']", files({"data.csv": _CSV})),
    ("estimate-nan-rows", "estimate data.csv --x a --y b",
     "--x 'a' has 1 of 3 rows with NaN or inf", files({"data.csv": "a,b\n1,2\n,3\n2,1\n"})),
    ("estimate-file-too-few-rows", "estimate data.csv --x a --y b",
     "too few for a held-out estimate",
     files({"data.csv": _CSV})),
    ("estimate-npy-no-columns", "estimate data.npy",
     "give x and y as its column indices", lambda tmp: np.save(tmp / "data.npy", np.eye(3))),
):  # fmt: skip
    add(DATA, id, command, expect, setup=setup)
CIFAR_NAMES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
CIFAR = "vision train --dataset cifar10 --data-root cifar --image-size 32"


def _batch(dtype: str = "uint8", labels: list[int] | None = None) -> bytes:
    data = {b"data": np.zeros((10, 3072), dtype), b"labels": labels or list(range(10))}
    return pickle.dumps(data)


def cifar(**bad: bytes) -> Callable[[Path], None]:
    """A CIFAR-10 stand-in of 10 images per batch, the batches named in ``bad`` replaced."""
    return files({f"cifar/{n}": bad.get(n) or _batch() for n in CIFAR_NAMES})


for id, note, expect, setup in (
    ("cifar-missing", "an empty directory", "CIFAR-10 not found at 'cifar'",
     files({"cifar": None})),
    ("cifar-truncated", "a batch file cut short", "'cifar/data_batch_3' is not a CIFAR-10 "
     "python batch: it does not unpickle", cifar(data_batch_3=_batch()[:1000])),
    ("cifar-not-a-pickle", "a batch file of text", "'cifar/test_batch' is not a CIFAR-10",
     cifar(test_batch=b"not a pickle")),
    ("cifar-keys", "a batch without b'labels'", "expected a pickled dict with keys",
     cifar(data_batch_1=pickle.dumps({b"data": b""}))),
    ("cifar-float-data", "a batch of float64 data", "uint8 array, got shape (10, 3072) and "
     "dtype float64", cifar(data_batch_2=_batch("float64"))),
    ("cifar-label-10", "a batch with a label 10", "b'labels' must be 10 ints in 0..9 (one per "
     "row of b'data'), got 10 values in [0, 10]",
     cifar(data_batch_4=_batch(labels=[0] * 9 + [10]))),
):  # fmt: skip
    add(DATA, id, CIFAR, expect, setup=setup, note=note)


def _png(i: int) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (40, 40), (60 * i, 0, 0)).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    from PIL import Image

    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def image_folder(bad: dict[str, bytes] | None = None, val: bool = True) -> Callable[[Path], None]:
    """An ImageFolder of 2 classes x 3 PNGs per split, the files named in ``bad`` replaced."""
    splits = ("train", "val") if val else ("train",)
    good = {f"{s}/{c}/{i}.png": _png(i) for s in splits for c in ("cat", "dog") for i in range(3)}
    return files({f"images/{k}": v for k, v in (good | (bad or {})).items()})


FOLDER = "vision train --dataset folder --data-root images --image-size 32"
for id, note, expect, setup in (
    ("folder-without-val", "a root without val/ or test/", "train/ and val/ (or test/)",
     image_folder(val=False)),
    ("folder-not-an-image", "a text file as an image", "1 of 12 image files under 'images' "
     "cannot be read: train/cat/1.png (not an image file PIL can identify)",
     image_folder({"train/cat/1.png": b"text"})),
    ("folder-empty-image", "an empty image file", "val/dog/2.png (not an image file",
     image_folder({"val/dog/2.png": b""})),
    ("folder-truncated-png", "a PNG cut short", "train/dog/0.png (OSError: ",
     image_folder({"train/dog/0.png": _png(0)[:60]})),
    ("folder-truncated-jpeg", "a JPEG cut short (its header intact)",
     "train/cat/x.jpg (OSError: image file is truncated",
     image_folder({"train/cat/x.jpg": _jpeg()[:2000]})),
    ("folder-many-bad", "five unreadable images", "5 of 12 image files under 'images' cannot be "
     "read: train/cat/0.png (not an image file PIL can identify); train/cat/1.png (not an image "
     "file PIL can identify); train/dog/2.png (not an image file PIL can identify); and 2 more; ",
     image_folder({p: b"" for p in ("train/cat/0.png", "train/cat/1.png",
                             "train/dog/2.png", "val/cat/0.png", "val/dog/1.png")})),
):  # fmt: skip
    add(DATA, id, FOLDER, expect, setup=setup, note=note)


# --------------------------------------------------------------------------------- the tests

IDS = [c.id for c in CASES]


def test_every_case_has_its_own_id_and_a_group() -> None:
    assert len(IDS) == len(set(IDS)), sorted(i for i in IDS if IDS.count(i) > 1)
    assert {c.group for c in CASES} == set(GROUPS)


def test_every_train_config_field_and_catalogue_parameter_has_a_bad_value() -> None:
    numeric = {n for n, f in FIELDS.items() if _kind(f) == "number"}
    assert numeric == set(OUT_OF_RANGE)
    for name in FIELDS:
        assert any(i.startswith(f"{name}-") for i in IDS), f"TrainConfig.{name} has no case"
    assert {p.name for e in CATALOGUE.values() for p in e.params} == set(PARAM_BAD)


def _lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def run_command(case: Case, run_dir: Path | None) -> tuple[int, str]:
    """``(exit code, stderr)`` of a command-line case (its setup done) in the working
    directory."""
    argv = [str(run_dir) if a == "RUN" else a for a in case.argv()]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(argv)
        except SystemExit as stop:  # argparse's errors
            code = stop.code
    return code, err.getvalue()


def _tiny_run(out: Path) -> Path:
    from mibounds.vision.training import train

    config = TrainConfig(
        image_size=8, subset=16, batch_size=8, epochs=1, proj_hidden=16, proj_dim=8,
        workers=0, progress=False, probe=False, out=str(out),
    )  # fmt: skip
    train(config)
    return out


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A finished one-epoch run of 16 digits, for the probe's options."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _tiny_run(tmp_path_factory.mktemp("run"))
    finally:
        torch.set_num_threads(threads)


def _listing(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def _param(case: Case):
    marks = [pytest.mark.skip(reason=case.skip)] if case.skip else []
    if case.unclear:
        marks.append(pytest.mark.xfail(strict=True, reason=case.unclear))
    return pytest.param(case, marks=marks, id=case.id)


@pytest.mark.usefixtures("single_thread")
@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_bad_input_is_one_clear_line_and_nothing_is_written(
    case: Case, tmp_path, monkeypatch, request
) -> None:
    monkeypatch.chdir(tmp_path)
    if case.library:
        with pytest.raises(ValueError) as error:
            eval(case.input, _namespace())
        assert case.expect in str(error.value)
        assert "\n" not in str(error.value)
        return
    run_dir = request.getfixturevalue("trained_run") if case.needs_run else None
    kept = _listing(run_dir) if run_dir else {}
    if case.setup is not None:
        case.setup(tmp_path)
    before = _listing(tmp_path)
    code, err = run_command(case, run_dir)
    lines = _lines(err)
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert re.match(r"mibounds[a-z ]*: error: ", lines[0]), err
    assert case.expect in lines[0], err
    assert _listing(tmp_path) == before  # no out/, results, checkpoint or cache written
    if run_dir is not None:
        assert _listing(run_dir) == kept  # no probe.json, the checkpoint untouched


def test_float64_data_into_a_float32_critic_is_cast_not_refused() -> None:
    # documented in Critic: the inputs take the parameters' dtype, so the scores are float32 and
    # equal to the critic applied to the float32-rounded inputs
    from mibounds import critics

    critic = critics.SeparableCritic(3, hidden_dim=8, n_hidden=1)
    x = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    scores = critic(x, x)
    assert scores.dtype == torch.float32
    assert torch.equal(scores, critic(x.float(), x.float()))
    assert critic(x.view(5, 1, 3).expand(5, 2, 3)).dtype == torch.float32
    assert critics.AnalyticPairCritic(0.5)(x, x).dtype == torch.float64  # no parameters


def test_the_docs_table_lists_every_case() -> None:
    text = DOCS.read_text()
    documented = re.findall(r"^\| `([^`]+)` \|", text, flags=re.MULTILINE)
    assert sorted(documented) == sorted(IDS)
    assert f"{len(CASES)} bad inputs" in text


# ------------------------------------------------------------------------- the docs' tables


def markdown_tables() -> str:
    """The tables of docs/reliability.md: every case with its message as the code gives it."""
    import tempfile

    rows = []
    with tempfile.TemporaryDirectory() as root:
        run_dir = _tiny_run(Path(root) / "RUN")
        for group in GROUPS:
            rows += ["", f"### {group.capitalize()}", "", "| case | bad input | message |"]
            rows.append("|---|---|---|")
            for case in (c for c in CASES if c.group == group):
                tmp = Path(tempfile.mkdtemp(dir=root))
                os.chdir(tmp)
                message = _message(case, tmp, run_dir).replace(str(run_dir), "RUN")
                shown = f"`{case.input}`" + (f": {case.note}" if case.note else "")
                cells = [f"`{case.id}`", shown, message]
                rows.append("| " + " | ".join(c.replace("|", r"\|") for c in cells) + " |")
    return "\n".join(rows)


def _message(case: Case, tmp: Path, run_dir: Path) -> str:
    try:
        if case.library:
            eval(case.input, _namespace())
            return "(no error)"
        if case.setup is not None:
            case.setup(tmp)
        return _lines(run_command(case, run_dir)[1])[-1]
    except ValueError as error:
        return f"ValueError: {error}"
    except Exception as error:  # the unclear cases
        return f"**a traceback**: {type(error).__name__}: {error}"


if __name__ == "__main__":
    torch.set_num_threads(1)
    sys.stdout.write(markdown_tables() + "\n")
