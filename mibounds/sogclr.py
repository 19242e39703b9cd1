"""SogCLR: the global contrastive objective with one moving-average partition per dataset item.

Yuan et al. 2022, "Provable Stochastic Optimization for Global Contrastive Learning: Small Batch
Does Not Harm Performance" (ICML, arXiv 2202.12387), Algorithm 1; docs/sogclr.md
§7. Over a finite dataset of n items, anchor i keeps ``u_i``, a moving average of its minibatch
partition estimate over the in-batch negatives ``B_i^-``:

    g_i = mean_{z in B_i^-} exp(s(i, z)),    u_i <- (1 - gamma) u_i + gamma g_i

(gamma = 1 on an item's first visit), and the gradient replaces the minibatch partition by ``u_i``:

    surrogate loss_i = -s(i, i+) + mean_{z in B_i^-} stopgrad(exp(s(i, z)) / u_i) s(i, z)

Conventions (differences from the paper and its code, on purpose):

- ``s`` are logits: a critic's scores, or cosine similarity over the temperature. The paper's
  objective is ``tau`` times ours (it writes ``tau log(...)`` over unscaled similarities), so its
  gradients are ``tau`` times these, and the official code sums the two directions where we
  average the anchors: its SGD step at learning rate ``lr`` is ours at ``2 tau lr``.
- Negatives exclude the positive ("decoupled", as in Yeh et al. 2022's DCL); with gamma = 1 the
  surrogate's gradient is exactly that of the decoupled InfoNCE loss
  ``-s(i, i+) + log mean_{z in B_i^-} exp(s(i, z))``.
- The paper's small ``eps_0`` inside the log (there for the convergence proof, absent from its
  code) is not used.
- ``u`` is stored as ``log u`` so that critic scores of any size stay finite in float32.

The pure functions (``global_contrastive``, ``sogclr_loss``) take the anchors' stored state and
return the new one; the modules (``GlobalContrastive``, ``SogCLRLoss``) hold ``log_u`` and a
``visited`` mask as buffers, so they save and restore with ``state_dict``, keyed by the dataset
indices of the batch. Nothing loops over K, M or pairs of views.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor, nn

from mibounds._checks import (
    check_at_least,
    check_candidates,
    check_offset,
    check_positive,
    check_scores,
)
from mibounds._numerics import logsumexp, straight_through
from mibounds.tiled import cosine_terms

__all__ = ["GlobalContrastive", "SogCLRLoss", "global_contrastive", "sogclr_loss"]

Gather = Callable[[Tensor], tuple[Tensor, int]]


# ------------------------------------------------------------------------------------ checks


def _check_gamma(gamma: float) -> float:
    if not (isinstance(gamma, (int, float)) and 0.0 <= gamma <= 1.0):
        raise ValueError(f"gamma must be a number in [0, 1], got {gamma!r}")
    return float(gamma)


def _check_state(log_u: Tensor, visited: Tensor, shape: tuple[int, ...], s: Tensor) -> Tensor:
    """Check the anchors' stored state, ``log_u`` and ``visited`` of shape ``(..., K)``."""
    for name, t in (("log_u", log_u), ("visited", visited)):
        if not isinstance(t, Tensor) or tuple(t.shape) != shape:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a tensor of shape (..., K) = {shape}, got {got}")
    if visited.dtype != torch.bool:
        raise ValueError(f"visited must be a bool tensor, got dtype {visited.dtype}")
    if not log_u.is_floating_point():
        raise ValueError(f"log_u must be a floating-point tensor, got dtype {log_u.dtype}")
    return log_u.to(device=s.device, dtype=s.dtype)


# ------------------------------------------------------------------------------------ core


def _log(x: float) -> float:
    return math.log(x) if x > 0 else -math.inf


