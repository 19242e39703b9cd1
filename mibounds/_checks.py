"""Argument checks shared by every module: one place that says what was expected and what came.

All checks raise ``ValueError``. Shape checks are always on (shapes are static, so they are
free and safe under ``torch.vmap``); value checks (finiteness) run only when the caller passes
``validate_args=True``, because they synchronise with the device and cannot run under vmap.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser as a package
    import tomli as tomllib


def compute_dtype(t: Tensor) -> Tensor:
    """Upcast half precision to float32: logsumexp and exp of scores never run below float32."""
    if t.dtype in (torch.float16, torch.bfloat16):
        return t.float()
    if not t.is_floating_point():
        raise ValueError(f"expected a floating-point tensor, got dtype {t.dtype}")
    return t


def check_finite(t: Tensor, name: str) -> None:
    # One reduction, not an elementwise mask (which costs as much as the estimator's own pass):
    # a float32 sum is finite iff every term is, unless finite terms overflow it, and that rare
    # case is settled by the exact count.
    with torch.no_grad():
        if bool(torch.isfinite(t.sum(dtype=torch.float32))):
            return
        bad = int((~torch.isfinite(t)).sum())
    if bad:
        raise ValueError(f"{name} has {bad} non-finite entries (NaN or inf); expected all finite")


def check_scores(
    scores: Tensor,
    *,
    name: str = "scores",
    square: bool = True,
    validate_args: bool = True,
) -> Tensor:
    """Check a ``(..., K, N)`` score tensor (``N == K`` when ``square``) and upcast it.

    Returns the scores in the compute dtype (float32 at least).
    """
    if not isinstance(scores, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(scores).__name__}")
    if scores.dim() < 2:
        raise ValueError(f"{name} must have shape (..., K, K), got shape {tuple(scores.shape)}")
    k, n = scores.shape[-2], scores.shape[-1]
    if k < 2:
        raise ValueError(f"{name} needs K >= 2 samples, got K = {k} (shape {tuple(scores.shape)})")
    if square and n != k:
        raise ValueError(f"{name} must be square (..., K, K), got shape {tuple(scores.shape)}")
    if not square and n < k:
        raise ValueError(
            f"{name} must have shape (..., K, N) with N >= K candidates, got {tuple(scores.shape)}"
        )
    if validate_args:
        check_finite(scores, name)
    return compute_dtype(scores)


def check_positive(value: float, name: str) -> float:
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (number and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_at_least(value: int, minimum: int, name: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_choice(value: str, choices: tuple[str, ...], name: str) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_correlation(rho: float, *, allow_negative: bool = True) -> float:
    low = -1.0 if allow_negative else 0.0
    ok = isinstance(rho, (int, float)) and math.isfinite(rho)
    if not ok or not (low < rho < 1.0 or (not allow_negative and rho == 0.0)):
        interval = "(-1, 1)" if allow_negative else "[0, 1)"
        raise ValueError(f"rho must lie in {interval}, got {rho!r}")
    return float(rho)


# ------------------------------------------------------- layouts of samples, views and pairs

_MINIMUM = {"K": 2, "M": 2, "d": 1}


def check_layout(t: Tensor, name: str, axes: tuple[str, ...]) -> None:
    """Check that the trailing axes of ``t`` are ``axes`` (e.g. ``("K", "M", "d")``) with
    K, M >= 2 and d >= 1. Sizes only, so it is free and safe under ``torch.vmap``."""
    layout = f"(..., {', '.join(axes)})"
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {layout}, got {type(t).__name__}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {t.dtype}")
    shape = tuple(t.shape)
    if t.dim() < len(axes):
        raise ValueError(f"{name} must have shape {layout}, got shape {shape}")
    for axis, size in zip(axes, shape[-len(axes) :], strict=True):
        if size < _MINIMUM[axis]:
            raise ValueError(
                f"{name} of shape {layout} needs {axis} >= {_MINIMUM[axis]}, "
                f"got {axis} = {size} (shape {shape})"
            )


def check_pairs(x: Tensor, y: Tensor) -> None:
    """A pairwise batch: ``x, y: (..., K, d)`` of one shape, K >= 2, d >= 1."""
    check_layout(x, "x", ("K", "d"))
    check_layout(y, "y", ("K", "d"))
    if x.shape != y.shape:
        raise ValueError(
            f"x and y must have the same shape (..., K, d), got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )


def check_samples_and_views(
    t: Tensor,
    name: str,
    layout: str,
    axes: tuple[int, int],
    fits: Callable[[tuple[int, ...]], bool],
    validate_args: bool,
    min_samples: int = 2,
) -> Tensor:
    """Check a tensor of layout ``layout`` whose sample and view axes are ``axes`` (K >=
    ``min_samples``, M >= 2; ``fits(shape)`` says whether the shape has the layout) and upcast
    it."""
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    shape = tuple(t.shape)
    if not fits(shape):
        raise ValueError(f"{name} must have shape {layout}, got shape {shape}")
    k, m = (shape[axis] for axis in axes)
    if k < min_samples:
        raise ValueError(f"{name} needs K >= {min_samples} samples, got K = {k} (shape {shape})")
    if m < 2:
        raise ValueError(f"{name} needs M >= 2 views, got M = {m} (shape {shape})")
    if validate_args:
        check_finite(t, name)
    return compute_dtype(t)


def check_poly_scores(S: Tensor, validate_args: bool, name: str = "S") -> Tensor:
    """Check ``S: (..., K, M, K, M)`` with K, M >= 2 and upcast it to the compute dtype."""

    def fits(shape: tuple[int, ...]) -> bool:
        return len(shape) >= 4 and shape[-4] == shape[-2] and shape[-3] == shape[-1]

    return check_samples_and_views(S, name, "(..., K, M, K, M)", (-4, -3), fits, validate_args)


def check_views(z: Tensor, validate_args: bool, name: str = "z", min_samples: int = 2) -> Tensor:
    """Check embeddings ``z: (..., K, M, D)`` with K >= ``min_samples``, M >= 2, D >= 1 and
    upcast them."""

    def fits(shape: tuple[int, ...]) -> bool:
        return len(shape) >= 3 and shape[-1] >= 1

    return check_samples_and_views(
        z, name, "(..., K, M, D) with D >= 1", (-3, -2), fits, validate_args, min_samples
    )


def check_offset(offset: int, k: int, n: int) -> int:
    """The K anchors' positives are candidates ``[offset, offset + K)`` of N."""
    check_at_least(offset, 0, "offset")
    if offset + k > n:
        raise ValueError(
            f"offset + K must be <= N: the positives of the K = {k} anchors are candidates "
            f"[offset, offset + K) = [{offset}, {offset + k}), but N = {n}"
        )
    return offset


