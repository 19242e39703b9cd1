"""``TrainConfig``: everything that defines an image training run, frozen and validated when
built (so a bad option fails before any data is read), loadable from TOML and JSON, and the one
place the command line's options come from (``mibounds.cli`` generates ``mibounds vision train``'s
options from these fields: names, help, defaults and choices; nothing is written twice).

Importing this module does not import torchvision: the choices of ``dataset`` and ``arch`` are
the registries' names, and the view checks that need torchvision run only when a config is built.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mibounds._checks import (
    check_device,
    flag,
    integer_from,
    one_of,
    optional,
    read_toml,
    real_in,
    suggest,
)
from mibounds.catalogue import CATALOGUE, entry

__all__ = [
    "EXECUTION_FIELDS",
    "GROUPS",
    "OPTIMIZERS",
    "TrainConfig",
    "default_workers",
    "option",
]

OPTIMIZERS = ("sgd", "adamw")
GROUPS = ("data and views", "model", "objective", "optimisation", "run")


EXECUTION_FIELDS = frozenset(
    {
        "workers",
        "device",
        "out",
        "progress",
        "probe",
        "probe_epochs",
        "knn_k",
        "knn_temperature",
        "dist_timeout",
        "memory_budget",
    }
)
"""Fields that change how a run is executed or evaluated, not what it trains: a run may be
resumed with other values of these."""


def default_workers() -> int:
    """Data-loader processes: min(4, cores - 1); one core stays with the training step
    (augmentation is a few percent of its cost on a CPU)."""
    return max(0, min(4, (os.cpu_count() or 1) - 1))


# ---------------------------------------------------------------------------- value checks


def _text(v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise ValueError(f"must be a non-empty string, got {v!r}")
    return v


def _scale(v: Any) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in v)
    except (TypeError, ValueError):
        raise ValueError(f"must be two numbers LOW, HIGH, got {v!r}") from None
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"must satisfy 0 < LOW <= HIGH <= 1, got {v!r}")
    return (low, high)


_PROBABILITY = real_in(0.0, 1.0, low_open=False, high_open=False)


def _datasets() -> tuple[str, ...]:
    from mibounds.vision.datasets import DATASETS

    return DATASETS


def _archs() -> tuple[str, ...]:
    from mibounds.vision.encoders import ARCHS

    return tuple(ARCHS)


def _stems() -> tuple[str, ...]:
    from mibounds.vision.encoders import STEMS

    return STEMS


def option(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    group: str,
    check: Callable[[Any], Any],
    choices: Callable[[], tuple[str, ...]] | None = None,
    aliases: tuple[str, ...] = (),
    metavar: str | None = None,
    default_factory: Callable[[], Any] | None = None,
    cli: bool = True,
) -> Any:
    """A ``TrainConfig`` field with what the command line needs in its metadata: ``help``, the
    option ``group``, the value ``check`` (raising ``ValueError("must be ...")``), ``choices``
    (a callable, so registries are read when asked), short ``aliases`` and whether the option
    is on the command line at all (``cli``)."""
    meta = {
        "help": help,
        "group": group,
        "check": check,
        "choices": choices,
        "aliases": aliases,
        "metavar": metavar,
        "cli": cli,
    }
    if default_factory is not None:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


_DATA, _MODEL, _OBJECTIVE, _OPTIM, _RUN = GROUPS


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines an image training run; every field is checked when the config is
    built, with a message naming the field and its command-line option.

    ``batch_size`` is K, the global number of images per step (over all processes); ``views``
    is M. ``lr`` is used as given (no batch-size scaling); weight decay skips biases and
    BatchNorm parameters. ``objective`` is a catalogue name, with ``objective_params`` its
    parameters (``mibounds.catalogue``, the names and parameters of the Gaussian harness).
    """

    # data and views
    dataset: str = option(
        "digits",
        "digits ship with scikit-learn; cifar10 and folder read --data-root",
        group=_DATA,
        check=one_of(_datasets),
        choices=_datasets,
    )
    data_root: str | None = option(
        None,
        "CIFAR-10 python batches directory, or an ImageFolder root with train/ and val/",
        group=_DATA,
        check=optional(_text),
    )
    image_size: int = option(16, "side of every view in pixels", group=_DATA, check=integer_from(1))
    subset: int | None = option(
        None,
        "train on the first N images only",
        group=_DATA,
        check=optional(integer_from(2)),
        metavar="N",
    )
    views: int = option(2, "views per image M", group=_DATA, check=integer_from(1), aliases=("-M",))
    crop_scale: tuple[float, float] = option(
        (0.2, 1.0),
        "random resized crop area range LOW,HIGH",
        group=_DATA,
        check=_scale,
        metavar="LOW,HIGH",
    )
    jitter: float = option(
        0.5,
        "colour jitter strength (p = 0.8); 0 turns it off",
        group=_DATA,
        check=real_in(0.0, low_open=False),
    )
    grayscale_p: float = option(
        0.2,
        "probability of a grayscale view",
        group=_DATA,
        check=_PROBABILITY,
    )
    flip_p: float = option(
        0.5,
        "probability of a horizontal flip",
        group=_DATA,
        check=_PROBABILITY,
    )
    blur: bool | None = option(
        None,
        "Gaussian blur (default: on for images of side >= 96)",
        group=_DATA,
        check=optional(flag),
    )
    # model
    arch: str = option(
        "tiny",
        "tiny = ResNet(BasicBlock, [1, 1, 1, 1])",
        group=_MODEL,
        check=one_of(_archs),
        choices=_archs,
    )
    stem: str = option(
        "auto",
        "auto: the CIFAR stem for images of side <= 64",
        group=_MODEL,
        check=one_of(_stems),
        choices=_stems,
    )
    proj_hidden: int = option(512, "projector hidden width", group=_MODEL, check=integer_from(1))
    proj_dim: int = option(128, "embedding dimension D", group=_MODEL, check=integer_from(1))
    sync_bn: bool = option(
        False,
        "BatchNorm statistics over the global batch (CUDA, several processes)",
        group=_MODEL,
        check=flag,
    )
    # objective
    objective: str = option(
        "simclr",
        "a catalogue name (mibounds.catalogue)",
        group=_OBJECTIVE,
        check=one_of(lambda: tuple(CATALOGUE)),
        choices=lambda: tuple(CATALOGUE),
    )
    temperature: float = option(
        0.2, "tau of the cosine scores", group=_OBJECTIVE, check=real_in(0.0, low_open=True)
    )
    objective_params: Mapping[str, Any] = option(
        help="the objective's parameters (one option each below)",
        group=_OBJECTIVE,
        check=lambda v: v,
        default_factory=dict,
        cli=False,
    )
    # optimisation
    batch_size: int = option(
        128,
        "images per step K, over all processes",
        group=_OPTIM,
        check=integer_from(2),
        aliases=("-K",),
    )
    epochs: int = option(
        10, "training epochs (0: probe the untrained encoder)", group=_OPTIM, check=integer_from(0)
    )
    optimizer: str = option(
        "sgd",
        "SGD with momentum, or AdamW",
        group=_OPTIM,
        check=one_of(lambda: OPTIMIZERS),
        choices=lambda: OPTIMIZERS,
    )
    lr: float = option(
        0.1, "peak learning rate (not scaled by K)", group=_OPTIM, check=real_in(0.0, low_open=True)
    )
    momentum: float = option(
        0.9, "SGD momentum, in [0, 1)", group=_OPTIM, check=real_in(0.0, 1.0, low_open=False)
    )
    weight_decay: float = option(
        5e-4, "weight decay (weights only), >= 0", group=_OPTIM, check=real_in(0.0, low_open=False)
    )
    warmup_epochs: float = option(
        1.0,
        "linear warm-up epochs, then cosine decay to zero",
        group=_OPTIM,
        check=real_in(0.0, low_open=False),
    )
    amp: bool = option(
        True,
        "mixed precision on CUDA (bfloat16 where supported, else float16)",
        group=_OPTIM,
        check=flag,
    )
    seed: int = option(
        0,
        "seed of the initialisation, data order and augmentations",
        group=_OPTIM,
        check=integer_from(0),
    )
    # execution and evaluation
    workers: int = option(
        help="data-loader processes (default: min(4, cores - 1))",
        group=_RUN,
        check=integer_from(0),
        default_factory=default_workers,
    )
    device: str = option(
        "auto",
        "torch device: auto (CUDA if available), cpu, cuda, cuda:N",
        group=_RUN,
        check=check_device,
        cli=False,
    )
    out: str = option("runs/vision/run", "run directory", group=_RUN, check=_text, cli=False)
    progress: bool = option(True, "progress bars", group=_RUN, check=flag, cli=False)
    probe: bool = option(True, "the kNN and linear probes after training", group=_RUN, check=flag)
    probe_epochs: int = option(100, "linear-probe epochs", group=_RUN, check=integer_from(1))
    knn_k: int = option(200, "kNN neighbours", group=_RUN, check=integer_from(1))
    dist_timeout: float | None = option(
        None,
        "seconds a collective waits for the other processes before the run stops (torchrun; "
        "default $MIBOUNDS_DIST_TIMEOUT, else 300)",
        group=_RUN,
        check=optional(real_in(0.0, low_open=True)),
    )
    knn_temperature: float = option(
        0.1, "kNN temperature", group=_RUN, check=real_in(0.0, low_open=True)
    )
    memory_budget: float = option(
        1.0,
        "GiB the loss's (K, M, N, M) scores may take per process; past it the embedding-level "
        "losses compute them in blocks, memory linear in K M (the same values)",
        group=_RUN,
        check=real_in(0.0, low_open=True),
        metavar="GIB",
    )

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise the fields once, here
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            try:
                set_(self, f.name, f.metadata["check"](value))
            except ValueError as err:
                raise ValueError(f"{label(f.name)} {err}") from None
        found = entry(self.objective, "objective")
        if not isinstance(self.objective_params, Mapping):
            raise ValueError(
                f"objective_params must be a table of parameters, got {self.objective_params!r}"
            )
        set_(self, "objective_params", found.check_params(dict(self.objective_params)))
        from mibounds.vision.objectives import check_objective

        check_objective(self.objective, self.views, self.temperature, self.objective_params)
        if self.warmup_epochs > self.epochs:
            raise ValueError(
                f"{label('warmup_epochs')} must lie in [0, epochs = {self.epochs}], got "
                f"{self.warmup_epochs}"
            )
        self.view_config()  # the augmentations' own checks (torchvision)

    def view_config(self):
        """The ``ViewConfig`` of the augmentations."""
        from mibounds.vision.views import ViewConfig

        return ViewConfig(
            image_size=self.image_size,
            crop_scale=self.crop_scale,
            jitter=self.jitter,
            grayscale_p=self.grayscale_p,
            flip_p=self.flip_p,
            blur=self.blur,
        )

    @property
    def objective_label(self) -> str:
        """``objective(param=value, ...)`` with the parameters that differ from the defaults."""
        defaults = entry(self.objective).defaults
        changed = {k: v for k, v in self.objective_params.items() if defaults.get(k) != v}
        shown = ", ".join(
            f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in changed.items()
        )
        return f"{self.objective}({shown})" if shown else self.objective

    def label(self) -> str:
        """The run in one line, for listings and messages."""
        return (
            f"{self.objective_label} M={self.views} K={self.batch_size} epochs={self.epochs} "
            f"{self.dataset} {self.arch}"
        )

    def key(self) -> str:
        """A stable hash of every field that changes what a run records, without the seed and
        where and how it runs (out, device, progress, workers): the identity of a sweep's
        setting."""
        import hashlib
        import json

        skip = ("seed", "out", "device", "progress", "workers", "dist_timeout", "memory_budget")
        values = {k: v for k, v in self.to_dict().items() if k not in skip}
        text = json.dumps(values, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        """JSON- and TOML-ready fields (tuples as lists, parameters as a dict)."""
        out = dataclasses.asdict(self)
        out["crop_scale"] = list(self.crop_scale)
        out["objective_params"] = dict(self.objective_params)
        return out

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes``, validated; another ``objective`` without its own
        ``objective_params`` starts from that objective's defaults."""
        if "objective" in changes:
            changes.setdefault("objective_params", {})
        return TrainConfig.from_dict({**self.to_dict(), **changes})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = "TrainConfig") -> TrainConfig:
        """Build from TOML / JSON values; ``objective`` may be a table ``{name = ..., **params}``;
        an unknown key is an error naming it."""
        values = dict(values)
        spec = values.get("objective")
        if isinstance(spec, Mapping):
            spec = dict(spec)
            if "name" not in spec:
                raise ValueError(f"objective table in {where} needs a 'name', got {spec}")
            values["objective"] = spec.pop("name")
            values["objective_params"] = {**dict(values.get("objective_params", {})), **spec}
        names = [f.name for f in dataclasses.fields(cls)]
        for key in values:
            if key not in names:
                raise ValueError(
                    f"unknown key {key!r} in {where}{suggest(key, names)}; expected one of "
                    f"{sorted(names)}"
                )
        if isinstance(values.get("crop_scale"), list):
            values["crop_scale"] = tuple(values["crop_scale"])
        return cls(**values)

    @classmethod
    def from_toml(cls, path: str | Path) -> TrainConfig:
        """Read a config from a TOML file of ``TrainConfig`` keys."""
        data = read_toml(path, "config")
        return cls.from_dict(data, str(path))


def label(name: str) -> str:
    """``probe_epochs (--probe-epochs)``: a field as written in a TOML file and on the command
    line, for messages."""
    flag = f"--{name.replace('_', '-')}"
    return f"{name} ({flag})"