def _moving_average(log_u: Tensor, log_g: Tensor, visited: Tensor, gamma: float) -> Tensor:
    """``log((1 - gamma) u + gamma g)``, with gamma = 1 where not ``visited``; in log space."""
    mixed = torch.logaddexp(log_u + _log(1.0 - gamma), log_g + _log(gamma))
    return torch.where(visited.to(log_g.device), mixed, log_g)


def _global_step(
    positive: Tensor,
    others: Tensor,
    n_negatives: int,
    log_u: Tensor,
    visited: Tensor,
    gamma: float,
) -> tuple[Tensor, Tensor]:
    """One SogCLR step for a set of anchors, from their positive logit term and the log of
    their summed exponentiated negatives' logits.

    Args:
        positive: ``(..., R)`` the anchors' positive logit term.
        others: ``(..., R)``, ``log sum_{z in B_i^-} exp(s(i, z))`` over the anchors'
            ``n_negatives`` negatives, differentiable in the logits.
        log_u, visited: ``(..., R)`` the anchors' stored log partition, and False on a first visit.
    Returns:
        ``(objective, log_u_new)``, both ``(..., R)``: the objective's value is
        ``positive - log u_new``; its gradient that of ``positive - mean_neg w s`` with the
        stopped weights ``w = exp(s - log u_new)``, written as that of
        ``positive - exp(others - log u_new) / n_negatives`` (the same gradient: d others / d s
        is the softmax over the negatives).
    """
    with torch.no_grad():
        log_g = others - math.log(n_negatives)
        log_u_new = _moving_average(log_u, log_g, visited, gamma)
    value = positive.detach() - log_u_new
    if not (positive.requires_grad or others.requires_grad):
        return value, log_u_new
    # exp(others - log u_new) <= n_negatives / gamma for gamma > 0 (u_new >= gamma g): finite
    surrogate = positive - (others - log_u_new).exp() / n_negatives
    return straight_through(value, surrogate), log_u_new


# ------------------------------------------------------------------------------------ functions


