"""Argument checks shared by every module: one place that says what was expected and what came.

All checks raise ``ValueError``. Shape checks are always on (shapes are static, so they are
free and safe under ``torch.vmap``); value checks (finiteness) run only when the caller passes
``validate_args=True``, because they synchronise with the device and cannot run under vmap.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


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
