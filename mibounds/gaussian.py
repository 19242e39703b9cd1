"""Gaussian data with known mutual information, and the exact log density ratios on it.

docs/gaussian.md. Two families, each with a closed-form MI in nats:

- pairs ``x ~ N(0, I_d)``, ``y = rho x + sqrt(1 - rho^2) eps``: ``I(x; y) = -(d/2) log(1 - rho^2)``
  (Poole et al. 2019, arXiv 1905.06922, §5, and its 2-4-6-8-10 staircase; Zhu et al. 2020, EqCo);
- M equicorrelated views ``x_a = sqrt(rho) c + sqrt(1 - rho) eps_a``, ``rho`` in ``[0, 1)``:
  every two views are such a pair, and one view against the other M - 1 has the closed form of
  :func:`one_vs_rest_mi` (the setting of Shidani et al. 2024, arXiv 2403.05490, Fig. 2).

Coordinates are independent, so every MI is d times its 1-D value and every log ratio a sum over
coordinates. The log ratios ``log p(y|x)/p(y)`` are the optimal critics of InfoNCE-type bounds
(NWJ-type bounds are tight at ``1 + log ratio``); they let estimators be tested without training.

Samplers draw on the generator's device, in float32 at least, then move the samples to the
requested device and dtype: one seed gives the same numbers whatever the target device.
"""

from __future__ import annotations

import functools
import math
import numbers
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

from mibounds._checks import (
    check_at_least,
    check_correlation,
    check_float_dtype,
    check_layout,
    check_pairs,
    compute_dtype,
)
from mibounds._numerics import between_all_views, standard_normal

__all__ = [
    "equicorrelated_cov",
    "gaussian_mi",
    "mi_from_rho",
    "multiview_log_ratio",
    "one_vs_rest_log_ratio",
    "one_vs_rest_mi",
    "pair_log_ratio",
    "rho_from_mi",
    "sample_pairs",
    "sample_views",
    "staircase",
]

# ------------------------------------------------------------------------------------ checks


def _check_views_m(m: int) -> int:
    return check_at_least(m, 2, "m (views per sample)")


# ------------------------------------------------------------------------------- closed forms


def mi_from_rho(rho: float, d: int) -> float:
    """MI between ``x ~ N(0, I_d)`` and ``y = rho x + sqrt(1 - rho^2) eps``, in nats.

    ``I(x; y) = -(d/2) log(1 - rho^2)``  (Poole et al. 2019, §5; docs/gaussian.md). Also the MI
    between any two of M equicorrelated views.

    Args:
        rho: correlation per coordinate, in ``(-1, 1)``.
        d: dimension, >= 1.

    Example:
        >>> from mibounds.gaussian import mi_from_rho, rho_from_mi
        >>> round(mi_from_rho(0.9, 1), 4), round(rho_from_mi(mi_from_rho(0.9, 20), 20), 6)
        (0.8304, 0.9)
    """
    rho = check_correlation(rho)
    d = check_at_least(d, 1, "d")
    # (1 - rho)(1 + rho) keeps its relative precision as |rho| -> 1; 1 - rho^2 does not
    return -0.5 * d * (math.log1p(-rho) + math.log1p(rho))


def rho_from_mi(mi: float, d: int) -> float:
    """The correlation ``rho >= 0`` at which d-dimensional pairs carry ``mi`` nats.

    ``rho(I) = sqrt(1 - exp(-2 I / d))``, the inverse of :func:`mi_from_rho` on ``rho >= 0``.

    Args:
        mi: target MI in nats, >= 0.
        d: dimension, >= 1.

    Example:
        >>> from mibounds.gaussian import mi_from_rho, rho_from_mi
        >>> round(mi_from_rho(rho_from_mi(2.0, 20), 20), 9)  # the inverse of mi_from_rho
        2.0
    """
    d = check_at_least(d, 1, "d")
    if not (isinstance(mi, (int, float)) and math.isfinite(mi) and mi >= 0):
        raise ValueError(f"mi must be a finite number >= 0 (nats), got {mi!r}")
    rho = math.sqrt(-math.expm1(-2.0 * mi / d))
    if rho >= 1.0:
        raise ValueError(
            f"mi = {mi} nats in d = {d} needs rho = 1 to float64 precision; expected mi / d < 18"
        )
    return rho