def global_contrastive(
    scores: Tensor,
    log_u: Tensor,
    visited: Tensor,
    gamma: float = 0.9,
    *,
    offset: int = 0,
    validate_args: bool = True,
) -> tuple[Tensor, Tensor]:
    """SogCLR's global estimate of the InfoNCE-type MI, in nats, and the anchors' new partitions.

    With ``p_i = offset + i`` the positive column of anchor i and ``g_i`` its minibatch
    partition over the N - 1 other candidates (Yuan et al. 2022, Algorithm 1):

        g_i = mean_{j != p_i} exp(s_ij),   u_i <- (1 - gamma_i) u_i + gamma_i g_i,
        I_SogCLR = mean_i [ s_{i,p_i} - log u_i ]

    (gamma_i = 1 where ``visited`` is False): InfoNCE's log ratio
    ``log e^{s_ii} / ((1/K) sum_j e^{s_ij})`` with ``u_i`` in place of the minibatch partition.
    The gradient is that of SogCLR's surrogate, ``mean_i [s_{i,p_i} - mean_{j != p_i}
    stopgrad(e^{s_ij} / u_i) s_ij]``; a training loss is the negative.

    **Not a bound.** ``u_i`` estimates ``Z(x_i) = E_{y ~ p(y)} e^{f(x_i, y)}``, and with the exact
    Z the quantity ``E[f(x, y)] - E_x log Z(x)`` is a lower bound on I(X; Y) (Barber-Agakov with
    the self-normalised ``q(y|x) = p(y) e^f / Z(x)``; Poole et al. 2019's I_UBA in the row
    convention; the K -> infinity limit of InfoNCE, with no log K ceiling). The estimate is not:
    at gamma = 1 it is the decoupled minibatch InfoNCE, and since ``E log g_i <= log Z(x_i)``
    (Jensen) it is biased upwards; at the optimal critic ``f = log p(y|x)/p(y)`` its expectation
    is ``I - E log mean_{j != i} r(x_i, y_j) >= I``. A moving average (gamma < 1) shrinks that
    bias as ``u_i`` averages more batches, while lagging behind a critic that is still training,
    and the negatives are the finite dataset's items, not fresh draws of p(y).

    Bounded scores: SogCLR's analysis (and its code) has cosine similarity over a temperature.
    For gamma < 1 the weights ``e^{s_ij} / u_i`` are not self-normalised, and a rare large
    partition kept in ``u_i`` shrinks them, weakening the negatives' pull; with an unbounded
    critic (a bilinear critic with a free norm term, say) this can feed back and make training
    diverge. Use a bounded critic, e.g. cosine similarity over a temperature.

    Args:
        scores: ``(..., K, N)`` critic scores with ``N >= offset + K`` candidates; the positive of
            anchor i is column ``offset + i`` (``N > K`` for candidates gathered from other
            processes), every other column is a negative.
        log_u: ``(..., K)`` the anchors' stored ``log u_i`` (ignored where not visited).
        visited: ``(..., K)`` bool, False on an item's first visit.
        gamma: moving-average weight in [0, 1]; 1 gives the minibatch partition, 0 the stored one
            (for evaluation; first visits still use the batch).
        offset: column of the first anchor's positive.
    Returns:
        ``(estimate, log_u_new)``: ``(...)`` in nats, and ``(...,  K)`` the anchors' new log u.

    Example:
        >>> import torch
        >>> from mibounds.sogclr import global_contrastive
        >>> s = torch.randn(8, 8, generator=torch.Generator().manual_seed(0)) + 3 * torch.eye(8)
        >>> log_u, visited = torch.zeros(8), torch.zeros(8, dtype=torch.bool)  # first visits
        >>> estimate, log_u = global_contrastive(s, log_u, visited, gamma=0.9)
        >>> tuple(estimate.shape), tuple(log_u.shape)
        ((), (8,))
    """
    gamma = _check_gamma(gamma)
    s = check_scores(scores, square=False, validate_args=validate_args)
    k, n = s.shape[-2:]
    check_offset(offset, k, n)
    log_u = _check_state(log_u, visited, tuple(s.shape[:-1]), s)
    own = torch.arange(n, device=s.device) == offset + torch.arange(k, device=s.device)[:, None]
    positive = s.narrow(-1, offset, k).diagonal(dim1=-2, dim2=-1)
    others = logsumexp(s.masked_fill(own, -math.inf), -1)
    objective, log_u_new = _global_step(positive, others, n - 1, log_u, visited, gamma)
    return objective.mean(-1), log_u_new


