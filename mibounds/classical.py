"""Two classical (non-variational) MI estimators, baselines for the tasks of mibounds.tasks.

- :func:`cca_mi`: the MI of a Gaussian with the sample's covariance; exact in the limit for
  Gaussian data, and for other data the MI of its Gaussian approximation, which can be far off
  either way (docs/tasks.md).
- :func:`ksg_mi`: the k-nearest-neighbour estimator of Kraskov, Stögbauer and Grassberger
  (2004), consistent for any continuous distribution, biased low at high MI and high dimension.

Both take samples as numpy arrays, torch tensors (any device; copied to host memory in float64)
or nested lists: ``x: (n, d_x)``, ``y: (n, d_y)``, or 1-D ``(n,)`` for d = 1. They return a
Python float in nats. Bad input (other shapes, different n, NaN or inf, booleans, too few
samples) raises ``ValueError``.
"""

from __future__ import annotations

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.spatial import cKDTree
from scipy.special import digamma

from mibounds._checks import check_at_least
from mibounds.gaussian import gaussian_mi

__all__ = ["cca_mi", "ksg_mi"]


def _as_sample(a: ArrayLike | torch.Tensor, name: str) -> np.ndarray:
    """``(n,)`` or ``(n, d)`` real numbers -> a finite float64 ``(n, d)`` array."""
    if isinstance(a, torch.Tensor):
        a = a.detach().to(device="cpu", dtype=torch.float64).numpy()
    arr = np.asarray(a)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, d) with d >= 1 or (n,), got {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    bad = int((~np.isfinite(arr)).sum())
    if bad:
        raise ValueError(f"{name} has {bad} non-finite entries (NaN or inf); expected all finite")
    return arr


def _as_samples(x, y) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_sample(x, "x"), _as_sample(y, "y")
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x and y must have the same number of samples n, got {x.shape[0]} and {y.shape[0]}"
        )
    return x, y


def cca_mi(x: ArrayLike | torch.Tensor, y: ArrayLike | torch.Tensor) -> float:
    """The Gaussian MI of the sample covariance of ``(x, y)``, in nats.

    ``I_G = (1/2) [log det S_xx + log det S_yy - log det S] = -(1/2) sum_i log(1 - r_i^2)``,
    ``S`` the unbiased sample covariance and ``r_i`` its canonical correlations (Hotelling
    1936; Gel'fand and Yaglom 1957 for the Gaussian MI). Consistent for Gaussian data (biased
    up by about ``d_x d_y / (2 n)`` nats); otherwise the MI of the Gaussian with the same
    covariance, not a bound either way. Invariant to invertible affine maps of x and of y.

    Args:
        x: ``(n, d_x)`` or ``(n,)``; y: ``(n, d_y)`` or ``(n,)``; n > d_x + d_y, so that the
            sample covariance can be nonsingular.
    Returns:
        the estimate in nats, a float.

    Example:
        >>> g = np.random.default_rng(0)
        >>> x = g.standard_normal(100_000)
        >>> y = 0.8 * x + 0.6 * g.standard_normal(100_000)  # rho = 0.8: -log(0.36) / 2
        >>> abs(cca_mi(x, y) - 0.5108) < 0.01
        True
    """
    x, y = _as_samples(x, y)
    (n, d_x), d_y = x.shape, y.shape[1]
    if n <= d_x + d_y:
        raise ValueError(
            f"cca_mi needs n > d_x + d_y = {d_x + d_y} samples for a nonsingular covariance, "
            f"got n = {n}"
        )
    cov = np.cov(np.hstack([x, y]), rowvar=False)
    return gaussian_mi(cov, range(d_x), range(d_x, d_x + d_y))


def _standardize(a: np.ndarray, name: str) -> np.ndarray:
    std = a.std(axis=0)
    if not (std > 0).all():
        raise ValueError(
            f"{name} has constant coordinates {np.flatnonzero(std == 0).tolist()}; "
            "expected every coordinate to vary"
        )
    return (a - a.mean(axis=0)) / std


def ksg_mi(
    x: ArrayLike | torch.Tensor,
    y: ArrayLike | torch.Tensor,
    k: int = 3,
    *,
    standardize: bool = True,
    workers: int = 1,
) -> float:
    """Kraskov-Stögbauer-Grassberger estimator 1 of ``I(x; y)``, in nats.

    ``I = psi(k) + psi(n) - mean_i [psi(n_x(i) + 1) + psi(n_y(i) + 1)]``, ``eps_i`` the
    max-norm distance from ``(x_i, y_i)`` to its k-th nearest neighbour and ``n_x(i)`` the
    number of ``j != i`` with ``|x_j - x_i|_inf < eps_i`` strictly (likewise ``n_y``)
    (Kraskov et al. 2004, Phys. Rev. E 69, 066138, eq. 8). Not a bound; it can come out
    negative, and is returned as it is. Neighbours come from ``scipy.spatial.cKDTree``; the
    strict count uses the radius just below ``eps_i`` (``np.nextafter``), exact for ties.

    The max norm makes the estimate depend on the scales of the coordinates (MI does not), so
    by default every coordinate is first centred and scaled to unit variance; with that the
    estimate is invariant to per-coordinate affine maps. It is not invariant to nonlinear
    monotone maps, although MI is.

    Args:
        x: ``(n, d_x)`` or ``(n,)``; y: ``(n, d_y)`` or ``(n,)``.
        k: neighbours, >= 1, with n > k (3 is Kraskov et al.'s usual choice).
        standardize: scale each coordinate to zero mean and unit variance first.
        workers: threads for the neighbour searches (-1: all cores).
    Returns:
        the estimate in nats, a float.

    Example:
        >>> g = np.random.default_rng(0)
        >>> x = g.standard_normal(5000)
        >>> y = 0.8 * x + 0.6 * g.standard_normal(5000)  # -log(0.36) / 2 = 0.5108 nats
        >>> abs(ksg_mi(x, y) - 0.5108) < 0.03
        True
    """
    x, y = _as_samples(x, y)
    k = check_at_least(k, 1, "k")
    if not isinstance(standardize, bool):
        raise ValueError(f"standardize must be a bool, got {standardize!r}")
    if not isinstance(workers, int) or isinstance(workers, bool) or workers == 0 or workers < -1:
        raise ValueError(f"workers must be a positive integer or -1, got {workers!r}")
    n = x.shape[0]
    if n <= k:
        raise ValueError(f"ksg_mi needs n > k samples, got n = {n} and k = {k}")
    if standardize:
        x, y = _standardize(x, "x"), _standardize(y, "y")
    joint = np.hstack([x, y])
    # the nearest "neighbour" of each point is itself, at distance 0: ask for the (k+1)-th
    dist, _ = cKDTree(joint).query(joint, k=[k + 1], p=np.inf, workers=workers)
    eps = dist[:, 0]
    if not (eps > 0).all():
        raise ValueError(
            f"x and y have {int((eps == 0).sum())} joint points equal to at least k = {k} "
            "others; KSG assumes a continuous distribution (add jitter or lower k)"
        )
    radius = np.nextafter(eps, 0.0)

    def neighbours(a: np.ndarray) -> np.ndarray:  # strictly within eps_i, excluding i itself
        found = cKDTree(a).query_ball_point(
            a, radius, p=np.inf, return_length=True, workers=workers
        )
        return found - 1

    n_x, n_y = neighbours(x), neighbours(y)
    return float(digamma(k) + digamma(n) - np.mean(digamma(n_x + 1) + digamma(n_y + 1)))
