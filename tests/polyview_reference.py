"""Slow, obviously-correct references for mibounds.polyview, straight from the formulas in
docs/polyview.md: Python loops over samples, views and view pairs; only the
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


def _candidate_scores(row: Tensor, own: int, a: int, b: int, negatives: str) -> Tensor:
    """The scores of anchor (i, a)'s candidate set for target view b, positive first.

    ``row: (N, M)`` holds the anchor's scores against every view of every candidate sample;
    ``own`` is the anchor's own sample among them. same_view: (j, b) for every j; all_views:
    the positive (own, b) and (j, n) for every j != own and every n; view_pairs: the positive
    and (j, a), (j, b) for every j != own."""
    n = row.shape[0]
    positive = row[own, b].reshape(1)
    if negatives == "same_view":
        return torch.cat([positive, row[torch.arange(n) != own, b]])
    others = row[torch.arange(n) != own]  # (N - 1, M)
    if negatives == "all_views":
        return torch.cat([positive, others.flatten()])
    return torch.cat([positive, others[:, b], others[:, a]])


def _anchor_loss(cross_entropies: list[Tensor], aggregate: str, n: int) -> Tensor:
    """geometric: mean CE; arithmetic: -log mean exp(-CE); arithmetic_printed (Algorithm 1 as
    printed): logsumexp CE - log N."""
    if aggregate == "geometric":
        return _mean(cross_entropies)
    if aggregate == "arithmetic":
        return -_log_mean_exp([-ce for ce in cross_entropies])
    return torch.logsumexp(torch.stack(cross_entropies), 0) - math.log(n)


def _loss(score_row, k: int, m: int, n: int, offset: int, aggregate: str, negatives: str):
    """mean over anchors (i, a) of the aggregate over b != a of CE = logsumexp(candidates) -
    positive; ``score_row(i, a) -> (N, M)`` gives the anchor's scores."""
    per_anchor = []
    for i in range(k):
        own = offset + i
        for a in range(m):
            row = score_row(i, a)
            cross_entropies = []
            for b in range(m):
                if b == a:
                    continue
                scores = _candidate_scores(row, own, a, b, negatives)
                cross_entropies.append(torch.logsumexp(scores, 0) - scores[0])
            per_anchor.append(_anchor_loss(cross_entropies, aggregate, n))
    return _mean(per_anchor)


def candidate_count(n: int, m: int, negatives: str) -> int:
    """N (same_view), 1 + M(N - 1) (all_views), 2N - 1 (view_pairs)."""
    return {"same_view": n, "all_views": 1 + m * (n - 1), "view_pairs": 2 * n - 1}[negatives]


def contrastive_estimate(S: Tensor, aggregate: str, negatives: str) -> Tensor:
    """log(candidate count) - the loss on the scores S (K, M, K, M)."""
    k, m = S.shape[:2]
    loss = _loss(lambda i, a: S[i, a], k, m, k, 0, aggregate, negatives)
    return math.log(candidate_count(k, m, negatives)) - loss


def polyview_loss(
    z: Tensor,
    temperature: float,
    aggregate: str,
    negatives: str,
    candidates: Tensor | None = None,
    offset: int = 0,
) -> Tensor:
    """Cosine scores over the temperature against every candidate view, then for anchor (i, a)
    and target view b != a, CE = -pos + logsumexp over the candidate set (``_candidate_scores``);
    i' = offset + i is the anchor's own row among the candidates; the aggregate over b, then the
    mean over anchors."""
    c = z if candidates is None else candidates
    k, m, _ = z.shape

    def score_row(i: int, a: int) -> Tensor:
        """cosine similarity of z[i, a] with every candidate view (N, M), over the temperature."""
        x = z[i, a]
        return (c @ x) / (x.norm() * c.norm(dim=-1)) / temperature

    return _loss(score_row, k, m, c.shape[0], offset, aggregate, negatives)