def sogclr_loss(
    z: Tensor,
    log_u: Tensor,
    visited: Tensor,
    gamma: float = 0.9,
    temperature: float = 0.1,
    *,
    candidates: Tensor | None = None,
    offset: int = 0,
    memory_budget: int = 2**30,
    validate_args: bool = True,
) -> tuple[Tensor, Tensor]:
    """SogCLR training loss on M views (Yuan et al. 2022, Algorithm 1), and the new partitions.

    Logits ``S[i,a,j,b] = <z_ia, c_jb> / tau`` (unit-normalised), candidates ``c`` (default
    ``z``), ``p_i = offset + i``. Every view ``(i, a)`` is an anchor; its positives are the
    other views of its own sample ``(p_i, b), b != a``, its negatives every view of every other
    sample ``{(j, b): j != p_i}`` (``M (N - 1)`` of them; the anchor itself and its own sample are
    never negatives). At M = 2 these are exactly SogCLR's (and SimCLR's) two directions with
    ``2(N - 1)`` negatives each.

    For M > 2, the one-vs-rest generalisation: the anchor's positive term is the mean over its
    M - 1 other views, and since the negatives do not depend on the target view, one partition
    serves them all:

        g_ia = mean_{j != p_i, b} exp(S[i,a,j,b]),   u_ia = (1 - gamma_i) u_i + gamma_i g_ia,
        L_ia = -mean_{b != a} S[i,a,p_i,b] + log u_ia            (value)
        loss = mean_{i,a} L_ia,  gradient from -mean_b S[i,a,p_i,b] + mean_neg stopgrad(e^S/u_ia) S

    and the item stores ``u_i <- mean_a u_ia`` (the official code's average over the two
    directions). With gamma = 1 the loss and its gradient are those of the decoupled multi-view
    contrastive loss ``mean_{i,a} [-mean_b S[i,a,p_i,b] + log g_ia]``. A training loss: with
    all-view negatives (correlated views of one negative sample) it is not reported as a bound.

    Args:
        z: ``(..., K, M, D)`` anchor embeddings (need not be normalised), K, M >= 2.
        log_u: ``(..., K)`` the anchors' stored ``log u_i``; visited: ``(..., K)`` bool.
        gamma: moving-average weight in [0, 1]. temperature: ``tau > 0``.
        candidates: ``(..., N, M, D)``, e.g. gathered from every process; default ``z``.
        offset: anchor i's own sample is ``candidates[offset + i]``.
        memory_budget: bytes the ``(K, M, N, M)`` logits may take; beyond it they are computed
            in blocks and recomputed in the backward (``mibounds.tiled``).
    Returns:
        ``(loss, log_u_new)``: ``(...)`` and ``(..., K)``.

    Example:
        >>> import torch
        >>> from mibounds.sogclr import sogclr_loss
        >>> z = torch.randn(8, 2, 16, generator=torch.Generator().manual_seed(0))
        >>> loss, log_u = sogclr_loss(z, torch.zeros(8), torch.zeros(8, dtype=torch.bool))
        >>> bool(torch.isfinite(loss)), tuple(log_u.shape)
        (True, (8,))
    """
    gamma = _check_gamma(gamma)
    tau = check_positive(temperature, "temperature")
    x, c = check_candidates(z, candidates, offset, validate_args)
    m = x.shape[-2]
    n = c.shape[-3]
    log_u = _check_state(log_u, visited, tuple(x.shape[:-2]), x)
    # positives S[i, a, p_i, b] indexed [i, a, b], and the log sum over every view of every
    # other sample, dense or in blocks (mibounds.tiled)
    pos, neg = cosine_terms(
        x,
        tau,
        candidates=None if candidates is None else c,
        offset=offset,
        memory_budget=memory_budget,
        validate_args=False,
    )
    positive = (pos.sum(-1) - pos.diagonal(dim1=-2, dim2=-1)) / (m - 1)
    objective, log_u_rows = _global_step(
        positive,
        logsumexp(neg, -1),
        m * (n - 1),
        log_u.unsqueeze(-1).expand(*log_u.shape, m),
        visited.unsqueeze(-1).expand(*visited.shape, m),
        gamma,
    )
    return -objective.mean((-2, -1)), logsumexp(log_u_rows, -1) - math.log(m)


# ------------------------------------------------------------------------------------ modules


