"""Pairwise variational MI estimators as pure functions of a critic's scores.

Conventions (``shared/reference/bounds.md`` §1-2): ``scores[..., i, j] = f(x_i, y_j)`` with the
positives on the diagonal; rows are anchors, columns candidates. Leading dimensions are batch
dimensions, so a stack of score matrices gives a stack of estimates of shape ``scores.shape[:-2]``.
Every estimator returns nats (higher = more information); a training loss is its negative.
Means over the K(K-1) off-diagonal pairs are written ``mean_{i!=j}``.

All arithmetic runs in float32 at least (half-precision scores are upcast), exponentials go
through ``logsumexp`` so that scores as large as 1e4 stay finite where the estimate itself is
finite, and masks use ``-inf``.

References: Poole et al. 2019, "On Variational Bounds of Mutual Information" (arXiv 1905.06922);
van den Oord et al. 2018 (CPC); Nguyen, Wainwright & Jordan 2010; Belghazi et al. 2018 (MINE);
Nowozin et al. 2016 (f-GAN); Song & Ermon 2020 (SMILE, arXiv 1910.06222); Zhu et al. 2020 (EqCo,
arXiv 2010.01929).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mibounds._checks import check_finite, check_positive, check_scores
from mibounds._numerics import cross_entropy, logsumexp

__all__ = [
    "MINE",
    "PAIRWISE",
    "dv",
    "eqco",
    "infonce",
    "interpolated",
    "is_bound",
    "js",
    "nwj",
    "smile",
    "tuba",
]


def _positives(s: Tensor) -> Tensor:
    """``(..., K, N) -> (..., K)``: the critic on the positive pairs ``s[..., i, i]``."""
    return s.diagonal(dim1=-2, dim2=-1)


def _drop_positives(s: Tensor) -> Tensor:
    """``(..., K, N) -> (..., K, N)``: ``s`` with ``-inf`` on the positive diagonal ``j == i``,
    so that a logsumexp over a row runs over the negatives only.

    An added ``0 / -inf`` mask rather than ``masked_fill``: the addition's backward is the
    identity, where masked_fill's costs another pass over the K x N gradient.
    """
    k, n = s.shape[-2:]
    return s + torch.zeros(k, n, dtype=s.dtype, device=s.device).fill_diagonal_(-math.inf)


def _negatives_logmeanexp(s: Tensor) -> Tensor:
    """``(..., K, K) -> (...)``: ``log mean_{i!=j} exp(s[..., i, j])``, stable for any scale."""
    k = s.shape[-1]
    return logsumexp(_drop_positives(s).flatten(-2), -1) - math.log(k * (k - 1))


def _checked_output(value: Tensor, name: str, validate_args: bool) -> Tensor:
    """The exp-type bounds (NWJ, TUBA, JS) reach -inf once ``exp`` of a negative's score leaves
    float32's range; that is an overflow, not an estimate, so say so rather than return it."""
    if validate_args:
        check_finite(value, f"{name} (the estimate overflowed: negatives' scores too large)")
    return value


def infonce(scores: Tensor, *, validate_args: bool = True) -> Tensor:
    """InfoNCE (CPC) lower bound, in nats; Poole et al. 2019, I_NCE (van den Oord et al. 2018).

    ``I_NCE = log N + mean_i [ s_ii - logsumexp_j s_ij ]``,  with ``I_NCE <= log N``.

    Args:
        scores: ``(..., K, N)`` with ``N >= K``; the positive of anchor ``i`` is column ``i``.
            ``N == K`` is the usual in-batch case; extra columns ``K..N-1`` are additional
            negatives (a memory bank) and raise the ceiling to ``log N``.
    Returns:
        ``(...)``: the estimate per stacked score matrix.
    """
    s = check_scores(scores, square=False, validate_args=validate_args)
    k, n = s.shape[-2:]
    own_column = torch.arange(k, device=s.device).expand(s.shape[:-1])
    return math.log(n) - cross_entropy(s, own_column).mean(-1)