def check_candidates(
    z: Tensor, candidates: Tensor | None, offset: int, validate_args: bool
) -> tuple[Tensor, Tensor]:
    """Check anchors ``z: (..., K, M, D)`` and candidates ``(..., N, M, D)`` (default ``z``)
    whose rows ``[offset, offset + K)`` are the anchors' own samples; upcast both. With
    candidates, one anchor (K = 1: one process's share) is enough; N >= 2 always."""
    x = check_views(z, validate_args, min_samples=1 if candidates is not None else 2)
    c = x if candidates is None else check_views(candidates, validate_args, "candidates")
    m, d = x.shape[-2:]
    if c.shape[:-3] != x.shape[:-3] or c.shape[-2:] != (m, d):
        raise ValueError(
            f"candidates must have shape (..., N, M, D) = {(*x.shape[:-3], 'N', m, d)} to match "
            f"z {tuple(x.shape)}, got {tuple(c.shape)}"
        )
    check_offset(offset, x.shape[-3], c.shape[-3])
    return x, c


def check_float_dtype(dtype: torch.dtype) -> torch.dtype:
    if not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    return dtype


# ------------------------------------------------------------------- named parameters


def suggest(key: str, allowed: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``allowed`` to ``key``, or ``""``."""
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_params(
    what: str, params: Mapping[str, Any], defaults: Mapping[str, Any], required: Sequence[str] = ()
) -> None:
    """``params`` may only name keys of ``defaults`` or ``required``, and must give ``required``."""
    allowed = [*defaults, *required]
    for key in params:
        if key not in allowed:
            accepted = f"one of {sorted(allowed)}" if allowed else "no parameters"
            raise ValueError(
                f"{what} got unknown parameter {key!r}{suggest(key, allowed)}; accepts {accepted}"
            )
    missing = [key for key in required if key not in params]
    if missing:
        raise ValueError(f"{what} needs parameter(s) {missing}, got {dict(params)}")


# -------------------------------------------------------------------------------- devices

DEVICES = "auto, cpu, cuda, cuda:N or mps"


def check_device(device: Any) -> str:
    """A device string as the command lines take it: ``auto`` (CUDA if available, else the CPU)
    or one torch understands (``cpu``, ``cuda``, ``cuda:N``, ``mps``); availability is checked
    by ``resolve_device``."""
    if isinstance(device, str) and device == "auto":
        return device
    try:
        if not isinstance(device, str):
            raise TypeError
        torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"must be one of {DEVICES}, got {device!r}") from None
    return device


def resolve_device(device: str = "auto", local_rank: int = 0) -> torch.device:
    """The torch device ``device`` names, refusing one this machine does not have; ``cuda``
    is ``cuda:local_rank`` (one GPU per process under ``torchrun``)."""
    try:
        check_device(device)
    except ValueError as err:
        raise ValueError(f"--device {err}") from None
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    found = torch.device(device)
    if found.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: CUDA is not available on this machine")
        index = local_rank if found.index is None else found.index
        if index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
        return torch.device("cuda", index)
    if found.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {device}: MPS is not available on this machine")
    if found.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device must be one of {DEVICES}, got {device!r}")
    return found


# ------------------------------------------------------- value checks of named parameters
# Each returns a check ``value -> normalised value`` that raises ``ValueError("must be ...,
# got ...")``; the caller puts the parameter's name in front (configs, the catalogue).


def real_in(
    low: float, high: float = math.inf, *, low_open: bool, high_open: bool = True
) -> Callable[[Any], float]:
    """A real number (not a bool, not NaN) in the interval from ``low`` to ``high``."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"

    def check(value: Any) -> float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and not math.isnan(value)
        ok = ok and (value > low if low_open else value >= low)
        ok = ok and (value < high if high_open else value <= high)
        if not ok:
            raise ValueError(f"must be a number in {left}{low:g}, {high:g}{right}, got {value!r}")
        return float(value)

    return check


def integer_from(low: int) -> Callable[[Any], int]:
    """An integer (not a bool) >= ``low``."""

    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"must be an integer >= {low}, got {value!r}")
        return value

    return check


