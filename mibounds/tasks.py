"""A suite of named sampling tasks with exact mutual information, for testing MI estimators.

In the style of the "Beyond Normal" benchmark (Czyż et al. 2023, NeurIPS, arXiv 2306.11078, and
its ``bmi`` package, whose task names this suite follows), written in torch; docs/tasks.md
describes every family. Each :class:`Task` knows its MI in nats and draws samples:

- pair tasks give ``x: (n, dim_x)``, ``y: (n, dim_y)`` with ``I(x; y) = task.mi``;
- view tasks give ``(n, M, d)``: M views of dimension d, with ``task.mi`` the one-vs-rest MI
  ``I(x_a; X_{\\a})`` and ``task.mi_pairwise`` the MI ``I(x_a; x_b)`` of two views
  (``dim_x = d``, ``dim_y = (M - 1) d``; :func:`split_one_vs_rest` makes the pair).

Families: correlated Gaussians (dense, sparse, bivariate), Student-t with identity dispersion,
uniform with additive uniform noise, equicorrelated Gaussian views, and any of these pushed
through MI-preserving maps (:class:`Transform`: continuous strictly monotone or otherwise
invertible maps applied to x and y separately leave ``I(x; y)`` unchanged).

Every task draws i.i.d. standard normals on the generator's device, in float32 at least (the
convention of :mod:`mibounds.gaussian`), and maps them deterministically; one seed gives the
same numbers whatever the target device. ``TASKS`` is the registry; :func:`register` adds to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from scipy.special import digamma
from torch import Tensor

from mibounds._checks import (
    add_once,
    check_at_least,
    check_correlation,
    check_float_dtype,
    check_positive,
)
from mibounds._numerics import standard_normal
from mibounds.gaussian import (
    equicorrelated_cov,
    gaussian_mi,
    mi_from_rho,
    one_vs_rest_mi,
    sample_views,
)

__all__ = [
    "ASINH",
    "HALF_CUBE",
    "NORMAL_CDF",
    "TASKS",
    "WIGGLY",
    "Task",
    "Transform",
    "additive_uniform",
    "additive_uniform_mi",
    "bivariate_normal",
    "multinormal_dense",
    "multinormal_sparse",
    "normal_views",
    "register",
    "spiral",
    "split_one_vs_rest",
    "student_identity",
    "student_identity_mi",
    "transformed",
]

Sample = tuple[Tensor, Tensor] | Tensor
Draw = Callable[[int, torch.Generator | None, torch.device | str | None, torch.dtype], Sample]


# --------------------------------------------------------------------------------- the types


@dataclass(frozen=True)
class Transform:
    """Maps applied to x and to y separately; invertible, so they leave ``I(x; y)`` unchanged.

    ``map_x, map_y: (..., d) -> (..., d)`` act on the last axis. On a view task ``map_x`` is
    applied to every view. MI is invariant under such maps because ``p(x', y') / p(x') p(y')``
    is ``p(x, y) / p(x) p(y)`` at the preimages: the Jacobians of the two sides cancel.
    """

    name: str
    map_x: Callable[[Tensor], Tensor] = field(repr=False)
    map_y: Callable[[Tensor], Tensor] = field(repr=False)
    description: str


@dataclass(frozen=True)
class Task:
    """A distribution with known MI, in nats, and a reproducible sampler for it.

    Attributes:
        name: the registry key, bmi's naming, e.g. ``"multinormal-dense-5-5-0.5"``.
        mi: exact MI in nats: ``I(x; y)`` for pairs, ``I(x_a; X_{\\a})`` for views.
        dim_x, dim_y: dimensions of the two sides of ``mi`` (views: ``d`` and ``(M - 1) d``).
        views: ``None`` for pair tasks, else the number of views M >= 2.
        family: ``"multinormal"``, ``"student"``, ``"additive"``, ``"views"``,
            ``"transformed"``.
        description: the distribution and its MI formula, in one line.
        mi_pairwise: views only: ``I(x_a; x_b)`` between any two views, nats.
        base, transform: transformed tasks only: the task and the maps applied to its samples.
    """

    name: str
    mi: float
    dim_x: int
    dim_y: int
    views: int | None
    family: str
    description: str
    draw: Draw = field(repr=False, compare=False)
    mi_pairwise: float | None = None
    base: Task | None = field(default=None, repr=False)
    transform: Transform | None = field(default=None, repr=False)

    def sample(
        self,
        n: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> Sample:
        """n i.i.d. draws from the task's distribution.

        Args:
            n: samples, >= 2 (the minimum of :mod:`mibounds.gaussian`'s samplers).
            generator: source of randomness; the same seed gives the same samples.
            device: where the samples go (default: the generator's device, else torch's).
            dtype: floating dtype of the samples (computed in float32 at least, then cast).
        Returns:
            pairs: ``x: (n, dim_x)``, ``y: (n, dim_y)``; views: ``(n, M, d)``.

        Example:
            >>> x, y = TASKS["multinormal-dense-2-2-0.5"].sample(
            ...     100, generator=torch.Generator().manual_seed(0))
            >>> x.shape, y.shape, x.dtype
            (torch.Size([100, 2]), torch.Size([100, 2]), torch.float64)
        """
        n = check_at_least(n, 2, "n")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise ValueError(
                f"generator must be a torch.Generator or None, got {type(generator).__name__}"
            )
        return self.draw(n, generator, device, check_float_dtype(dtype))


TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add ``task`` to :data:`TASKS` under ``task.name``; a name already there is an error.

    Example:
        >>> register(bivariate_normal(0.5)).name in TASKS
        True
        >>> del TASKS["1v1-normal-0.5"]
    """
    if not isinstance(task, Task):
        raise ValueError(f"task must be a Task, got {type(task).__name__}")
    return add_once(TASKS, task.name, task, "the tasks")


def _normals(n: int, width: int, generator, device, dtype: torch.dtype) -> Tensor:
    """``(n, width)`` i.i.d. N(0, 1) on the generator's device, in float32 at least."""
    return standard_normal((n, width), generator, device, dtype)


def _split(xy: Tensor, dim_x: int, device, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    xy = xy.to(device=device, dtype=dtype)
    return xy[:, :dim_x].contiguous(), xy[:, dim_x:].contiguous()


# ----------------------------------------------------------------------------- Gaussian pairs


def _multinormal(name: str, cov: Tensor, dim_x: int, description: str) -> Task:
    """``(x, y) ~ N(0, cov)``, x the first ``dim_x`` coordinates; MI by log-det."""
    dim = cov.shape[0]
    mi = gaussian_mi(cov, range(dim_x), range(dim_x, dim))
    chol = torch.linalg.cholesky(cov)

    def draw(n, generator, device, dtype):
        z = _normals(n, dim, generator, device, dtype)
        return _split(z @ chol.to(z).mT, dim_x, device, dtype)

    return Task(name, mi, dim_x, dim - dim_x, None, "multinormal", description, draw)


def multinormal_dense(dim_x: int, dim_y: int, off_diag: float = 0.5) -> Task:
    """bmi's dense Gaussian: unit variances and correlation ``off_diag`` between any two
    coordinates, within and across x and y.

    ``I(x; y) = (1/2) [log det S_xx + log det S_yy - log det S]``, ``S = (1 - c) I + c 1 1^T``
    (the Gaussian MI of :func:`mibounds.gaussian.gaussian_mi`).

    Args:
        dim_x, dim_y: >= 1. off_diag: the common correlation c, in ``[0, 1)``.

    Example:
        >>> round(multinormal_dense(2, 2).mi, 4)  # (1/2) log(0.75^2 / 0.3125)
        0.2939
    """
    dim_x = check_at_least(dim_x, 1, "dim_x")
    dim_y = check_at_least(dim_y, 1, "dim_y")
    cov = equicorrelated_cov(dim_x + dim_y, check_correlation(off_diag, allow_negative=False))
    return _multinormal(
        f"multinormal-dense-{dim_x}-{dim_y}-{off_diag}",
        cov,
        dim_x,
        f"N(0, S), S = {1 - off_diag:g} I + {off_diag:g} 1 1^T on {dim_x} + {dim_y} "
        "coordinates; MI by log-det",
    )


def multinormal_sparse(
    dim_x: int, dim_y: int, n_interacting: int = 2, strength: float = 2.0
) -> Task:
    """bmi's sparse Gaussian: only the first ``n_interacting`` pairs ``(x_i, y_i)`` correlate.

    The latent model ``x_i = lambda z_i + e_i``, ``y_i = lambda z_i + f_i`` (i < k) and
    ``x_i = e_i + lambda v_i``, ``y_i = f_i + lambda w_i`` (i >= k), all latents i.i.d.
    N(0, 1), scaled to unit variance: corr(x_i, y_i) ``r = lambda^2 / (1 + lambda^2)`` for
    i < k, every other correlation 0 (bmi's LVM with alpha = beta = 0, eta = lambda), so
    ``I(x; y) = -(k/2) log(1 - r^2)``.

    Args:
        dim_x, dim_y: >= n_interacting. n_interacting: k >= 1. strength: lambda > 0.

    Example:
        >>> round(multinormal_sparse(3, 3).mi, 4)  # r = 0.8, twice -log(0.36) / 2
        1.0217
    """
    k = check_at_least(n_interacting, 1, "n_interacting")
    dim_x = check_at_least(dim_x, k, "dim_x (at least n_interacting)")
    dim_y = check_at_least(dim_y, k, "dim_y (at least n_interacting)")
    lam2 = check_positive(strength, "strength") ** 2
    r = lam2 / (1.0 + lam2)
    cov = torch.eye(dim_x + dim_y, dtype=torch.float64)
    pairs = torch.arange(k)
    cov[pairs, dim_x + pairs] = r
    cov[dim_x + pairs, pairs] = r
    return _multinormal(
        f"multinormal-sparse-{dim_x}-{dim_y}-{k}-{strength}",
        cov,
        dim_x,
        f"N(0, S), unit variances, corr(x_i, y_i) = {r:g} for i < {k}, all else 0; "
        f"MI = -({k}/2) log(1 - {r:g}^2)",
    )


def bivariate_normal(rho: float) -> Task:
    """bmi's ``1v1-normal``: ``(x, y)`` standard normal with correlation ``rho``.

    ``I(x; y) = -(1/2) log(1 - rho^2)`` (:func:`mibounds.gaussian.mi_from_rho` with d = 1).

    Example:
        >>> round(bivariate_normal(0.75).mi, 4)
        0.4133
    """
    rho = check_correlation(rho)
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    return _multinormal(
        f"1v1-normal-{rho}", cov, 1, f"N(0, [[1, r], [r, 1]]), r = {rho:g}; MI = mi_from_rho"
    )


# ---------------------------------------------------------------------------------- Student-t


def student_identity_mi(dim_x: int, dim_y: int, df: int) -> float:
    """MI between the two blocks of a multivariate Student-t with identity dispersion, nats.

    With ``h_k = log G(nu/2) - log G((nu+k)/2) + (k/2) log(nu pi)
    + ((nu+k)/2) [psi((nu+k)/2) - psi(nu/2)]`` the entropy of the k-variate standard t,
    ``I(x; y) = h_{d_x} + h_{d_y} - h_{d_x + d_y}`` (Arellano-Valle, Contreras-Reyes and
    Genton 2013, Scand. J. Statist. 40(1), p. 47; a general dispersion adds the Gaussian MI of
    the dispersion matrix, zero for the identity). Positive although the blocks are
    uncorrelated: they share the scale ``sqrt(nu / chi^2_nu)``.

    Args:
        dim_x, dim_y: >= 1. df: degrees of freedom nu >= 1.

    Example:
        >>> round(student_identity_mi(1, 1, 1), 4)  # bivariate Cauchy: log(8 pi) - 3
        0.2242
    """
    dim_x = check_at_least(dim_x, 1, "dim_x")
    dim_y = check_at_least(dim_y, 1, "dim_y")
    nu = check_at_least(df, 1, "df")

    def h(k: int) -> float:  # entropy less (k/2) log(nu pi), which cancels in the MI
        a, b = nu / 2, (nu + k) / 2
        return math.lgamma(a) - math.lgamma(b) + b * (float(digamma(b)) - float(digamma(a)))

    return h(dim_x) + h(dim_y) - h(dim_x + dim_y)


def student_identity(dim_x: int, dim_y: int, df: int) -> Task:
    """bmi's ``student-identity``: ``(x, y) = g / sqrt(w / nu)``, ``g ~ N(0, I)``,
    ``w ~ chi^2_nu`` independent; MI by :func:`student_identity_mi`.

    ``w`` is drawn as a sum of nu squared normals, so ``df`` is an integer.

    Example:
        >>> student_identity(2, 2, 1).name
        'student-identity-2-2-1'
    """
    mi = student_identity_mi(dim_x, dim_y, df)
    dim = dim_x + dim_y

    def draw(n, generator, device, dtype):
        z = _normals(n, dim + df, generator, device, dtype)
        chi2 = z[:, dim:].square().sum(-1, keepdim=True)
        return _split(z[:, :dim] * (df / chi2).sqrt(), dim_x, device, dtype)

    return Task(
        f"student-identity-{dim_x}-{dim_y}-{df}",
        mi,
        dim_x,
        dim_y,
        None,
        "student",
        f"multivariate t, identity dispersion, nu = {df}, {dim_x} + {dim_y} coordinates; "
        "MI in closed form with digamma terms",
        draw,
    )


# ------------------------------------------------------------------------------ additive noise


def additive_uniform_mi(epsilon: float) -> float:
    """MI of ``x ~ U(0, 1)``, ``y = x + n``, ``n ~ U(-eps, eps)`` independent, in nats.

    ``I = h(y) - h(n)`` with ``h(n) = log(2 eps)`` and y's trapezoidal density:
    ``I = eps - log(2 eps)`` for ``eps <= 1/2``, ``I = 1 / (4 eps)`` for ``eps >= 1/2``
    (each linear ramp of y's density adds its width times 1/4 to ``h(y)``; Czyż et al. 2023).

    Example:
        >>> round(additive_uniform_mi(0.75), 4), round(additive_uniform_mi(0.1), 4)
        (0.3333, 1.7094)
    """
    eps = check_positive(epsilon, "epsilon")
    return eps - math.log(2.0 * eps) if eps <= 0.5 else 0.25 / eps


def additive_uniform(epsilon: float) -> Task:
    """bmi's ``1v1-additive``: ``x ~ U(0, 1)``, ``y = x + n``, ``n ~ U(-eps, eps)``.

    The uniforms are ``Phi(z)`` of standard normals z. MI by :func:`additive_uniform_mi`.

    Example:
        >>> x, y = additive_uniform(0.1).sample(5, generator=torch.Generator().manual_seed(0))
        >>> bool(((y - x).abs() < 0.1).all())
        True
    """
    mi = additive_uniform_mi(epsilon)

    def draw(n, generator, device, dtype):
        u = torch.special.ndtr(_normals(n, 2, generator, device, dtype))
        x = u[:, :1]
        y = x + epsilon * (2.0 * u[:, 1:] - 1.0)
        return _split(torch.cat([x, y], dim=1), 1, device, dtype)

    return Task(
        f"1v1-additive-{epsilon}",
        mi,
        1,
        1,
        None,
        "additive",
        f"x ~ U(0, 1), y = x + U(-{epsilon:g}, {epsilon:g}); MI in closed form",
        draw,
    )


# ------------------------------------------------------------------------------------- views


def normal_views(d: int, m: int, rho: float) -> Task:
    """M equicorrelated Gaussian views ``x_a = sqrt(rho) c + sqrt(1 - rho) eps_a``, ``(n, M, d)``.

    ``mi = I(x_a; X_{\\a}) = one_vs_rest_mi(rho, d, M)``, ``mi_pairwise = I(x_a; x_b) =
    mi_from_rho(rho, d)`` (:mod:`mibounds.gaussian`; Shidani et al. 2024, arXiv 2403.05490).

    Args:
        d: dimension of each view, >= 1. m: views M >= 2. rho: correlation in ``[0, 1)``.

    Example:
        >>> task = normal_views(1, 4, 0.9)
        >>> task.name, round(task.mi, 4), round(task.mi_pairwise, 4)
        ('views-normal-1-4-0.9', 1.0119, 0.8304)
    """
    mi = one_vs_rest_mi(rho, d, m)

    def draw(n, generator, device, dtype):
        return sample_views(n, m, d, rho, generator=generator, device=device, dtype=dtype)

    return Task(
        f"views-normal-{d}-{m}-{rho}",
        mi,
        d,
        (m - 1) * d,
        m,
        "views",
        f"{m} views x_a = sqrt(r) c + sqrt(1 - r) eps_a in {d} dims, r = {rho:g}; "
        "MI = one_vs_rest_mi",
        draw,
        mi_pairwise=mi_from_rho(rho, d),
    )


def split_one_vs_rest(views: Tensor, a: int = 0) -> tuple[Tensor, Tensor]:
    """One view against the others, flattened, for pairwise estimators of ``I(x_a; X_{\\a})``.

    Args:
        views: ``(n, M, d)``; a: the view, in ``[0, M)``.
    Returns:
        ``x_a: (n, d)`` and the other M - 1 views in order, ``(n, (M - 1) d)``.

    Example:
        >>> x, rest = split_one_vs_rest(torch.zeros(10, 4, 3), a=1)
        >>> x.shape, rest.shape
        (torch.Size([10, 3]), torch.Size([10, 9]))
    """
    if not isinstance(views, Tensor) or views.dim() != 3 or views.shape[1] < 2:
        shape = tuple(views.shape) if isinstance(views, Tensor) else type(views).__name__
        raise ValueError(f"views must be a tensor of shape (n, M, d) with M >= 2, got {shape}")
    m = views.shape[1]
    if not (isinstance(a, int) and not isinstance(a, bool) and 0 <= a < m):
        raise ValueError(f"a must be a view index in [0, {m}), got {a!r}")
    rest = torch.cat([views[:, :a], views[:, a + 1 :]], dim=1)
    return views[:, a], rest.flatten(1)


# -------------------------------------------------------------------------------- transforms


def _elementwise(name: str, f: Callable[[Tensor], Tensor], description: str) -> Transform:
    return Transform(name, f, f, description)


HALF_CUBE = _elementwise(
    "half_cube",
    lambda t: t * t.abs().sqrt(),
    "t -> t |t|^(1/2) per coordinate: continuous, strictly increasing, heavier tails",
)
ASINH = _elementwise(
    "asinh", torch.asinh, "t -> asinh t per coordinate: strictly increasing, lighter tails"
)
NORMAL_CDF = _elementwise(
    "normal_cdf",
    torch.special.ndtr,
    "t -> Phi(t) per coordinate: strictly increasing onto (0, 1), uniform margins from normal",
)


def _wiggly_x(t: Tensor) -> Tensor:
    # bmi's coefficients; slope >= 1 - 0.4 - 0.34 - 0.099 > 0, so strictly increasing
    return t + 0.4 * torch.sin(t) + 0.2 * torch.sin(1.7 * t + 1) + 0.03 * torch.sin(3.3 * t - 2.5)


def _wiggly_y(t: Tensor) -> Tensor:
    # slope >= 1 - 0.16 - 0.221 - 0.086 > 0
    return (
        t - 0.4 * torch.sin(0.4 * t) + 0.17 * torch.sin(1.3 * t + 3.5)
        + 0.02 * torch.sin(4.3 * t - 2.5)
    )  # fmt: skip


WIGGLY = Transform(
    "wiggly",
    _wiggly_x,
    _wiggly_y,
    "t -> t + sum of small sines per coordinate (different for x and y): strictly increasing",
)


def _rotate_by_norm(plane: tuple[int, int], speed: float) -> Callable[[Tensor], Tensor]:
    i, j = plane

    def rotate(t: Tensor) -> Tensor:
        # rotation by angle speed |t|^2 in the (i, j) plane, exp(angle A) with A = e_j e_i^T
        # - e_i e_j^T; |t| is unchanged, so rotating back by the same angle inverts it
        angle = speed * t.square().sum(-1)
        cos, sin = angle.cos(), angle.sin()
        out = t.clone()
        out[..., i] = cos * t[..., i] - sin * t[..., j]
        out[..., j] = sin * t[..., i] + cos * t[..., j]
        return out

    return rotate


def spiral(dim_x: int, dim_y: int, speed: float = 1.0) -> Transform:
    """bmi's spiral: ``t -> R(speed / dim * |t|^2) t``, R a rotation in one coordinate plane.

    x turns in the plane of coordinates (0, 1), y in (1, 2) (so dim_x >= 2, dim_y >= 3), each
    by an angle growing with its squared norm; norm-preserving, inverted by turning back.

    Example:
        >>> f = spiral(2, 3).map_x
        >>> t = torch.tensor([[1.0, 0.0]])  # |t|^2 = 1: a turn by 1/2 radian
        >>> torch.allclose(f(t), torch.tensor([[math.cos(0.5), math.sin(0.5)]]))
        True
    """
    dim_x = check_at_least(dim_x, 2, "dim_x (spiral turns coordinates 0 and 1 of x)")
    dim_y = check_at_least(dim_y, 3, "dim_y (spiral turns coordinates 1 and 2 of y)")
    speed = check_positive(speed, "speed")
    return Transform(
        "spiral",
        _rotate_by_norm((0, 1), speed / dim_x),
        _rotate_by_norm((1, 2), speed / dim_y),
        f"rotation by {speed:g} |t|^2 / dim in one coordinate plane: norm-preserving, invertible",
    )


def transformed(base: Task, transform: Transform) -> Task:
    """``base`` with its samples pushed through ``transform``: the same MI, named
    ``"{transform.name}-{base.name}"`` (views: ``transform.map_x`` on every view).

    Example:
        >>> task = transformed(TASKS["multinormal-sparse-5-5-2-2.0"], HALF_CUBE)
        >>> task.name, task.mi == TASKS["multinormal-sparse-5-5-2-2.0"].mi
        ('half_cube-multinormal-sparse-5-5-2-2.0', True)
    """
    if not isinstance(base, Task) or not isinstance(transform, Transform):
        raise ValueError(
            f"base must be a Task and transform a Transform, got {type(base).__name__} and "
            f"{type(transform).__name__}"
        )

    def draw(n, generator, device, dtype):
        work = torch.promote_types(dtype, torch.float32)
        out = base.sample(n, generator=generator, device=device, dtype=work)
        if base.views is not None:
            return transform.map_x(out).to(dtype)
        x, y = out
        return transform.map_x(x).to(dtype), transform.map_y(y).to(dtype)

    return Task(
        f"{transform.name}-{base.name}",
        base.mi,
        base.dim_x,
        base.dim_y,
        base.views,
        "transformed",
        f"{transform.description}; applied to {base.name}, MI unchanged",
        draw,
        mi_pairwise=base.mi_pairwise,
        base=base,
        transform=transform,
    )


# -------------------------------------------------------------------------------- the suite


def _suite() -> list[Task]:
    sparse_3, sparse_5 = multinormal_sparse(3, 3), multinormal_sparse(5, 5)
    student_1, student_5 = student_identity(1, 1, 1), student_identity(5, 5, 2)
    views_1 = normal_views(1, 4, 0.9)
    return [
        bivariate_normal(0.75),
        *(multinormal_dense(d, d) for d in (2, 5, 25, 50)),
        sparse_3,
        sparse_5,
        student_1,
        student_identity(2, 2, 1),
        student_5,
        student_identity(5, 5, 3),
        additive_uniform(0.1),
        additive_uniform(0.75),
        transformed(sparse_5, HALF_CUBE),
        transformed(student_1, ASINH),
        transformed(student_5, ASINH),
        transformed(sparse_3, NORMAL_CDF),
        transformed(sparse_3, spiral(3, 3)),
        transformed(sparse_3, WIGGLY),
        views_1,
        normal_views(5, 3, 0.5),
        transformed(views_1, HALF_CUBE),
    ]


for _task in _suite():
    register(_task)
