"""Options every subcommand shares, and options generated from a config dataclass's fields.

``add_common`` gives ``--device``, ``--threads``, ``--jobs`` (where a command runs several
things), ``--out``, ``--no-progress`` and ``--debug`` one meaning everywhere; ``apply_common``
checks them before any work (the device exists, the thread count is an integer >= 1, the output
directory can be written) and sets torch's thread count. ``add_dataclass_options`` turns the
fields of a dataclass built with ``mibounds.vision.config.option`` into options: the flag is the
field name with dashes, the help, group, choices and aliases come from the field's metadata and
the default from the field, so nothing is written twice. ``--param NAME=VALUE`` sets an
objective's catalogue parameters, listed in the help from the catalogue itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any

from mibounds._checks import check_at_least, resolve_device, toml_scalar

__all__ = [
    "add_common",
    "add_dataclass_options",
    "apply_common",
    "catalogue_params_help",
    "check_writable",
    "dataclass_values",
    "parse_params",
]


def add_common(
    p: argparse.ArgumentParser,
    *,
    out: str | None,
    jobs: str | None = None,
    progress: bool = True,
) -> None:
    """``--device``, ``--threads``, ``--jobs`` (if ``jobs`` says what it runs in parallel),
    ``--out`` (if ``out`` says what goes there), ``--no-progress`` and ``--debug``."""
    g = p.add_argument_group("execution")
    g.add_argument(
        "--device",
        default="auto",
        help="torch device: auto (CUDA if available, else the CPU), cpu, cuda, cuda:N or mps; "
        "checked before any work (default auto)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads per process (default: 1 per worker with --jobs > 1, else torch's)",
    )
    if jobs is not None:
        g.add_argument(
            "--jobs",
            type=int,
            default=1,
            metavar="N",
            help=f"{jobs} in N worker processes; only this process writes results (default 1)",
        )
    if out is not None:
        g.add_argument("--out", type=Path, metavar="DIR", help=out)
    if progress:
        g.add_argument(
            "--no-progress", action="store_true", help="hide the progress bars (default: shown)"
        )
    g.add_argument(
        "--debug", action="store_true", help="show a traceback on errors instead of one line"
    )


def apply_common(args: argparse.Namespace) -> None:
    """Check the common options before any work and set torch's threads; ``args.threads``
    becomes the threads of each worker process."""
    import torch

    resolve_device(args.device)  # a device this machine has, or one line now
    jobs = getattr(args, "jobs", 1)
    check_at_least(jobs, 1, "--jobs")
    if args.threads is not None:
        check_at_least(args.threads, 1, "--threads")
    args.threads = args.threads or (1 if jobs > 1 else torch.get_num_threads())
    if jobs == 1:
        torch.set_num_threads(args.threads)
    if getattr(args, "out", None) is not None:
        check_writable(args.out)


def check_writable(directory: Path) -> Path:
    """Raise ``ValueError`` unless ``directory`` is (or can be made) a writable directory;
    checked before any work so that no run is lost to an unwritable ``--out``."""
    directory = Path(directory)
    existing = directory
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"--out {str(directory)!r}: {str(existing)!r} is a file, not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(
            f"--out {str(directory)!r} is not writable (no write access to {str(existing)!r})"
        )
    return directory


# --------------------------------------------------------------------- dataclass options


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _plain_type(annotation: Any) -> tuple[type, bool]:
    """``(type, optional)`` of a field annotation such as ``int``, ``float | None``."""
    hint = annotation
    args = typing.get_args(hint)
    optional = type(None) in args
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in args if a is not type(None))
    return (typing.get_origin(hint) or hint), optional


def _scale(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected LOW,HIGH (e.g. 0.2,1.0), got {text!r}"
        ) from error
    return low, high


def add_dataclass_options(p: argparse.ArgumentParser, cls: type) -> list[str]:
    """One option per field of ``cls`` with ``metadata["cli"]``, in the field's option group;
    every default is ``SUPPRESS`` (only given options override a config file) and shown in the
    help. Returns the fields' names."""
    hints = typing.get_type_hints(cls)
    groups: dict[str, argparse._ArgumentGroup] = {}
    names = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", False):
            continue
        group = groups.setdefault(meta["group"], p.add_argument_group(meta["group"]))
        kind, optional = _plain_type(hints[f.name])
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = "computed" if f.default is dataclasses.MISSING else default
        kwargs: dict[str, Any] = {
            "dest": f.name,
            "default": argparse.SUPPRESS,
            "help": f"{meta['help']} (default: {shown})",
        }
        if kind is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind is tuple:
            kwargs["type"] = _scale
        else:
            kwargs["type"] = kind
        if meta.get("choices") is not None:
            kwargs["choices"] = meta["choices"]()
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        del optional  # None is the default of an optional field; there is no flag for it
        group.add_argument(*meta.get("aliases", ()), _flag(f.name), **kwargs)
        names.append(f.name)
    return names


def dataclass_values(args: argparse.Namespace, names: list[str]) -> dict[str, Any]:
    """The values of the generated options that were given on the command line."""
    return {name: getattr(args, name) for name in names if hasattr(args, name)}


# ---------------------------------------------------------------------- catalogue params


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``["alpha=512", "negatives=all_views"]`` -> ``{"alpha": 512, "negatives": "all_views"}``;
    values are read as TOML scalars (numbers, true / false), or else taken as text."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--param takes NAME=VALUE, got {item!r}")
        out[name] = toml_scalar(text)
    return out


def catalogue_params_help(names: list[str]) -> str:
    """One line per catalogue entry of ``names``: its summary and its parameters."""
    from mibounds.catalogue import REQUIRED, entry

    lines = []
    for name in names:
        e = entry(name)
        params = ", ".join(
            f"{p.name}={'(required)' if p.default is REQUIRED else p.default}" for p in e.params
        )
        lines.append(f"  {name:<22} {e.summary}" + (f" [--param {params}]" if params else ""))
    return "\n".join(lines)