def one_vs_rest_mi(rho: float, d: int, m: int | float) -> float:
    """MI between one of M equicorrelated views and the other M - 1, in nats.

    ``I(x_a; X_{\\a}) = (d/2) log[(1 + (M-2) rho) / ((1 - rho)(1 + (M-1) rho))]``,
    ``-(d/2) log(1 - rho)`` (``= I(x_a; c)``) as M -> inf; at M = 2 it is :func:`mi_from_rho`.
    The log-det formula of :func:`gaussian_mi` applied to the equicorrelated covariance
    (docs/gaussian.md); the quantity Shidani et al. 2024's one-vs-rest bounds estimate.

    Args:
        rho: correlation between any two views, in ``[0, 1)``.
        d: dimension of each view, >= 1.
        m: views per sample, an integer >= 2 (an integral float is accepted), or ``math.inf``
            for the limit.

    Example:
        >>> import math
        >>> from mibounds.gaussian import one_vs_rest_mi
        >>> [round(one_vs_rest_mi(0.9, 1, m), 4) for m in (2, 4, math.inf)]
        [0.8304, 1.0119, 1.1513]
    """
    rho = check_correlation(rho, allow_negative=False)
    d = check_at_least(d, 1, "d")
    if m == math.inf:
        return -0.5 * d * math.log1p(-rho)
    integral = isinstance(m, numbers.Real) and not isinstance(m, bool) and float(m).is_integer()
    if not (integral and m >= 2):
        raise ValueError(f"m must be an integer >= 2 or math.inf, got {m!r}")
    return 0.5 * d * (math.log1p((m - 2) * rho) - math.log1p(-rho) - math.log1p((m - 1) * rho))


def _check_index(idx: Sequence[int], n: int, name: str) -> list[int]:
    try:
        out = [operator.index(i) for i in idx]
    except TypeError:
        raise ValueError(f"{name} must be a sequence of integer indices, got {idx!r}") from None
    if not out or len(set(out)) != len(out) or not all(0 <= i < n for i in out):
        raise ValueError(
            f"{name} must be a non-empty sequence of distinct indices in [0, {n}), got {out}"
        )
    return out


def gaussian_mi(cov: Tensor, idx_a: Sequence[int], idx_b: Sequence[int]) -> float:
    """MI between two disjoint blocks A and B of a Gaussian vector with covariance ``cov``, nats.

    ``I(A; B) = (1/2) [log det S_AA + log det S_BB - log det S]``, ``S`` the covariance of
    ``(A, B)`` together (from the Gaussian entropy ``(1/2) log det(2 pi e S)``; docs/gaussian.md).
    Computed in float64 through Cholesky factors.

    Args:
        cov: ``(n, n)`` symmetric covariance (tensor or array); only the rows and columns in
            A and B are used, and they must form a positive definite matrix.
        idx_a, idx_b: disjoint, non-empty index sequences into ``cov``.

    Example:
        >>> from mibounds.gaussian import equicorrelated_cov, gaussian_mi
        >>> round(gaussian_mi(equicorrelated_cov(4, 0.9), [0], [1, 2, 3]), 4)  # one-vs-rest, M = 4
        1.0119
    """
    c = torch.as_tensor(cov, dtype=torch.float64)
    if c.dim() != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"cov must be a square (n, n) matrix, got shape {tuple(c.shape)}")
    if not bool(torch.isfinite(c).all()) or not torch.allclose(c, c.T):
        raise ValueError("cov must be a finite symmetric matrix, got a non-symmetric or NaN one")
    a = _check_index(idx_a, c.shape[0], "idx_a")
    b = _check_index(idx_b, c.shape[0], "idx_b")
    if set(a) & set(b):
        raise ValueError(
            f"idx_a and idx_b must be disjoint, both contain {sorted(set(a) & set(b))}"
        )

    def logdet(idx: list[int]) -> float:
        chol, info = torch.linalg.cholesky_ex(c[idx][:, idx])
        if int(info) != 0:
            raise ValueError(
                f"cov restricted to indices {idx} must be positive definite, it is not"
            )
        return 2.0 * chol.diagonal().log().sum().item()

    return 0.5 * (logdet(a) + logdet(b) - logdet(a + b))


