"""Pairwise variational MI estimators as pure functions of a critic's scores.

Conventions (docs/conventions.md): ``scores[..., i, j] = f(x_i, y_j)`` with the positives on
the diagonal; rows are anchors, columns candidates. Leading dimensions are batch
dimensions, so a stack of score matrices gives a stack of estimates of shape ``scores.shape[:-2]``.
Every estimator returns nats (higher = more information); a training loss is its negative.
Means over the K(K-1) off-diagonal pairs are written ``mean_{i!=j}``.

All arithmetic runs in float32 at least (half-precision scores are upcast), exponentials are
taken relative to a row maximum (a logsumexp) so that scores as large as 1e4 stay finite where
the estimate itself is finite, and masks use ``-inf``. The K x K work of every estimator but
``infonce`` runs in fused autograd functions (one K x K buffer forward, one backward, no mask
tensors), which give first derivatives only. Each estimator is described at
docs/pairwise.md#<name>; benchmarks/bench_bounds.py times them.

References: Poole et al. 2019, "On Variational Bounds of Mutual Information" (arXiv 1905.06922);
van den Oord et al. 2018 (CPC); Nguyen, Wainwright & Jordan 2010; Belghazi et al. 2018 (MINE);
Nowozin et al. 2016 (f-GAN); Song & Ermon 2020 (SMILE, arXiv 1910.06222); Zhu et al. 2020 (EqCo,
arXiv 2010.01929).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mibounds._checks import check_finite, check_positive, check_scores
from mibounds._kernels import (
    _InterpolatedTerms,
    _JSGradient,
    _row_logsumexp,
    _shifted_exp,
)
from mibounds._numerics import cross_entropy, logsumexp, straight_through

__all__ = [
    "MINE",
    "dv",
    "eqco",
    "infonce",
    "interpolated",
    "js",
    "nwj",
    "smile",
    "tuba",
]


def _positives(s: Tensor) -> Tensor:
    """``(..., K, N) -> (..., K)``: the critic on the positive pairs ``s[..., i, i]`` (a view)."""
    return s.diagonal(dim1=-2, dim2=-1)


def _logmeanexp_over_pairs(negatives_lse: Tensor) -> Tensor:
    """``(..., K) -> (...)``: from each row's logsumexp over its ``K - 1`` negatives, the log of
    the mean over all ``K (K - 1)`` off-diagonal pairs."""
    k = negatives_lse.shape[-1]
    return logsumexp(negatives_lse, -1) - math.log(k * (k - 1))


def _negatives_logmeanexp(s: Tensor, log_a: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(..., K, K) -> (positives: (..., K), lme: (...))``, with
    ``lme = log mean_{i!=j} exp(s_ij - log a_i)`` (``log_a: (..., K)``, none if omitted); stable
    for any scale, one K x K pass each way."""
    negatives_lse, positives = _row_logsumexp(s, -math.inf)
    if log_a is not None:
        negatives_lse = negatives_lse - log_a
    return positives, _logmeanexp_over_pairs(negatives_lse)


def _checked_output(value: Tensor, name: str, validate_args: bool) -> Tensor:
    """The exp-type bounds (NWJ, TUBA, JS) reach -inf once ``exp`` of a negative's score leaves
    float32's range; that is an overflow, not an estimate, so say so rather than return it."""
    if validate_args:
        check_finite(value, f"{name} (the estimate overflowed: negatives' scores too large)")
    return value