class _PartitionState(nn.Module):
    """The per-item state: ``log_u`` and ``visited`` buffers of shape ``(*batch_shape, n)``, read
    and written by dataset index, synchronised across processes through the ``gather`` hook.

    In ``train()`` mode a step moves the batch's ``u_i`` (gamma as set); in ``eval()`` mode it
    reads them without moving them (gamma = 0, nothing stored), so the value is the global
    estimate with the stored partitions; items never visited then use their batch partition.
    """

    log_u: Tensor
    visited: Tensor

    def __init__(
        self, n: int, gamma: float, gather: Gather | None, batch_shape: tuple[int, ...]
    ) -> None:
        super().__init__()
        self.n = check_at_least(n, 2, "n (the dataset size)")
        self.gamma = _check_gamma(gamma)
        self.batch_shape = tuple(batch_shape)
        if gather is not None and self.batch_shape:
            raise ValueError(
                f"gather concatenates processes along dim 0, so it needs batch_shape=(), "
                f"got batch_shape={self.batch_shape}"
            )
        self.gather = gather
        self.register_buffer("log_u", torch.zeros(*self.batch_shape, n))
        self.register_buffer("visited", torch.zeros(*self.batch_shape, n, dtype=torch.bool))

    @property
    def u(self) -> Tensor:
        """``(*batch_shape, n)`` the moving-average partitions ``u_i`` (meaningful where
        ``visited``)."""
        return self.log_u.exp()

    @property
    def _step_gamma(self) -> float:
        return self.gamma if self.training else 0.0

    def _check_batch(self, x: Tensor, name: str, trailing: str) -> None:
        """``x`` must be ``(*batch_shape, <trailing>)`` with ``len(trailing)`` trailing axes."""
        axes = trailing.count(",") + 1
        lead = len(self.batch_shape)
        if (
            not isinstance(x, Tensor)
            or x.dim() != lead + axes
            or x.shape[:lead] != self.batch_shape
        ):
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            want = ", ".join([*map(str, self.batch_shape), trailing])
            raise ValueError(f"{name} must have shape ({want}), got {got}")

    def _indices(self, indices: Tensor | None, k: int, validate_args: bool) -> Tensor:
        shape = (*self.batch_shape, k)
        if indices is None:
            raise ValueError(
                f"SogCLR needs the dataset indices of the batch: indices of shape {shape}, got None"
            )
        if not isinstance(indices, Tensor):
            raise ValueError(f"indices must be a torch.Tensor, got {type(indices).__name__}")
        if indices.dtype == torch.bool or indices.is_floating_point() or indices.is_complex():
            raise ValueError(f"indices must be an integer tensor, got dtype {indices.dtype}")
        if tuple(indices.shape) != shape:
            raise ValueError(
                f"indices must have shape {shape}, one per sample, got {tuple(indices.shape)}"
            )
        if validate_args:
            low, high = int(indices.min()), int(indices.max())
            if low < 0 or high >= self.n:
                raise ValueError(
                    f"indices must lie in [0, n) = [0, {self.n}), got values in [{low}, {high}]"
                )
        return indices.to(device=self.log_u.device, dtype=torch.long)

    def _read(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        return self.log_u.gather(-1, idx), self.visited.gather(-1, idx)

    @torch.no_grad()
    def _store(self, idx: Tensor, log_u_new: Tensor) -> None:
        """Write every process's updates (in ``train()`` mode); an index seen twice in a step
        (sampling with replacement, ``DistributedSampler`` padding) gets the mean of its
        ``log u`` updates."""
        if not self.training:
            return
        if self.gather is not None:
            idx, _ = self.gather(idx)
            log_u_new, _ = self.gather(log_u_new)
        idx = idx.to(self.log_u.device)
        values = log_u_new.detach().to(self.log_u)
        copies = (idx.unsqueeze(-1) == idx.unsqueeze(-2)).sum(-1)
        self.log_u.scatter_(-1, idx, 0.0).scatter_add_(-1, idx, values / copies)
        self.visited.scatter_(-1, idx, True)

    def extra_repr(self) -> str:
        batch = f", batch_shape={self.batch_shape}" if self.batch_shape else ""
        return f"n={self.n}, gamma={self.gamma}{batch}, gather={self.gather is not None}"


class GlobalContrastive(_PartitionState):
    """SogCLR's global contrastive estimator on pairwise scores, keyed by dataset indices.

    ``forward(scores: (*batch_shape, K, N), indices: (*batch_shape, K), *, offset=0) ->
    batch_shape``: ``global_contrastive`` with this module's per-item state, which a training
    step then updates. The value is the global estimate ``mean_i [s_{i,offset+i} - log u_i]`` in
    nats (**not** a bound, see ``global_contrastive``), the gradient that of SogCLR's surrogate;
    a training loss is the negative. In ``eval()`` mode the stored ``u`` are read, not moved.

    Args:
        n: dataset size; ``log_u`` and ``visited`` are ``(*batch_shape, n)`` buffers (saved by
            ``state_dict``).
        gamma: moving-average weight (0.9 as in the paper); the first visit of an item uses 1.
        gather: multi-process hook ``gather(t_local) -> (t_global, offset)`` that concatenates
            every process's ``t`` along dim 0 in rank order (integer tensors too). Used to share
            the ``(index, log u)`` updates so that every process holds the same state. Candidates
            from other processes go in the scores' extra columns, with ``offset`` this process's
            first row.
        batch_shape: leading dims of independent states, e.g. ``(R,)`` for R seeds trained as
            one stacked model, each on its own dataset (indices ``(R, K)``).

    Example:
        >>> import torch
        >>> from mibounds.sogclr import GlobalContrastive
        >>> state = GlobalContrastive(n=100, gamma=0.9)
        >>> s = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
        >>> estimate = state(s, torch.arange(8))  # items 0..7 visited: their u now stored
        >>> int(state.visited.sum())
        8
    """

    def __init__(
        self,
        n: int,
        gamma: float = 0.9,
        gather: Gather | None = None,
        batch_shape: tuple[int, ...] = (),
    ) -> None:
        super().__init__(n, gamma, gather, batch_shape)

    def forward(
        self, scores: Tensor, indices: Tensor, *, offset: int = 0, validate_args: bool = True
    ) -> Tensor:
        self._check_batch(scores, "scores", "K, N")
        idx = self._indices(indices, scores.shape[-2], validate_args)
        estimate, log_u_new = global_contrastive(
            scores, *self._read(idx), self._step_gamma, offset=offset, validate_args=validate_args
        )
        self._store(idx, log_u_new)
        return estimate


class SogCLRLoss(_PartitionState):
    """SogCLR training loss on multi-view embeddings (``sogclr_loss``), keyed by dataset indices.

    ``forward(z: (*batch_shape, K, M, D), indices: (*batch_shape, K)) -> batch_shape``: the loss
    to minimise; a training step updates ``log_u`` and ``visited`` of the batch's items (and,
    through ``gather``, of every process's items). ``eval()`` reads them without moving them.

    Args:
        n: dataset size. temperature: ``tau > 0``. gamma: moving-average weight (0.9).
        gather: ``gather(t_local) -> (t_global, offset)``, concatenating every process's ``t``
            along dim 0 in rank order (as ``PolyViewLoss``'s hook). Applied to ``z`` (candidates
            from every process; gradients reach other processes' rows only if the hook's
            all-gather is differentiable), then to the indices and the ``log u`` updates.
        batch_shape: leading dims of independent states (see ``GlobalContrastive``).
        memory_budget: bytes the scores may take before they are computed in blocks
            (``sogclr_loss``).

    Example:
        >>> import torch
        >>> from mibounds.sogclr import SogCLRLoss
        >>> loss = SogCLRLoss(n=100, temperature=0.2)
        >>> z = torch.randn(8, 2, 16, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isfinite(loss(z, torch.arange(8)))), int(loss.visited.sum())
        (True, 8)
    """

    def __init__(
        self,
        n: int,
        temperature: float = 0.1,
        gamma: float = 0.9,
        gather: Gather | None = None,
        batch_shape: tuple[int, ...] = (),
        memory_budget: int = 2**30,
    ) -> None:
        super().__init__(n, gamma, gather, batch_shape)
        self.temperature = check_positive(temperature, "temperature")
        self.memory_budget = check_at_least(memory_budget, 1, "memory_budget")

    def forward(self, z: Tensor, indices: Tensor, *, validate_args: bool = True) -> Tensor:
        self._check_batch(z, "z", "K, M, D")
        idx = self._indices(indices, z.shape[-3], validate_args)
        candidates, offset = (None, 0) if self.gather is None else self.gather(z)
        loss, log_u_new = sogclr_loss(
            z,
            *self._read(idx),
            self._step_gamma,
            self.temperature,
            candidates=candidates,
            offset=offset,
            memory_budget=self.memory_budget,
            validate_args=validate_args,
        )
        self._store(idx, log_u_new)
        return loss

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}"