def equicorrelated_cov(
    m: int,
    rho: float,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Covariance of one coordinate of M equicorrelated views: ``(1 - rho) I + rho 1 1^T``.

    Returns ``(m, m)``; the covariance of all ``M d`` coordinates (view-major) is its Kronecker
    product with ``I_d``.

    Example:
        >>> from mibounds.gaussian import equicorrelated_cov
        >>> equicorrelated_cov(3, 0.5).tolist()
        [[1.0, 0.5, 0.5], [0.5, 1.0, 0.5], [0.5, 0.5, 1.0]]
    """
    m = _check_views_m(m)
    rho = check_correlation(rho, allow_negative=False)
    eye = torch.eye(m, dtype=check_float_dtype(dtype), device=device)
    return (1.0 - rho) * eye + rho


def staircase(
    levels: Sequence[float] = (2.0, 4.0, 6.0, 8.0, 10.0), steps_per_level: int = 4000
) -> Tensor:
    """Poole et al. 2019's schedule of true MI (nats) per training step (their Fig. 2 set-up).

    Returns ``(len(levels) * steps_per_level,)`` float64: each level held for
    ``steps_per_level`` steps. With d = 20, ``rho_from_mi(level, 20)`` gives each step's data.

    Example:
        >>> from mibounds.gaussian import staircase
        >>> staircase([2, 4], 2).tolist()
        [2.0, 2.0, 4.0, 4.0]
    """
    steps = check_at_least(steps_per_level, 1, "steps_per_level")
    ok = len(levels) > 0 and all(
        isinstance(v, (int, float)) and math.isfinite(v) and v >= 0 for v in levels
    )
    if not ok:
        raise ValueError(f"levels must be a non-empty sequence of MI values >= 0, got {levels!r}")
    return torch.tensor([float(v) for v in levels], dtype=torch.float64).repeat_interleave(steps)


# ----------------------------------------------------------------------------------- sampling


def sample_pairs(
    k: int,
    d: int,
    rho: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """K correlated Gaussian pairs: ``x ~ N(0, I_d)``, ``y = rho x + sqrt(1 - rho^2) eps``.

    ``I(x; y) = mi_from_rho(rho, d)`` nats (Poole et al. 2019, §5); use ``rho_from_mi`` to
    set a target MI.

    Args:
        k: pairs, >= 2. d: dimension, >= 1. rho: correlation in ``(-1, 1)``.
        generator: source of randomness; the same seed gives the same samples.
        device: where the samples go (default: the generator's device, else torch's default).
        dtype: floating dtype of the samples (drawn in float32 at least, then cast).
    Returns:
        ``x: (K, d)``, ``y: (K, d)``.

    Example:
        >>> import torch
        >>> from mibounds.gaussian import sample_pairs
        >>> x, y = sample_pairs(1000, 2, 0.8, generator=torch.Generator().manual_seed(0))
        >>> bool(abs(torch.corrcoef(torch.stack([x[:, 0], y[:, 0]]))[0, 1] - 0.8) < 0.05)
        True
    """
    k = check_at_least(k, 2, "k")
    d = check_at_least(d, 1, "d")
    rho = check_correlation(rho)
    x, eps = standard_normal((2, k, d), generator, device, dtype)
    y = rho * x + math.sqrt((1.0 - rho) * (1.0 + rho)) * eps
    return x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)


def sample_views(
    k: int,
    m: int,
    d: int,
    rho: float,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """K samples of M equicorrelated Gaussian views: ``x_a = sqrt(rho) c + sqrt(1 - rho) eps_a``.

    Each view is ``N(0, I_d)``, two views correlate by ``rho`` per coordinate (covariance
    ``equicorrelated_cov(m, rho)`` across views), ``I(x_a; x_b) = mi_from_rho(rho, d)`` and
    ``I(x_a; X_{\\a}) = one_vs_rest_mi(rho, d, m)`` nats (docs/gaussian.md#equicorrelated-views).

    Args:
        k: samples, >= 2. m: views, >= 2. d: dimension, >= 1. rho: in ``[0, 1)``.
        generator, device, dtype: as in :func:`sample_pairs`.
    Returns:
        ``(K, M, d)``.

    Example:
        >>> import torch
        >>> from mibounds.gaussian import sample_views
        >>> tuple(sample_views(16, 4, 2, 0.9, generator=torch.Generator().manual_seed(0)).shape)
        (16, 4, 2)
    """
    k = check_at_least(k, 2, "k")
    m = _check_views_m(m)
    d = check_at_least(d, 1, "d")
    rho = check_correlation(rho, allow_negative=False)
    noise = standard_normal((k, m + 1, d), generator, device, dtype)
    common, own = noise[:, :1], noise[:, 1:]
    views = math.sqrt(rho) * common + math.sqrt(1.0 - rho) * own
    return views.to(device=device, dtype=dtype)


# ------------------------------------------------------------------------- analytic critics


def _common_dtype(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    dtype = torch.promote_types(compute_dtype(x).dtype, compute_dtype(y).dtype)
    return x.to(dtype), y.to(dtype)


def pair_log_ratio(x: Tensor, y: Tensor, rho: float) -> Tensor:
    """The optimal critic on Gaussian pairs: ``f*(x_i, y_j) = log p(y_j | x_i) / p(y_j)``, nats.

    ``f*(x, y) = -(d/2) log(1 - rho^2) + (rho x.y - rho^2 (|x|^2 + |y|^2) / 2) / (1 - rho^2)``
    (docs/gaussian.md). ``E[f*(x, y)]`` over positive pairs is ``mi_from_rho(rho, d)``.

    Args:
        x, y: ``(..., K, d)``, rows are samples; rho: correlation in ``(-1, 1)``.
    Returns:
        ``(..., K, K)`` with ``[..., i, j] = f*(x_i, y_j)``, in float32 at least.

    Example:
        >>> import torch
        >>> from mibounds.gaussian import pair_log_ratio, sample_pairs
        >>> x, y = sample_pairs(4, 1, 0.5, generator=torch.Generator().manual_seed(0))
        >>> tuple(pair_log_ratio(x, y, 0.5).shape)  # scores[i, j] = f*(x_i, y_j)
        (4, 4)
    """
    check_pairs(x, y)
    rho = check_correlation(rho)
    x, y = _common_dtype(x, y)
    residual = (1.0 - rho) * (1.0 + rho)
    squares = (x * x).sum(-1).unsqueeze(-1) + (y * y).sum(-1).unsqueeze(-2)
    quadratic = rho * (x @ y.mT) - 0.5 * rho**2 * squares
    return mi_from_rho(rho, x.shape[-1]) + quadratic / residual


def multiview_log_ratio(z: Tensor, rho: float) -> Tensor:
    """The optimal pairwise critic between every two equicorrelated views, in nats.

    ``S[i, a, j, b] = f*(x_{i,a}, x_{j,b}) = log p(x_{j,b} | x_{i,a}) / p(x_{j,b})`` with
    ``f*`` of :func:`pair_log_ratio` (any two views are a pair with correlation rho): the exact
    critic for Multi-Crop and the PVC bounds (Shidani et al. 2024; docs/gaussian.md). The
    diagonal ``a = b`` is computed too, with the same formula; the bounds exclude it.

    Args:
        z: ``(..., K, M, d)``; rho: correlation between views, in ``[0, 1)``.
    Returns:
        ``S: (..., K, M, K, M)``, in float32 at least.

    Example:
        >>> import torch
        >>> from mibounds.gaussian import multiview_log_ratio, sample_views
        >>> z = sample_views(8, 3, 1, 0.9, generator=torch.Generator().manual_seed(0))
        >>> tuple(multiview_log_ratio(z, 0.9).shape)
        (8, 3, 8, 3)
    """
    check_layout(z, "z", ("K", "M", "d"))
    rho = check_correlation(rho, allow_negative=False)
    return between_all_views(functools.partial(pair_log_ratio, rho=rho), z)


def one_vs_rest_log_ratio(z: Tensor, rho: float) -> Tensor:
    """The optimal set critic between one view and the rest of a sample, in nats.

    ``F[a, i, j] = log p(x_{i,a} | X_{j,\\a}) / p(x_{i,a})``, where per coordinate
    ``x_a | X_{\\a} ~ N(beta sum_{b!=a} x_b, 1 - R^2)``, ``beta = rho / (1 + (M-2) rho)``,
    ``1 - R^2 = (1 - rho)(1 + (M-1) rho) / (1 + (M-2) rho)`` (docs/gaussian.md). The rest enters
    only through its sum. ``E[F[a, i, i]]`` is ``one_vs_rest_mi(rho, d, M)``; InfoNCE on ``F``
    is Shidani et al. 2024's one-vs-rest bound at its optimal critic.

    Args:
        z: ``(..., K, M, d)``; rho: correlation between views, in ``[0, 1)``.
    Returns:
        ``F: (..., M, K, K)``, in float32 at least.

    Example:
        >>> import torch
        >>> from mibounds.gaussian import one_vs_rest_log_ratio, sample_views
        >>> z = sample_views(8, 3, 1, 0.9, generator=torch.Generator().manual_seed(0))
        >>> tuple(one_vs_rest_log_ratio(z, 0.9).shape)  # F[a, i, j]
        (3, 8, 8)
    """
    check_layout(z, "z", ("K", "M", "d"))
    rho = check_correlation(rho, allow_negative=False)
    x = compute_dtype(z).movedim(-2, -3)  # (..., M, K, d): view a of sample i
    m = x.shape[-3]
    beta = rho / (1.0 + (m - 2) * rho)
    residual = (1.0 - rho) * (1.0 + (m - 1) * rho) / (1.0 + (m - 2) * rho)
    mean = beta * (x.sum(-3, keepdim=True) - x)  # E[x_{j,a} | X_{j,\a}], (..., M, K, d)
    x_sq = (x * x).sum(-1).unsqueeze(-1)
    distance = x_sq - 2.0 * (x @ mean.mT) + (mean * mean).sum(-1).unsqueeze(-2)
    # -(d/2) log(1 - R^2) is exactly the one-vs-rest MI
    return one_vs_rest_mi(rho, x.shape[-1], m) - 0.5 * distance / residual + 0.5 * x_sq