def tuba(scores: Tensor, log_baseline: Tensor | float, *, validate_args: bool = True) -> Tensor:
    """Tractable unnormalised Barber-Agakov bound, in nats; Poole et al. 2019, I_TUBA.

    ``I_TUBA = 1 + mean_i [s_ii - log a_i] - mean_{i!=j} exp(s_ij - log a_i)``

    a bound for any baseline ``a(x_i) > 0`` of the anchor (Poole writes a(y): the same bound with
    the roles of x and y swapped, since here rows are anchors x).

    Args:
        scores: ``(..., K, K)``.
        log_baseline: ``(..., K)`` log a(x_i) per anchor, or a float used for every anchor.
    Returns:
        ``(...)``.
    """
    s = check_scores(scores, validate_args=validate_args)
    log_a = torch.as_tensor(log_baseline, dtype=s.dtype, device=s.device)
    if log_a.dim() == 0:
        log_a = log_a.expand(s.shape[:-1])
    if log_a.shape[-1:] != s.shape[-1:]:
        raise ValueError(
            f"log_baseline must have shape (..., K) = (..., {s.shape[-1]}) to index the anchors, "
            f"got {tuple(log_a.shape)}"
        )
    if validate_args:
        check_finite(log_a, "log_baseline")
    log_a = log_a.to(s.dtype)
    joint = (_positives(s) - log_a).mean(-1)
    marginal = _negatives_logmeanexp(s - log_a.unsqueeze(-1)).exp()
    return _checked_output(1.0 + joint - marginal, "tuba", validate_args)


def nwj(scores: Tensor, *, validate_args: bool = True) -> Tensor:
    """NWJ (f-divergence / MINE-f) lower bound, in nats; Poole et al. 2019, I_NWJ.

    ``I_NWJ = mean_i s_ii - e^{-1} mean_{i!=j} exp(s_ij)``  (TUBA with ``log a = 1``);
    tight at ``f* = 1 + log p(y|x)/p(y)``.

    Args:
        scores: ``(..., K, K)``.
    Returns:
        ``(...)``.
    """
    s = check_scores(scores, validate_args=validate_args)
    value = _positives(s).mean(-1) - (_negatives_logmeanexp(s) - 1.0).exp()
    return _checked_output(value, "nwj", validate_args)


def dv(scores: Tensor, *, validate_args: bool = True) -> Tensor:
    """Donsker-Varadhan / MINE minibatch estimate, in nats; Poole et al. 2019, I_DV.

    ``I_DV = mean_i s_ii - log mean_{i!=j} exp(s_ij)``

    The population DV is a bound; this minibatch version is a biased estimate of it (the log of
    a sample mean), so it is not labelled a bound.

    Args:
        scores: ``(..., K, K)``.
    Returns:
        ``(...)``.
    """
    s = check_scores(scores, validate_args=validate_args)
    return _positives(s).mean(-1) - _negatives_logmeanexp(s)


def _js_fgan(s: Tensor) -> Tensor:
    """``(..., K, K) -> (...)``: the Jensen-Shannon f-GAN objective of Nowozin et al. 2016,
    ``mean_i -softplus(-s_ii) - mean_{i!=j} softplus(s_ij)``; only its gradient is used."""
    k = s.shape[-1]
    pos = _positives(s)
    # sum over all pairs minus the diagonal: only the gradient of this is used, and that is exact
    negative_term = (F.softplus(s).sum((-2, -1)) - F.softplus(pos).sum(-1)) / (k * (k - 1))
    return -F.softplus(-pos).mean(-1) - negative_term


def _straight_through(value: Tensor, gradient_surrogate: Tensor) -> Tensor:
    """Report ``value`` while back-propagating the gradient of ``gradient_surrogate``.

    Written as ``value + (g - g.detach())`` rather than ``g + (value - g).detach()``: the
    forward result is then ``value`` to the last bit, whatever the scale of ``g``.
    """
    return value.detach() + (gradient_surrogate - gradient_surrogate.detach())


def js(scores: Tensor, *, validate_args: bool = True) -> Tensor:
    """JS-trained NWJ bound, in nats; Poole et al. 2019, I_JS (f-GAN JS of Nowozin et al. 2016).

    value ``= I_NWJ(s + 1) = mean_i s_ii + 1 - mean_{i!=j} exp(s_ij)``;
    gradient of ``mean_i -softplus(-s_ii) - mean_{i!=j} softplus(s_ij)``.

    The ``+1`` matters: the JS objective is maximised at ``f = log p(y|x)/p(y)``, where NWJ needs
    ``1 + log`` of the ratio, so ``nwj(s)`` would read ``I - 1/e``.

    Args:
        scores: ``(..., K, K)``.
    Returns:
        ``(...)``.
    """
    s = check_scores(scores, validate_args=validate_args)
    with torch.no_grad():
        value = nwj(s + 1.0, validate_args=False)
    return _checked_output(_straight_through(value, _js_fgan(s)), "js", validate_args)


