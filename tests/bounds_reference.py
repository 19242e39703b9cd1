"""Slow, obviously-correct float64 references for the pairwise estimators: plain loops over
anchors and candidates, straight from the formulas in shared/reference/bounds.md §2."""

from __future__ import annotations

import math

import numpy as np


def _lme(values: list[float]) -> float:
    """log of the mean of exp(values), in plain float arithmetic (shifted by the max)."""
    m = max(values)
    return m + math.log(sum(math.exp(v - m) for v in values) / len(values))


def _pairs(k: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(k) for j in range(k) if i != j]


def infonce(s: np.ndarray) -> float:
    k, n = s.shape
    total = 0.0
    for i in range(k):
        total += s[i, i] - (_lme(list(s[i])) + math.log(n))
    return math.log(n) + total / k


def tuba(s: np.ndarray, log_a: np.ndarray) -> float:
    k = s.shape[0]
    joint = sum(s[i, i] - log_a[i] for i in range(k)) / k
    marginal = sum(math.exp(s[i, j] - log_a[i]) for i, j in _pairs(k)) / (k * (k - 1))
    return 1.0 + joint - marginal


def nwj(s: np.ndarray) -> float:
    k = s.shape[0]
    joint = sum(s[i, i] for i in range(k)) / k
    return joint - math.exp(-1) * sum(math.exp(s[i, j]) for i, j in _pairs(k)) / (k * (k - 1))


def dv(s: np.ndarray) -> float:
    k = s.shape[0]
    return sum(s[i, i] for i in range(k)) / k - _lme([s[i, j] for i, j in _pairs(k)])


def js_value(s: np.ndarray) -> float:
    return nwj(s + 1.0)


def js_fgan(s: np.ndarray) -> float:
    def softplus(v: float) -> float:
        return math.log1p(math.exp(-abs(v))) + max(v, 0.0)

    k = s.shape[0]
    positive = sum(-softplus(-s[i, i]) for i in range(k)) / k
    negative = sum(softplus(s[i, j]) for i, j in _pairs(k)) / (k * (k - 1))
    return positive - negative


def smile(s: np.ndarray, clip: float) -> float:
    k = s.shape[0]
    clipped = [min(max(s[i, j], -clip), clip) for i, j in _pairs(k)]
    return sum(s[i, i] for i in range(k)) / k - _lme(clipped)


def interpolated(s: np.ndarray, alpha: float, log_q: np.ndarray) -> float:
    """Poole's I_alpha with leave-one-out baselines, row convention:
    m[i, j] = alpha * mean_{k != j} exp(s[i, k]) + (1 - alpha) * q(x_i)."""
    k = s.shape[0]

    def m(i: int, j: int) -> float:
        loo = sum(math.exp(s[i, c]) for c in range(k) if c != j) / (k - 1)
        return alpha * loo + (1 - alpha) * math.exp(log_q[i])

    joint = sum(s[i, i] - math.log(m(i, j)) for i, j in _pairs(k)) / (k * (k - 1))
    marginal = sum(math.exp(s[i, j]) / m(i, i) for i, j in _pairs(k)) / (k * (k - 1))
    return 1.0 + joint - marginal


def eqco(s: np.ndarray, alpha: float) -> float:
    k = s.shape[0]
    losses = []
    for i in range(k):
        negatives = sum(math.exp(s[i, j]) for j in range(k) if j != i)
        losses.append(
            -math.log(math.exp(s[i, i]) / (math.exp(s[i, i]) + alpha / (k - 1) * negatives))
        )
    return math.log(alpha + 1) - sum(losses) / k