def one_of(choices: tuple[str, ...] | Callable[[], tuple[str, ...]]) -> Callable[[Any], str]:
    """One of ``choices`` (or of what ``choices()`` gives when asked: a registry)."""

    def check(value: Any) -> str:
        allowed = choices() if callable(choices) else choices
        if value not in allowed:
            raise ValueError(
                f"must be one of {allowed}{suggest(str(value), allowed)}, got {value!r}"
            )
        return value

    return check


def flag(value: Any) -> bool:
    """``True`` or ``False`` (not 0 / 1)."""
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``check``, or ``None`` as it is."""
    return lambda value: None if value is None else check(value)


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """The table in TOML file ``path``; a directory, a missing file or text that is not UTF-8
    TOML is one ValueError that names the file as ``what`` (``"sweep config"``, ``"config"``)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {str(path)!r} is a directory, not a TOML file")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"{what} {str(path)!r} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:  # TOML is UTF-8 text
        raise ValueError(f"{what} {str(path)!r} is not valid TOML: {err}") from None


def toml_scalar(text: str) -> Any:
    """``text`` read as a TOML value (``"512"`` -> 512, ``"true"`` -> True, ``"[1, 2]"`` ->
    [1, 2]), or the text itself when it is not one (``"all_views"``)."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


_Value = TypeVar("_Value")


def add_once(registry: dict[str, _Value], name: str, value: _Value, what: str) -> _Value:
    """``registry[name] = value``, refusing a name that is there already: a registry never
    overwrites silently (``what`` names the registry in the message).

    Example:
        >>> names = {}
        >>> add_once(names, "a", 1, "the example registry")
        1
        >>> add_once(names, "a", 2, "the example registry")
        Traceback (most recent call last):
        ...
        ValueError: 'a' is already in the example registry; pick a new name
    """
    if name in registry:
        raise ValueError(f"{name!r} is already in {what}; pick a new name")
    registry[name] = value
    return value