def smile(scores: Tensor, clip: float = 5.0, *, validate_args: bool = True) -> Tensor:
    """SMILE estimate, in nats; Song & Ermon 2020, I_SMILE (clipped DV value, JS gradients).

    value ``= mean_i s_ii - log mean_{i!=j} exp(clamp(s_ij, -clip, clip))``;
    gradient of the JS f-GAN objective (as ``js``). ``clip = inf`` gives ``dv``'s value.
    An estimate, not a bound (it inherits DV's minibatch bias).

    Args:
        scores: ``(..., K, K)``.
        clip: positive clipping threshold ``tau``.
    Returns:
        ``(...)``.
    """
    if not (isinstance(clip, (int, float)) and clip > 0):
        raise ValueError(f"clip must be a number > 0 (math.inf for none), got {clip!r}")
    s = check_scores(scores, validate_args=validate_args)
    with torch.no_grad():
        value = _positives(s).mean(-1) - _negatives_logmeanexp(s.clamp(-clip, clip))
    return _straight_through(value, _js_fgan(s))


def _leave_one_out_logmeanexp(s: Tensor) -> Tensor:
    """``(..., K, K) -> (..., K, K)``: ``out[i, j] = log mean_{k!=j} exp(s[i, k])``.

    Uses ``lse + log1p(-exp(s_ij - lse))``, which is exact wherever ``s_ij`` is not its row's
    maximum (then ``exp(s_ij - lse) <= 1/2``); at the row maximum, where that form cancels to
    ``log 0``, the row's logsumexp without the maximum is used instead. O(K^2), unlike the
    O(K^3) naive mask over ``k != j``.
    """
    k = s.shape[-1]
    lse = logsumexp(s, -1, keepdim=True)
    at_max = torch.zeros_like(s, dtype=torch.bool).scatter_(-1, s.argmax(-1, keepdim=True), True)
    # the value at the max is replaced below; a safe stand-in keeps where()'s gradient finite
    d = (s - lse).masked_fill(at_max, -1.0)
    generic = lse + torch.log1p(-d.exp())
    without_max = logsumexp(s.masked_fill(at_max, -math.inf), -1, keepdim=True)
    return torch.where(at_max, without_max, generic) - math.log(k - 1)


def interpolated(
    scores: Tensor,
    alpha: float = 0.01,
    log_baseline: Tensor | float = 0.0,
    *,
    validate_args: bool = True,
) -> Tensor:
    """Interpolated InfoNCE/TUBA bound I_alpha, in nats; Poole et al. 2019 eq. (11) with the
    leave-one-out of their reference code, in the row (anchor) convention.

    Multi-sample TUBA whose baseline for anchor ``x_i``, when scoring candidate ``j``, is
    ``m_ij = alpha * mean_{k!=j} exp(s_ik) + (1 - alpha) * q(x_i)``:

    ``I_alpha = 1 + mean_{i!=j} [s_ii - log m_ij] - mean_{i!=j} exp(s_ij - log m_ii)``

    At most ``1 + log(K / alpha)``; alpha -> 1 approaches InfoNCE, alpha -> 0 TUBA with
    baseline q.

    Args:
        scores: ``(..., K, K)``.
        alpha: interpolation weight in (0, 1].
        log_baseline: ``(..., K)`` log q(x_i) per anchor, or one float for all.
    Returns:
        ``(...)``.
    """
    if not (isinstance(alpha, (int, float)) and 0.0 < alpha <= 1.0):
        raise ValueError(f"alpha must lie in (0, 1], got {alpha!r}")
    s = check_scores(scores, validate_args=validate_args)
    k = s.shape[-1]
    log_q = torch.as_tensor(log_baseline, dtype=s.dtype, device=s.device)
    if log_q.dim() == 0:
        log_q = log_q.expand(s.shape[:-1])
    if log_q.shape[-1:] != s.shape[-1:]:
        raise ValueError(
            f"log_baseline must have shape (..., K) = (..., {k}), got {tuple(log_q.shape)}"
        )
    log_q = log_q.to(s.dtype)
    # log(1 - alpha) = -inf at alpha = 1 drops the baseline exactly (math.log1p(-1) would raise)
    log_weight_q = -math.inf if alpha == 1.0 else math.log1p(-alpha)
    log_m = torch.logaddexp(
        _leave_one_out_logmeanexp(s) + math.log(alpha),
        log_q.unsqueeze(-1) + log_weight_q,
    )
    # mean_{i!=j} (s_ii - log m_ij), with the off-diagonal sum taken as all minus diagonal
    log_m_off = log_m.sum((-2, -1)) - _positives(log_m).sum(-1)
    joint = _positives(s).mean(-1) - log_m_off / (k * (k - 1))
    marginal = _negatives_logmeanexp(s - _positives(log_m).unsqueeze(-1)).exp()
    return 1.0 + joint - marginal


