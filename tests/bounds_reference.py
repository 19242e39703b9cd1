"""Slow, obviously-correct float64 references for the pairwise estimators: plain loops over
anchors and candidates, straight from the formulas in docs/pairwise.md."""

from __future__ import annotations

import math

import numpy as np
import torch


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


def _logaddexp(a: float, b: float) -> float:
    if a == -math.inf and b == -math.inf:
        return -math.inf
    m = max(a, b)
    return m + math.log(math.exp(a - m) + math.exp(b - m))


def interpolated(s: np.ndarray, alpha: float, log_q: np.ndarray) -> float:
    """Poole's I_alpha with leave-one-out baselines, row convention:
    m[i, j] = alpha * mean_{k != j} exp(s[i, k]) + (1 - alpha) * q(x_i), in log space so that
    scores of any scale stay finite."""
    k = s.shape[0]
    log_weight_q = -math.inf if alpha == 1 else math.log1p(-alpha)

    def log_m(i: int, j: int) -> float:
        loo = _lme([s[i, c] for c in range(k) if c != j])
        return _logaddexp(math.log(alpha) + loo, log_weight_q + log_q[i])

    joint = sum(s[i, i] - log_m(i, j) for i, j in _pairs(k)) / (k * (k - 1))
    marginal = sum(math.exp(s[i, j] - log_m(i, i)) for i, j in _pairs(k)) / (k * (k - 1))
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


# ------------------------------------------------------------------ plain autograd formulas
# The same estimators in torch, written the obvious way (an -inf mask on the diagonal,
# torch.logsumexp, and for interpolated the O(K^3) leave-one-out mask), for (..., K, K) float64
# scores. torch.logsumexp is exact at any scale, so their autograd gradients are the references
# for the fused backward passes of mibounds.bounds.


def _minus_inf_on_diagonal(k: int, s: torch.Tensor) -> torch.Tensor:
    return torch.zeros(k, k, dtype=s.dtype).fill_diagonal_(-math.inf)


def torch_negatives_logmeanexp(s: torch.Tensor, log_a: torch.Tensor | None = None) -> torch.Tensor:
    k = s.shape[-1]
    shifted = s if log_a is None else s - log_a.unsqueeze(-1)
    masked = shifted + _minus_inf_on_diagonal(k, s)
    return torch.logsumexp(masked.flatten(-2), -1) - math.log(k * (k - 1))


def torch_positives(s: torch.Tensor) -> torch.Tensor:
    return s.diagonal(dim1=-2, dim2=-1)


def torch_nwj(s: torch.Tensor) -> torch.Tensor:
    return torch_positives(s).mean(-1) - (torch_negatives_logmeanexp(s) - 1).exp()


def torch_tuba(s: torch.Tensor, log_a: torch.Tensor) -> torch.Tensor:
    joint = (torch_positives(s) - log_a).mean(-1)
    return 1 + joint - torch_negatives_logmeanexp(s, log_a).exp()


def torch_dv(s: torch.Tensor) -> torch.Tensor:
    return torch_positives(s).mean(-1) - torch_negatives_logmeanexp(s)


def torch_js_fgan(s: torch.Tensor) -> torch.Tensor:
    k = s.shape[-1]
    off = ~torch.eye(k, dtype=torch.bool)
    negatives = torch.nn.functional.softplus(s[..., off]).mean(-1)
    return -torch.nn.functional.softplus(-torch_positives(s)).mean(-1) - negatives


def torch_eqco(s: torch.Tensor, alpha: float) -> torch.Tensor:
    k = s.shape[-1]
    negatives = torch.logsumexp(s + _minus_inf_on_diagonal(k, s), -1)
    pos = torch_positives(s)
    partition = torch.logaddexp(pos, negatives + math.log(alpha / (k - 1)))
    return math.log(alpha + 1) - (partition - pos).mean(-1)


def torch_interpolated(s: torch.Tensor, alpha: float, log_q: torch.Tensor) -> torch.Tensor:
    k = s.shape[-1]
    # loo[..., i, j] = log mean_{c != j} exp(s[..., i, c]): a (K, K, K) mask over c == j
    loo = torch.logsumexp(s.unsqueeze(-2) + _minus_inf_on_diagonal(k, s), -1) - math.log(k - 1)
    log_weight_q = -math.inf if alpha == 1 else math.log1p(-alpha)
    log_m = torch.logaddexp(loo + math.log(alpha), log_q.unsqueeze(-1) + log_weight_q)
    off = ~torch.eye(k, dtype=torch.bool)
    joint = (torch_positives(s).unsqueeze(-1) - log_m)[..., off].mean(-1)
    log_m_own = torch_positives(log_m).unsqueeze(-1)
    marginal = torch_negatives_logmeanexp(s - log_m_own).exp()
    return 1 + joint - marginal
