"""Run and sweep configurations: frozen dataclasses, validated when built, loadable from TOML.

A ``RunConfig`` is one training setting (objective, critic, data, optimisation); its R seeds
train together as one batched model. A ``Sweep`` is a named union of grids of settings times a
tuple of seeds. Every check runs when the configuration is built, so a bad grid fails before
any training starts.

TOML format (read with ``tomllib``; the papers' grids ship in ``mibounds/reproductions/grids/``)::

    name = "my-sweep"                  # required
    description = "..."                # optional
    seeds = 4                          # a count (seeds 0..3) or a list of seeds

    [run]                              # fixed for every setting; any RunConfig field
    d = 1
    rho = 0.9
    critic = {name = "separable", hidden_dim = 64}
    steps = 500

    [grid]                             # axes; every combination is a setting
    objective = ["multicrop", "arithmetic", {name = "eqco", alpha = 512}]
    m = [2, 4, 8]

    [quick]                            # optional overrides used with --quick
    seeds = 2
    run = {steps = 100}

``[[grid]]`` (an array of tables) gives several grids whose union is the sweep; settings that
appear twice run once (with the union of their seeds). A grid table may set its own ``seeds``
(a count or a list), e.g. a wide grid read with fewer seeds than the headline one.
``objective``, ``critic`` and ``source`` take a name or a table ``{name = ..., **params}``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mibounds._checks import (
    check_at_least,
    check_correlation,
    check_positive,
    read_toml,
    suggest,
)

__all__ = [
    "Params",
    "RunConfig",
    "Sweep",
    "load_sweep",
    "parse_shard",
    "sweep_from_dict",
]

Params = tuple[tuple[str, Any], ...]
"""Keyword parameters frozen as sorted ``(name, value)`` pairs, so configs stay hashable."""

_SCALARS = (bool, int, float, str)


def freeze_params(params: Mapping[str, Any] | Params | None, what: str) -> Params:
    """Sorted ``(name, value)`` pairs from a mapping; values must be TOML scalars."""
    items = dict(params or ())
    for key, value in items.items():
        if not isinstance(key, str) or not isinstance(value, _SCALARS):
            raise ValueError(
                f"{what} parameters must map names to numbers, strings or booleans, "
                f"got {key!r} = {value!r}"
            )
    return tuple(sorted(items.items()))


def params_label(name: str, params: Params) -> str:
    """``name(k=v, ...)``, or just ``name`` without parameters."""
    if not params:
        return name
    shown = (f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params)
    return f"{name}({', '.join(shown)})"


def check_keys(given: Iterable[str], allowed: Sequence[str], where: str) -> None:
    """Raise ``ValueError`` naming the first key of ``given`` not in ``allowed`` (with a
    suggestion), for the config tables of every kind of sweep."""
    for key in given:
        if key not in allowed:
            raise ValueError(
                f"unknown key {key!r} in {where}{suggest(key, allowed)}; "
                f"expected one of {sorted(allowed)}"
            )


def _check_float(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RunConfig:
    """One training setting; all fields are validated on construction.

    Data: for the Gaussian sources, exactly one of ``rho`` (correlation in [0, 1)), ``mi`` (the
    pairwise MI in nats, which fixes rho through ``rho_from_mi``) or ``mi_levels`` (Poole's
    staircase: the pairwise MI steps through the levels, ``steps / len(mi_levels)`` steps each).
    ``m = None`` draws pairs (x, y) of dimension ``d`` for the pairwise objectives; ``m >= 2``
    draws M equicorrelated views for the poly-view objectives. A source with data of its own
    (``SourceSpec.own_data``, e.g. ``source = {name = "task", task = ...}``) takes none of the
    three: its true MI is its own (or unknown), and it fills ``d`` and ``m``.

    Attributes:
        objective: a name in the catalogue (``mibounds.catalogue.CATALOGUE``); its keyword
            parameters (e.g. EqCo's ``alpha``) in ``objective_params``.
        critic: a name in ``mibounds.critics.CRITICS``, built as
            ``CRITICS[critic](d, **critic_params)``.
        k: samples per batch K. d: data dimension (default the source's: 1 for the Gaussian
            sources). m: views per sample, or None for pairs.
        steps: optimiser steps, a fresh batch each. lr: Adam's learning rate.
        eval_batches: fresh held-out batches the final estimate is averaged over.
        curve_every: the training curve keeps the mean estimate of every block of this many steps.
        source: a name in ``mibounds.harness.data.SOURCES``, with ``source_params`` (e.g.
            ``source="gaussian_finite", source_params={"n": 4096}``: a finite dataset).
        eval_infonce_k: batch sizes at which the trained critic's InfoNCE bound is also read on
            ``eval_batches`` held-out batches each (pairwise objectives): how good the critic is,
            whatever the objective that trained it, e.g. at a K larger than training's.
        tag: a free label for the part of a grid a setting belongs to (a report selects its
            settings by it, e.g. the poly-view overshoot map); part of the setting's identity
            when set.
    """

    objective: str
    critic: str = "separable"
    k: int = 64
    d: int | None = None
    m: int | None = None
    rho: float | None = None
    mi: float | None = None
    mi_levels: tuple[float, ...] = ()
    steps: int = 1000
    lr: float = 5e-4
    eval_batches: int = 100
    curve_every: int = 10
    objective_params: Params = ()
    critic_params: Params = ()
    source: str = "gaussian"
    source_params: Params = ()
    eval_infonce_k: tuple[int, ...] = ()
    tag: str = ""

    def __post_init__(self) -> None:
        from mibounds.harness.data import SOURCES
        from mibounds.harness.objectives import check_critic, data_kind, harness_entry

        set_ = object.__setattr__  # frozen: normalise the fields once, here
        for name in ("k", "d", "steps", "eval_batches", "curve_every"):
            minimum = 2 if name in ("k", "eval_batches") else 1
            if getattr(self, name) is not None or name != "d":
                check_at_least(getattr(self, name), minimum, name)
        if self.m is not None:
            check_at_least(self.m, 2, "m (views per sample)")
        set_(self, "lr", check_positive(self.lr, "lr"))
        if not isinstance(self.tag, str):
            raise ValueError(f"tag must be a string, got {self.tag!r}")
        if self.curve_every > self.steps:
            raise ValueError(f"curve_every must be <= steps = {self.steps}, got {self.curve_every}")
        for name in ("objective_params", "critic_params", "source_params"):
            set_(self, name, freeze_params(getattr(self, name), name.split("_")[0]))
        if self.source not in SOURCES:
            raise ValueError(
                f"unknown data source {self.source!r}{suggest(str(self.source), SOURCES)}; "
                f"expected one of {sorted(SOURCES)}"
            )
        source = SOURCES[self.source]
        self._check_data(set_, source)
        spec = harness_entry(self.objective)
        spec.check_params(dict(self.objective_params))
        data = data_kind(spec)
        # views or pairs: the config's m, or the samples' of a source with data of its own
        given = f"source {self.source!r} gives" if source.own_data else "got"
        if data == "pairs" and self.m is not None:
            raise ValueError(
                f"objective {self.objective!r} is pairwise: it takes pairs (x, y), not M views; "
                f"{given} m = {self.m}" + ("" if source.own_data else " (leave m unset)")
            )
        if data == "views":
            if self.m is None:
                fix = f"source {self.source!r} gives pairs" if source.own_data else "set m"
                raise ValueError(
                    f"objective {self.objective!r} needs M >= 2 views per sample; {fix}"
                )
            spec.check_views(self.m)
        check_critic(self.critic, dict(self.critic_params), self.d)
        source.check(self)
        if spec.per_item and not source.finite:
            finite = sorted(n for n, s in SOURCES.items() if s.finite)
            raise ValueError(
                f"objective {self.objective!r} needs a finite dataset source: it keeps state per "
                f"dataset item, keyed by the batch's indices, which the streaming source "
                f"{self.source!r} does not have; use source = one of {finite} with "
                f"source_params n (e.g. source = {{name = 'gaussian_finite', n = 4096}})"
            )
        self._check_eval_k(set_, data)

    def _check_eval_k(self, set_: Any, data: str) -> None:
        sizes = self.eval_infonce_k
        if not isinstance(sizes, (tuple, list)):
            raise ValueError(f"eval_infonce_k must be a list of batch sizes, got {sizes!r}")
        for k in sizes:
            check_at_least(k, 2, "each of eval_infonce_k")
        if sizes and data != "pairs":
            raise ValueError(
                f"eval_infonce_k reads the critic's pairwise InfoNCE bound, so it needs a pairwise "
                f"objective; {self.objective!r} takes M views"
            )
        set_(self, "eval_infonce_k", tuple(sorted(set(sizes))))

    def _check_data(self, set_: Any, source: Any) -> None:
        given = [n for n in ("rho", "mi", "mi_levels") if getattr(self, n) not in (None, ())]
        if source.own_data:
            self._check_own_data(set_, source, given)
            return
        if self.d is None:
            set_(self, "d", 1)
        if len(given) != 1:
            raise ValueError(
                "give exactly one of rho (correlation), mi (pairwise MI in nats) or mi_levels "
                f"(a staircase) for the Gaussian source {self.source!r}, or a source with data "
                f"of its own (e.g. source = {{name = 'task', task = ...}}), got {given or 'none'}"
            )
        if self.rho is not None:
            set_(self, "rho", check_correlation(self.rho, allow_negative=False))
        if self.mi is not None:
            set_(self, "mi", check_positive(self.mi, "mi (nats)"))
        if self.mi_levels:
            levels = tuple(check_positive(v, "each of mi_levels (nats)") for v in self.mi_levels)
            set_(self, "mi_levels", levels)
            if self.steps % len(levels):
                raise ValueError(
                    f"steps = {self.steps} must be a multiple of the {len(levels)} mi_levels "
                    "(equal steps per level)"
                )

    def _check_own_data(self, set_: Any, source: Any, given: list[str]) -> None:
        """A source with data of its own: no Gaussian data fields; ``d`` and ``m`` its own."""
        if given:
            raise ValueError(
                f"source {self.source!r} draws data of its own, so it takes no {given} (they set "
                "the Gaussian sources' data); leave them unset"
            )
        source.check_params(dict(self.source_params))
        d, m = source.dims(dict(self.source_params))
        if self.d is None:
            set_(self, "d", d)
        elif self.d != d:
            raise ValueError(
                f"d = {self.d}, but source {self.source!r} gives samples of dimension {d}; "
                f"leave d unset or set d = {d}"
            )
        if self.m is None:
            set_(self, "m", m)
        elif self.m != m:
            views = "pairs" if m is None else f"M = {m} views"
            raise ValueError(
                f"m = {self.m}, but source {self.source!r} gives {views}; leave m unset"
            )

    # ------------------------------------------------------------------ derived quantities

    @property
    def steps_per_level(self) -> int:
        """Steps at each MI level (all steps when the MI is constant)."""
        return self.steps // max(len(self.mi_levels), 1)

    def rho_levels(self) -> tuple[float, ...]:
        """The correlation of each data level in training order (one level unless a staircase)."""
        from mibounds.gaussian import rho_from_mi

        if not any((self.rho is not None, self.mi is not None, self.mi_levels)):
            raise ValueError(f"source {self.source!r} draws data of its own: it has no rho")
        if self.rho is not None:
            return (self.rho,)
        levels = self.mi_levels or (self.mi,)
        return tuple(rho_from_mi(mi, self.d) for mi in levels)

    @property
    def objective_label(self) -> str:
        """``objective(param=value, ...)``, e.g. ``eqco(alpha=512)``."""
        return params_label(self.objective, self.objective_params)

    @property
    def critic_label(self) -> str:
        """``critic(param=value, ...)``, e.g. ``separable(hidden_dim=64)``."""
        return params_label(self.critic, self.critic_params)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (parameters as dicts, tuples as lists)."""
        out = dataclasses.asdict(self)
        for name in ("objective_params", "critic_params", "source_params"):
            out[name] = dict(getattr(self, name))
        out["mi_levels"] = list(self.mi_levels)
        out["eval_infonce_k"] = list(self.eval_infonce_k)
        return out

    def label(self) -> str:
        """``objective k=.. [m=..] rho=..|mi=..|mi_levels=[..]|source(params) [tag=..]``: the
        setting in one line, for listings and messages."""
        if self.rho is not None:
            data = f"rho={self.rho:g}"
        elif self.mi is not None:
            data = f"mi={self.mi:g}"
        elif self.mi_levels:
            data = f"mi_levels={list(self.mi_levels)}"
        else:  # a source with data of its own
            data = params_label(self.source, self.source_params)
        views = f" m={self.m}" if self.m is not None else ""
        tag = f" tag={self.tag}" if self.tag else ""
        return f"{self.objective_label} k={self.k}{views} {data}{tag}"

    def key(self) -> str:
        """A stable 16-hex-digit hash of every field: the identity of this setting.

        Fields added after results were first written (``_LATER_FIELDS``) are left out while
        they hold their default, so the settings of existing results files keep their keys
        and those files keep resuming.
        """
        values = self.to_dict()
        for name, default in _LATER_FIELDS.items():
            if values[name] == default:
                del values[name]
        return digest(values)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "run config") -> RunConfig:
        """Build from TOML-style values: ``objective``/``critic``/``source`` may be a name or a
        table ``{name = ..., **params}``; unknown keys are an error."""
        values = dict(values)
        for name in ("objective", "critic", "source"):
            spec = values.get(name)
            if isinstance(spec, Mapping):
                spec = dict(spec)
                if "name" not in spec:
                    raise ValueError(f"{name} table in {where} needs a 'name', got {spec}")
                values[name] = spec.pop("name")
                values[f"{name}_params"] = {**dict(values.get(f"{name}_params", {})), **spec}
        check_keys(values, [f.name for f in dataclasses.fields(cls)], where)
        if "objective" not in values:
            raise ValueError(f"{where} needs an objective")
        for name in ("mi_levels", "eval_infonce_k"):
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        return cls(**values)