def eqco(scores: Tensor, alpha: float, *, validate_args: bool = True) -> Tensor:
    """EqCo margin InfoNCE, in nats; Zhu et al. 2020 (margin ``m = tau log(alpha / K_neg)``).

    ``I_EqCo = log(alpha + 1) - mean_i L_i``,
    ``L_i = -log( e^{s_ii} / (e^{s_ii} + (alpha / (K-1)) sum_{j!=i} e^{s_ij}) )``

    The K - 1 in-batch negatives stand in for ``alpha`` of them. With ``alpha = K - 1`` this is
    exactly ``infonce``. An estimator: a lower bound on MI only for ``alpha <= K - 1`` (see
    ``is_bound``), beyond that it can exceed the true MI.

    Args:
        scores: ``(..., K, K)``.
        alpha: the number of negatives EqCo pretends to have, > 0.
    Returns:
        ``(...)``.
    """
    alpha = check_positive(alpha, "alpha")
    s = check_scores(scores, validate_args=validate_args)
    k = s.shape[-1]
    pos = _positives(s)
    negatives = logsumexp(_drop_positives(s), -1)
    partition = torch.logaddexp(pos, negatives + math.log(alpha / (k - 1)))
    return math.log(alpha + 1.0) - (partition - pos).mean(-1)


class MINE(nn.Module):
    """MINE (Belghazi et al. 2018): the DV value with the bias-corrected moving-average gradient.

    value ``= I_DV(s)``; gradient of ``mean_i s_ii - mean_{i!=j} exp(s_ij) / Z``, where ``Z`` is
    an exponential moving average of ``mean_{i!=j} exp(s_ij)`` (kept in log space so it never
    overflows): ``Z <- momentum * Z + (1 - momentum) * batch mean``, the first batch sets ``Z``.

    Shapes as ``dv``: ``scores: (..., K, K) -> (...)``; the moving average has shape ``(...)`` and
    is a buffer, so it is saved with ``state_dict``.
    """

    log_partition: Tensor
    steps: Tensor

    def __init__(self, momentum: float = 0.99, batch_shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        if not (isinstance(momentum, (int, float)) and 0.0 <= momentum < 1.0):
            raise ValueError(f"momentum must lie in [0, 1), got {momentum!r}")
        self.momentum = float(momentum)
        self.register_buffer("log_partition", torch.zeros(batch_shape))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def forward(self, scores: Tensor, *, validate_args: bool = True) -> Tensor:
        s = check_scores(scores, validate_args=validate_args)
        if s.shape[:-2] != self.log_partition.shape:
            raise ValueError(
                f"MINE was built for stacks of shape {tuple(self.log_partition.shape)}, got "
                f"scores of shape {tuple(s.shape)}; pass batch_shape={tuple(s.shape[:-2])}"
            )
        batch_log_mean = _negatives_logmeanexp(s)
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
        positive = _positives(s).mean(-1)
        surrogate = positive - (batch_log_mean - self.log_partition).exp()
        return _straight_through(positive - batch_log_mean, surrogate)


PAIRWISE: dict[str, Callable[..., Tensor]] = {
    "infonce": infonce,
    "nwj": nwj,
    "dv": dv,
    "js": js,
    "smile": smile,
    "interpolated": interpolated,
}

_ESTIMATES_ONLY = frozenset({"dv", "mine", "smile"})
_BOUNDS = frozenset({"infonce", "nwj", "tuba", "js", "interpolated"})


def is_bound(name: str, k: int, **params: float) -> bool:
    """Whether estimator ``name`` is a lower bound on MI at batch size ``k`` (with ``params``).

    EqCo is one only when its ``alpha <= k - 1`` (it then lowers InfoNCE's ceiling); DV, MINE
    and SMILE are minibatch estimates of DV-type quantities, not bounds.
    """
    if name == "eqco":
        return check_positive(params["alpha"], "alpha") <= k - 1
    if name in _BOUNDS:
        return True
    if name in _ESTIMATES_ONLY:
        return False
    known = sorted(_BOUNDS | _ESTIMATES_ONLY | {"eqco"})
    raise ValueError(f"unknown estimator {name!r}; expected one of {known}")
