"""Slow, obviously-correct references for mibounds.polyview, straight from the formulas in
shared/reference/bounds.md §3: Python loops over samples, views and view pairs; only the
reduction over one anchor's candidates is a single torch call. They are written in torch so
that they are differentiable (the benchmark times their backward pass) and run in float64 in
the tests. Unbatched: S is (K, M, K, M), F is (M, K, K), z is (K, M, D)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from mibounds.bounds import infonce


def _log_mean_exp(values: list[Tensor]) -> Tensor:
    """log mean exp over the list, elementwise for tensors."""
    return torch.logsumexp(torch.stack(values), 0) - math.log(len(values))


def _mean(values: list[Tensor]) -> Tensor:
    return torch.stack(values).mean()


def _mean_vectors(values: list[Tensor]) -> Tensor:
    """mean over the list, elementwise for tensors."""
    return torch.stack(values).mean(0)


def log_ratio(S: Tensor, i: int, a: int, b: int) -> Tensor:
    """log r[i, a, b] = S[i, a, i, b] - logsumexp_j S[i, a, j, b] + log K (same-view candidates)."""
    k = S.shape[0]
    return S[i, a, i, b] - torch.logsumexp(S[i, a, :, b], 0) + math.log(k)


def multicrop(S: Tensor, bound=infonce) -> Tensor:
    """mean over ordered view pairs a != b of bound(S[:, a, :, b])."""
    m = S.shape[1]
    return _mean([bound(S[:, a, :, b]) for a in range(m) for b in range(m) if a != b])


def arithmetic(S: Tensor) -> Tensor:
    """mean_{i,a} log mean_{b!=a} r[i, a, b]."""
    k, m = S.shape[:2]
    per_anchor = []
    for i in range(k):
        for a in range(m):
            ratios = [log_ratio(S, i, a, b).exp() for b in range(m) if b != a]
            per_anchor.append(torch.log(_mean(ratios)))
    return _mean(per_anchor)


def geometric(S: Tensor) -> Tensor:
    """mean_{i,a} mean_{b!=a} log r[i, a, b]."""
    k, m = S.shape[:2]
    return _mean(
        [log_ratio(S, i, a, b) for i in range(k) for a in range(m) for b in range(m) if b != a]
    )


def set_scores(S: Tensor, aggregate: str) -> Tensor:
    """F[a] = log mean_{b!=a} exp S[:, a, :, b] (arithmetic) or mean_{b!=a} S[:, a, :, b]."""
    m = S.shape[1]
    reduce = _log_mean_exp if aggregate == "arithmetic" else _mean_vectors
    return torch.stack([reduce([S[:, a, :, b] for b in range(m) if b != a]) for a in range(m)])


def one_vs_rest(F: Tensor, bound=infonce) -> Tensor:
    """mean over views a of bound(F[a])."""
    return _mean([bound(F[a]) for a in range(F.shape[0])])


def sufficient_statistics(z: Tensor, critic=None, normalize: bool = False, bound=infonce) -> Tensor:
    """T[j, a] = mean_{b!=a} z[j, b]; F[a, i, j] = critic(z[i, a], T[j, a]); one_vs_rest(F).

    ``critic`` takes two (K, D) tensors and gives (K, K); the default is the dot product."""
    k, m, _ = z.shape
    estimates = []
    for a in range(m):
        rows = []
        for j in range(k):
            t = _mean_vectors([z[j, b] for b in range(m) if b != a])
            rows.append(t / t.norm() if normalize else t)
        rest = torch.stack(rows)
        F_a = z[:, a] @ rest.T if critic is None else critic(z[:, a], rest)
        estimates.append(bound(F_a))
    return _mean(estimates)


def polyview_loss(
    z: Tensor,
    temperature: float,
    aggregate: str,
    negatives: str,
    candidates: Tensor | None = None,
    offset: int = 0,
) -> Tensor:
    """bounds.md §3: for anchor (i, a) and target view b != a, CE = -pos + logsumexp over the
    candidate set; all_views: the positive (i', b) and (j, n) for every j != i' and every n;
    same_view: (j, b) for every j. i' = offset + i is the anchor's own row among the candidates.
    Geometric: mean_b CE; arithmetic: -log mean_b exp(-CE); then the mean over anchors."""
    c = z if candidates is None else candidates
    k, m, _ = z.shape
    n = c.shape[0]

    def score(x: Tensor, y: Tensor) -> Tensor:
        """cosine similarity of x (D,) with the rows of y (..., D), over the temperature."""
        return (y @ x) / (x.norm() * y.norm(dim=-1)) / temperature

    per_anchor = []
    for i in range(k):
        own = offset + i
        for a in range(m):
            every_view = score(z[i, a], c)  # (N, M): against every view of every candidate
            cross_entropies = []
            for b in range(m):
                if b == a:
                    continue
                positive = every_view[own, b]
                if negatives == "same_view":
                    scores = every_view[:, b]
                else:
                    others = every_view[torch.arange(n) != own].flatten()  # (j, n), j != i'
                    scores = torch.cat([positive.reshape(1), others])
                cross_entropies.append(torch.logsumexp(scores, 0) - positive)
            if aggregate == "geometric":
                per_anchor.append(_mean(cross_entropies))
            else:
                per_anchor.append(-_log_mean_exp([-ce for ce in cross_entropies]))
    return _mean(per_anchor)