_LATER_FIELDS: dict[str, Any] = {"eval_infonce_k": [], "tag": ""}
"""``RunConfig`` fields newer than the first results, with the ``to_dict`` value of their
default: ``RunConfig.key`` omits them at that value."""


def digest(obj: Any) -> str:
    """16 hex digits of the SHA-256 of ``obj`` as sorted compact JSON: a setting's identity."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Sweep:
    """A named set of settings times seeds; ``grid_hash`` identifies the whole grid.

    A shard (``shard(i, n)``) keeps its parent's ``grid_hash`` so that the results of every part
    of one grid can be concatenated and read as one file.
    """

    name: str
    settings: tuple[RunConfig, ...]
    seeds: tuple[int, ...]
    description: str = ""
    grid_hash: str = ""
    shard_index: tuple[int, int] | None = None
    base: Mapping[str, Any] = field(default_factory=dict, compare=False)
    setting_seeds: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Seeds of the settings (by ``RunConfig.key``) whose grid gave its own; the others run
    ``seeds``."""
    kind: str = "gaussian"
    """What the settings are: ``"gaussian"`` (``RunConfig``) or a registered kind
    (``mibounds.harness.interface.KINDS``, e.g. ``"vision"``)."""

    def __post_init__(self) -> None:
        if not self.settings:
            raise ValueError(f"sweep {self.name!r} has an empty grid: no settings to run")
        for seeds in (self.seeds, *self.setting_seeds.values()):
            if not seeds:
                raise ValueError(f"sweep {self.name!r} has no seeds")
            for seed in seeds:
                check_at_least(seed, 0, "each seed")
            if len(set(seeds)) != len(seeds):
                raise ValueError(f"seeds must be distinct, got {list(seeds)}")
        if not self.grid_hash:
            grid: dict[str, Any] = {
                "settings": [s.key() for s in self.settings],
                "seeds": list(self.seeds),
            }
            if self.setting_seeds:  # absent otherwise: older grids keep their hash
                grid["setting_seeds"] = {k: list(v) for k, v in sorted(self.setting_seeds.items())}
            if self.kind != "gaussian":
                grid["kind"] = self.kind
            object.__setattr__(self, "grid_hash", digest(grid))

    def seeds_of(self, setting: RunConfig) -> tuple[int, ...]:
        """The seeds ``setting`` runs: its grid's own, else the sweep's."""
        return self.setting_seeds.get(setting.key(), self.seeds)

    @property
    def n_runs(self) -> int:
        """The sum over settings of their seeds."""
        return sum(len(self.seeds_of(s)) for s in self.settings)

    def shard(self, index: int, count: int) -> Sweep:
        """Part ``index`` of ``count`` (0-based): every count-th setting, all its seeds."""
        check_at_least(count, 1, "shard count")
        if not isinstance(index, int) or not 0 <= index < count:
            raise ValueError(f"shard index must lie in [0, {count}), got {index!r}")
        part = self.settings[index::count]
        if not part:
            raise ValueError(
                f"shard {index}/{count} of sweep {self.name!r} is empty: the grid has only "
                f"{len(self.settings)} settings; use at most that many shards"
            )
        return dataclasses.replace(self, settings=part, shard_index=(index, count))


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n`` (SLURM: ``--shard $SLURM_ARRAY_TASK_ID/n``)."""
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"--shard i/n needs n >= 1 and 0 <= i < n, got {text!r}")
    return index, count


_SWEEP_KEYS = ("name", "description", "trainer", "seeds", "run", "grid", "quick")
_QUICK_KEYS = ("seeds", "run", "grid")


def _seeds(value: Any) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        check_at_least(value, 1, "seeds (a count)")
        return tuple(range(value))
    if isinstance(value, list) and all(isinstance(s, int) for s in value):
        return tuple(value)
    raise ValueError(f"seeds must be a count (int >= 1) or a list of ints, got {value!r}")


def setting_type(kind: str) -> type:
    """The config class of one setting of a sweep of ``kind``."""
    from mibounds.harness.interface import KINDS

    if kind == "gaussian":
        return RunConfig
    if kind not in KINDS:
        known = ["gaussian", *KINDS]
        raise ValueError(f"unknown trainer {kind!r}{suggest(kind, known)}; expected one of {known}")
    return KINDS[kind].config


def _expand_grid(
    run: Mapping[str, Any], grid: Mapping[str, Any], where: str, cls: type = RunConfig
) -> list[Any]:
    axes = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items() if k != "seeds"}
    for key, values in axes.items():
        if not values:
            raise ValueError(f"axis {key!r} of {where} is an empty list: the grid is empty")
    check_keys(list(axes) + list(run), [f.name for f in dataclasses.fields(cls)], where)
    settings = []
    for combo in itertools.product(*axes.values()):
        point = dict(zip(axes, combo, strict=True))
        try:
            settings.append(cls.from_dict({**run, **point}, where))
        except (ValueError, TypeError) as err:
            shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
            raise ValueError(f"{where}, setting {shown or '(base)'}: {err}") from None
    return settings


def sweep_from_dict(data: Mapping[str, Any], *, quick: bool = False, source: str = "") -> Sweep:
    """Build a ``Sweep`` from the TOML layout described in this module's docstring.

    ``quick=True`` applies the ``[quick]`` overrides: its ``seeds``, its ``run`` values merged
    over ``[run]``, and its ``grid`` in place of ``[grid]``.
    """
    where = source or "sweep config"
    check_keys(data, _SWEEP_KEYS, where)
    if not isinstance(data.get("name"), str) or not data["name"]:
        raise ValueError(f"{where} needs a name (a non-empty string)")
    if "seeds" not in data:
        raise ValueError(f"{where} needs seeds (a count or a list)")
    seeds, run, grid = data["seeds"], dict(data.get("run", {})), data.get("grid", {})
    kind = data.get("trainer", "gaussian")
    cls = setting_type(kind)
    if quick:
        overrides = data.get("quick")
        if overrides is None:
            raise ValueError(f"{where} has no [quick] table, so it has no quick version")
        check_keys(overrides, _QUICK_KEYS, f"[quick] of {where}")
        seeds = overrides.get("seeds", seeds)
        run.update(overrides.get("run", {}))
        grid = overrides.get("grid", grid)
    grids = grid if isinstance(grid, list) else [grid]
    if not grids:
        raise ValueError(f"{where} has an empty list of grids")
    default_seeds = _seeds(seeds)
    settings: dict[str, RunConfig] = {}
    seeds_by_key: dict[str, set[int]] = {}
    own_seeds: set[str] = set()
    for n, table in enumerate(grids):
        label = f"[grid] of {where}" if len(grids) == 1 else f"[[grid]] #{n + 1} of {where}"
        table_seeds = _seeds(table["seeds"]) if "seeds" in table else default_seeds
        for s in _expand_grid(run, table, label, cls):
            key = s.key()
            settings.setdefault(key, s)
            seeds_by_key.setdefault(key, set()).update(table_seeds)
            if "seeds" in table:
                own_seeds.add(key)
    return Sweep(
        name=data["name"],
        settings=tuple(settings.values()),
        seeds=default_seeds,
        description=str(data.get("description", "")),
        base=run,
        kind=kind,
        setting_seeds={
            key: tuple(sorted(seeds_by_key[key]))
            for key in settings
            if key in own_seeds and set(default_seeds) != seeds_by_key[key]
        },
    )


def load_sweep(path: str | Path, *, quick: bool = False) -> Sweep:
    """Read a sweep from a TOML file (format in this module's docstring)."""
    data = read_toml(path, "sweep config")
    return sweep_from_dict(data, quick=quick, source=str(path))