def _number(value: object, name: str) -> float:
    """A real number (an int or a float, not a bool) as a float; NaN and inf are left to the
    caller's range check."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    return float(value)


def _log_baseline(log_baseline: Tensor | float, s: Tensor, validate_args: bool) -> Tensor:
    """A per-anchor log baseline ``(..., K)`` (or one number) as a ``scores.shape[:-1]`` tensor
    in ``s``'s dtype; its leading dimensions may broadcast against the scores' stack."""
    if isinstance(log_baseline, Tensor):
        if log_baseline.dtype == torch.bool or log_baseline.is_complex():
            raise ValueError(f"log_baseline must be a real tensor, got dtype {log_baseline.dtype}")
        log_a = log_baseline.to(device=s.device, dtype=s.dtype)
    else:
        log_a = torch.tensor(_number(log_baseline, "log_baseline"), dtype=s.dtype, device=s.device)
    batch = s.shape[:-1]
    if log_a.dim() > 0:
        try:
            fits = (
                log_a.shape[-1] == batch[-1] and torch.broadcast_shapes(log_a.shape, batch) == batch
            )
        except RuntimeError:
            fits = False
        if not fits:
            raise ValueError(
                f"log_baseline must have shape (..., K) broadcastable to scores.shape[:-1] = "
                f"{tuple(batch)}, got {tuple(log_a.shape)}"
            )
    if validate_args:
        check_finite(log_a, "log_baseline")
    return log_a.expand(batch)


def infonce(scores: Tensor, *, validate_args: bool = True) -> Tensor:
    """InfoNCE (CPC) lower bound, in nats; Poole et al. 2019, I_NCE (van den Oord et al. 2018).
    See docs/pairwise.md#infonce.

    ``I_NCE = log N + mean_i [ s_ii - logsumexp_j s_ij ]``,  with ``I_NCE <= log N``.

    Args:
        scores: ``(..., K, N)`` with ``N >= K``; the positive of anchor ``i`` is column ``i``.
            ``N == K`` is the usual in-batch case; extra columns ``K..N-1`` are additional
            negatives (a memory bank) and raise the ceiling to ``log N``.
    Returns:
        ``(...)``: the estimate per stacked score matrix.

    Example:
        >>> import math, torch
        >>> from mibounds import bounds
        >>> s = 3.0 * torch.eye(8)  # positives 3 nats above the negatives
        >>> round(bounds.infonce(s).item(), 4) == round(math.log(8 / (1 + 7 * math.exp(-3))), 4)
        True
        >>> bounds.infonce(torch.zeros(5, 8, 8)).shape  # a stack of 5 score matrices
        torch.Size([5])
    """
    s = check_scores(scores, square=False, validate_args=validate_args)
    k, n = s.shape[-2:]
    own_column = torch.arange(k, device=s.device).expand(s.shape[:-1])
    return math.log(n) - cross_entropy(s, own_column).mean(-1)


def tuba(scores: Tensor, log_baseline: Tensor | float, *, validate_args: bool = True) -> Tensor:
    """Tractable unnormalised Barber-Agakov bound, in nats; Poole et al. 2019, I_TUBA.
    See docs/pairwise.md#tuba.

    ``I_TUBA = 1 + mean_i [s_ii - log a_i] - mean_{i!=j} exp(s_ij - log a_i)``

    a bound for any baseline ``a(x_i) > 0`` of the anchor (Poole writes a(y): the same bound with
    the roles of x and y swapped, since here rows are anchors x).

    Args:
        scores: ``(..., K, K)``.
        log_baseline: ``(..., K)`` log a(x_i) per anchor (leading dimensions may broadcast
            against the stack ``scores.shape[:-2]``; differentiable), or one number for every
            anchor.
    Returns:
        ``(...)``.

    Example:
        >>> import torch
        >>> from mibounds import bounds
        >>> s = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose(bounds.tuba(s, 1.0), bounds.nwj(s)))  # log a = 1 is NWJ
        True
        >>> round(bounds.tuba(torch.eye(8), torch.ones(8)).item(), 4)  # 1 + 0 - e^-1
        0.6321
    """
    s = check_scores(scores, validate_args=validate_args)
    log_a = _log_baseline(log_baseline, s, validate_args)
    positives, lme = _negatives_logmeanexp(s, log_a)
    value = 1.0 + (positives - log_a).mean(-1) - lme.exp()
    return _checked_output(value, "tuba", validate_args)


def nwj(scores: Tensor, *, validate_args: bool = True) -> Tensor:
    """NWJ (f-divergence / MINE-f) lower bound, in nats; Poole et al. 2019, I_NWJ.
    See docs/pairwise.md#nwj.

    ``I_NWJ = mean_i s_ii - e^{-1} mean_{i!=j} exp(s_ij)``  (TUBA with ``log a = 1``);
    tight at ``f* = 1 + log p(y|x)/p(y)``.

    Args:
        scores: ``(..., K, K)``.
    Returns:
        ``(...)``.

    Example:
        >>> import torch
        >>> from mibounds import bounds
        >>> s = 2.0 * torch.eye(8)  # positives 2, negatives 0
        >>> round(bounds.nwj(s).item(), 4)  # 2 - e^-1
        1.6321
    """
    s = check_scores(scores, validate_args=validate_args)
    positives, lme = _negatives_logmeanexp(s)
    value = positives.mean(-1) - (lme - 1.0).exp()
    return _checked_output(value, "nwj", validate_args)


def dv(scores: Tensor, *, validate_args: bool = True) -> Tensor:
    """Donsker-Varadhan / MINE minibatch estimate, in nats; Poole et al. 2019, I_DV.
    See docs/pairwise.md#dv.

    ``I_DV = mean_i s_ii - log mean_{i!=j} exp(s_ij)``

    The population DV is a bound; this minibatch version is a biased estimate of it (the log of
    a sample mean), so it is not labelled a bound.

    Args:
        scores: ``(..., K, K)``.
    Returns:
        ``(...)``.

    Example:
        >>> import torch
        >>> from mibounds import bounds
        >>> s = 2.0 * torch.eye(8) + 5.0  # DV ignores a constant added to every score
        >>> round(bounds.dv(s).item(), 4)
        2.0
    """
    s = check_scores(scores, validate_args=validate_args)
    positives, lme = _negatives_logmeanexp(s)
    return positives.mean(-1) - lme


def js(scores: Tensor, *, validate_args: bool = True) -> Tensor:
    """JS-trained NWJ bound, in nats; Poole et al. 2019, I_JS (f-GAN JS of Nowozin et al. 2016).
    See docs/pairwise.md#js.

    value ``= I_NWJ(s + 1) = mean_i s_ii + 1 - mean_{i!=j} exp(s_ij)``;
    gradient of ``mean_i -softplus(-s_ii) - mean_{i!=j} softplus(s_ij)``.

    The ``+1`` matters: the JS objective is maximised at ``f = log p(y|x)/p(y)``, where NWJ needs
    ``1 + log`` of the ratio, so ``nwj(s)`` would read ``I - 1/e``.

    Args:
        scores: ``(..., K, K)``.
    Returns:
        ``(...)``.

    Example:
        >>> import torch
        >>> from mibounds import bounds
        >>> s = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose(bounds.js(s), bounds.nwj(s + 1.0)))
        True
        >>> s = s.requires_grad_()  # it trains with the JS f-GAN gradient:
        >>> (grad,) = torch.autograd.grad(bounds.js(s), s)
        >>> bool(torch.isclose(grad[0, 0], torch.sigmoid(-s[0, 0]) / 8))
        True
    """
    s = check_scores(scores, validate_args=validate_args)
    with torch.no_grad():
        positives, lme = _negatives_logmeanexp(s)
        value = positives.mean(-1) + 1.0 - lme.exp()
    return _checked_output(value + _JSGradient.apply(s), "js", validate_args)


def smile(scores: Tensor, clip: float = 5.0, *, validate_args: bool = True) -> Tensor:
    """SMILE estimate, in nats; Song & Ermon 2020, I_SMILE (clipped DV value, JS gradients).
    See docs/pairwise.md#smile.

    value ``= mean_i s_ii - log mean_{i!=j} exp(clamp(s_ij, -clip, clip))``;
    gradient of the JS f-GAN objective (as ``js``). ``clip = inf`` gives ``dv``'s value.
    An estimate, not a bound (it inherits DV's minibatch bias).

    Args:
        scores: ``(..., K, K)``.
        clip: positive clipping threshold ``tau`` (``math.inf`` for none).
    Returns:
        ``(...)``.

    Example:
        >>> import math, torch
        >>> from mibounds import bounds
        >>> s = torch.randn(8, 8, generator=torch.Generator().manual_seed(0)) * 10
        >>> bool(torch.isclose(bounds.smile(s, clip=math.inf), bounds.dv(s)))
        True
        >>> bool(bounds.smile(s, clip=1.0) > bounds.dv(s))  # clipping caps the partition
        True
    """
    clip = _number(clip, "clip")
    if not clip > 0:
        raise ValueError(f"clip must be a number > 0 (math.inf for none), got {clip!r}")
    s = check_scores(scores, validate_args=validate_args)
    with torch.no_grad():
        _, _, negatives_lse = _shifted_exp(s.clamp(-clip, clip), -math.inf)
        value = _positives(s).mean(-1) - _logmeanexp_over_pairs(negatives_lse)
    return value + _JSGradient.apply(s)


def interpolated(
    scores: Tensor,
    alpha: float = 0.01,
    log_baseline: Tensor | float = 0.0,
    *,
    validate_args: bool = True,
) -> Tensor:
    """Interpolated InfoNCE/TUBA bound I_alpha, in nats; Poole et al. 2019 eq. (11) with the
    leave-one-out of their reference code, in the row (anchor) convention.
    See docs/pairwise.md#interpolated.

    Multi-sample TUBA whose baseline for anchor ``x_i``, when scoring candidate ``j``, is
    ``m_ij = alpha * mean_{k!=j} exp(s_ik) + (1 - alpha) * q(x_i)``:

    ``I_alpha = 1 + mean_{i!=j} [s_ii - log m_ij] - mean_{i!=j} exp(s_ij - log m_ii)``

    At most ``1 + log(K / alpha)``; alpha -> 1 approaches InfoNCE, alpha -> 0 TUBA with
    baseline q. O(K^2) time and memory (the naive leave-one-out is O(K^3)).

    Args:
        scores: ``(..., K, K)``.
        alpha: interpolation weight in (0, 1].
        log_baseline: ``(..., K)`` log q(x_i) per anchor (leading dimensions may broadcast
            against the stack ``scores.shape[:-2]``; differentiable), or one number for all.
    Returns:
        ``(...)``.

    Example:
        >>> import math, torch
        >>> from mibounds import bounds
        >>> s = 3.0 * torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
        >>> bool(bounds.interpolated(s, 0.1) <= 1 + math.log(8 / 0.1))
        True
        >>> # alpha = 1 drops the baseline q entirely
        >>> bool(bounds.interpolated(s, 1.0, -5.0) == bounds.interpolated(s, 1.0, 5.0))
        True
    """
    alpha = _number(alpha, "alpha")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must lie in (0, 1], got {alpha!r}")
    s = check_scores(scores, validate_args=validate_args)
    k = s.shape[-1]
    log_q = _log_baseline(log_baseline, s, validate_args)
    log_w = math.log(alpha / (k - 1))  # the weight of each e^{s_ik} in m_ij
    # log(1 - alpha) = -inf at alpha = 1 drops the baseline exactly (math.log1p(-1) would raise)
    log_b = log_q + (-math.inf if alpha == 1.0 else math.log1p(-alpha))
    negatives_lse, positives, joint_sums = _InterpolatedTerms.apply(s, log_b, log_w)[:3]
    joint = positives.mean(-1) - joint_sums.sum(-1) / (k * (k - 1))
    # m_ii = w sum_{k!=i} e^{s_ik} + b_i: exp(lse_i - log m_ii) <= 1 / w, never overflows
    log_m_own = torch.logaddexp(log_w + negatives_lse, log_b)
    marginal = (negatives_lse - log_m_own).exp().sum(-1) / (k * (k - 1))
    return 1.0 + joint - marginal


def eqco(scores: Tensor, alpha: float, *, validate_args: bool = True) -> Tensor:
    """EqCo margin InfoNCE, in nats; Zhu et al. 2020 (margin ``m = tau log(alpha / K_neg)``).
    See docs/pairwise.md#eqco.

    ``I_EqCo = log(alpha + 1) - mean_i L_i``,
    ``L_i = -log( e^{s_ii} / (e^{s_ii} + (alpha / (K-1)) sum_{j!=i} e^{s_ij}) )``

    The K - 1 in-batch negatives stand in for ``alpha`` of them. With ``alpha = K - 1`` this is
    exactly ``infonce``. An estimator: a lower bound on MI only for ``alpha <= K - 1`` (see
    ``mibounds.catalogue``), beyond that it can exceed the true MI.

    Args:
        scores: ``(..., K, K)``.
        alpha: the number of negatives EqCo pretends to have, > 0.
    Returns:
        ``(...)``.

    Example:
        >>> import torch
        >>> from mibounds import bounds
        >>> s = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose(bounds.eqco(s, alpha=7), bounds.infonce(s)))  # alpha = K - 1
        True
    """
    alpha = check_positive(alpha, "alpha")
    s = check_scores(scores, validate_args=validate_args)
    k = s.shape[-1]
    # L_i = c + log sum_j exp(s_ij - c [j == i]) - s_ii, c = log(alpha / (K - 1)) the weight
    # of each negative; the row logsumexp then runs over the weighted terms themselves
    c = math.log(alpha / (k - 1))
    lse, positives = _row_logsumexp(s, -c)
    return math.log(alpha + 1.0) - (c + lse - positives).mean(-1)


class MINE(nn.Module):
    """MINE (Belghazi et al. 2018): the DV value with the bias-corrected moving-average gradient.
    See docs/pairwise.md#mine.

    value ``= I_DV(s)``; gradient of ``mean_i s_ii - mean_{i!=j} exp(s_ij) / Z``, where ``Z`` is
    an exponential moving average of ``mean_{i!=j} exp(s_ij)`` (kept in log space so it never
    overflows): ``Z <- momentum * Z + (1 - momentum) * batch mean``, the first batch sets ``Z``.

    Shapes as ``dv``: ``scores: (..., K, K) -> (...)``, in nats; the moving average has shape
    ``(...)`` (``batch_shape``) and is a buffer, so it is saved with ``state_dict``.

    Args:
        momentum: weight of the old average, in [0, 1) (0: each batch's own mean).
        batch_shape: the stack shape ``scores.shape[:-2]`` the module will see.

    Example:
        >>> import torch
        >>> from mibounds import bounds
        >>> mine = bounds.MINE(momentum=0.9)
        >>> s = torch.randn(8, 8, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose(mine(s), bounds.dv(s)))  # the value is DV's
        True
        >>> int(mine.steps)
        1
    """

    log_partition: Tensor
    steps: Tensor

    def __init__(self, momentum: float = 0.99, batch_shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        momentum = _number(momentum, "momentum")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
        self.momentum = momentum
        self.register_buffer("log_partition", torch.zeros(batch_shape))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, scores: Tensor, *, validate_args: bool = True) -> Tensor:
        s = check_scores(scores, validate_args=validate_args)
        if s.shape[:-2] != self.log_partition.shape:
            raise ValueError(
                f"MINE was built for stacks of shape {tuple(self.log_partition.shape)}, got "
                f"scores of shape {tuple(s.shape)}; pass batch_shape={tuple(s.shape[:-2])}"
            )
        positives, batch_log_mean = _negatives_logmeanexp(s)
        with torch.no_grad():
            if int(self.steps) == 0:
                self.log_partition.copy_(batch_log_mean)
            else:
                self.log_partition.copy_(
                    torch.logaddexp(
                        self.log_partition + math.log(self.momentum),
                        batch_log_mean + math.log1p(-self.momentum),
                    )
                    if self.momentum > 0
                    else batch_log_mean
                )
            self.steps += 1
        positive = positives.mean(-1)
        surrogate = positive - (batch_log_mean - self.log_partition).exp()
        return straight_through(positive - batch_log_mean, surrogate)
