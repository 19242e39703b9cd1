"""Tests of mibounds.tasks: every task's MI against a computation that does not use the task's
formula (log-dets of covariances assembled here in numpy, numerical integration, a Monte-Carlo
average of the log density ratio under scipy's densities), every sampler against its
distribution, the transforms' invertibility and composition, the registry, seeds, dtypes,
devices and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import scipy.linalg
import scipy.special
import scipy.stats
import torch

from mibounds.tasks import (
    ASINH,
    HALF_CUBE,
    NORMAL_CDF,
    TASKS,
    WIGGLY,
    Task,
    additive_uniform,
    additive_uniform_mi,
    bivariate_normal,
    multinormal_dense,
    multinormal_sparse,
    normal_views,
    register,
    spiral,
    split_one_vs_rest,
    student_identity,
    student_identity_mi,
    transformed,
)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def logdet_mi(cov: np.ndarray, dim_x: int) -> float:
    """Gaussian MI of the first dim_x coordinates against the rest, by numpy's slogdet."""

    def logdet(c: np.ndarray) -> float:
        sign, value = np.linalg.slogdet(c)
        assert sign > 0
        return value

    return 0.5 * (logdet(cov[:dim_x, :dim_x]) + logdet(cov[dim_x:, dim_x:]) - logdet(cov))


def as_tuple(out) -> tuple[torch.Tensor, ...]:
    """A pair task's (x, y), or a view task's (views,)."""
    return out if isinstance(out, tuple) else (out,)


def joint(sample) -> np.ndarray:
    x, y = sample
    return torch.cat([x, y], dim=1).numpy()


PAIR_TASKS = [name for name, task in TASKS.items() if task.views is None]
VIEW_TASKS = [name for name, task in TASKS.items() if task.views is not None]
TRANSFORMED_TASKS = [name for name, task in TASKS.items() if task.family == "transformed"]


# -------------------------------------------------------------------------------- registry

REQUIRED = [
    *(f"multinormal-dense-{d}-{d}-0.5" for d in (2, 5, 25, 50)),
    "multinormal-sparse-3-3-2-2.0",
    "multinormal-sparse-5-5-2-2.0",
    *(f"student-identity-{s}" for s in ("1-1-1", "2-2-1", "5-5-2", "5-5-3")),
    "half_cube-multinormal-sparse-5-5-2-2.0",
    "asinh-student-identity-5-5-2",
    "normal_cdf-multinormal-sparse-3-3-2-2.0",
    "spiral-multinormal-sparse-3-3-2-2.0",
    "wiggly-multinormal-sparse-3-3-2-2.0",
    "1v1-additive-0.1",
    "1v1-additive-0.75",
    "views-normal-1-4-0.9",
    "half_cube-views-normal-1-4-0.9",
]


def test_the_suite_has_the_required_tasks_under_their_own_names() -> None:
    assert len(TASKS) >= 18
    assert set(REQUIRED) <= set(TASKS)
    assert all(task.name == name for name, task in TASKS.items())
    families = {task.family for task in TASKS.values()}
    assert families == {"multinormal", "student", "additive", "views", "transformed"}


def test_register_refuses_a_taken_name_and_non_tasks() -> None:
    with pytest.raises(ValueError, match="already in the tasks"):
        register(multinormal_dense(2, 2))
    with pytest.raises(ValueError, match="must be a Task"):
        register("multinormal-dense-2-2-0.5")
    task = register(bivariate_normal(0.3))
    try:
        assert TASKS["1v1-normal-0.3"] is task
    finally:
        del TASKS["1v1-normal-0.3"]


@pytest.mark.parametrize("name", list(TASKS))
def test_every_task_has_positive_finite_mi_and_consistent_fields(name: str) -> None:
    task = TASKS[name]
    assert math.isfinite(task.mi) and task.mi > 0
    assert task.description
    if task.views is None:
        assert task.mi_pairwise is None
    else:
        assert task.views >= 2 and task.dim_y == (task.views - 1) * task.dim_x
        # data processing: x_b is a part of X_{\a}
        assert 0 < task.mi_pairwise <= task.mi


# ------------------------------------------------------------------------- sampler contract


@pytest.mark.parametrize("name", list(TASKS))
def test_samples_have_the_stated_shapes_dtypes_and_seeds(name: str) -> None:
    task = TASKS[name]
    a = task.sample(64, generator=seeded(3))
    b = task.sample(64, generator=seeded(3))
    c = task.sample(64, generator=seeded(4))
    single = task.sample(64, generator=seeded(3), dtype=torch.float32)
    if task.views is None:
        x, y = a
        assert x.shape == (64, task.dim_x) and y.shape == (64, task.dim_y)
        assert x.dtype == y.dtype == torch.float64
        assert x.is_contiguous() and y.is_contiguous()
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
        assert not torch.equal(a[0], c[0])
        assert single[0].dtype == single[1].dtype == torch.float32
        tensors = [x, y]
    else:
        assert a.shape == (64, task.views, task.dim_x) and a.dtype == torch.float64
        assert torch.equal(a, b) and not torch.equal(a, c)
        assert single.dtype == torch.float32
        tensors = [a]
    assert all(bool(torch.isfinite(t).all()) for t in tensors)


@pytest.mark.parametrize("name", list(TASKS))
def test_samples_go_to_the_requested_device(name: str) -> None:
    """Drawn on the generator's device, then moved: the meta device stands in for an
    accelerator on a CPU-only machine."""
    out = TASKS[name].sample(8, generator=seeded(0), device="meta", dtype=torch.float32)
    for t in as_tuple(out):
        assert t.device.type == "meta" and t.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", list(TASKS))
def test_a_cpu_seed_gives_the_same_sample_on_cuda(name: str) -> None:
    """The draws happen on the generator's device, so only maps applied after the move (the
    transforms) may differ, by rounding: 1e-12 relative is far above float64's."""
    on_cpu = TASKS[name].sample(256, generator=seeded(5))
    on_gpu = TASKS[name].sample(256, generator=seeded(5), device="cuda")
    for u, v in zip(as_tuple(on_cpu), as_tuple(on_gpu), strict=True):
        assert v.device.type == "cuda"
        torch.testing.assert_close(v.cpu(), u, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [1, 0, 2.0, True, "8"])
def test_sample_rejects_bad_n(n) -> None:
    with pytest.raises(ValueError, match="n must be an integer >= 2"):
        TASKS["1v1-additive-0.1"].sample(n)


def test_sample_rejects_bad_generator_and_dtype() -> None:
    task = TASKS["multinormal-dense-2-2-0.5"]
    with pytest.raises(ValueError, match=r"generator must be a torch\.Generator"):
        task.sample(8, generator=0)
    with pytest.raises(ValueError, match="dtype must be a floating-point"):
        task.sample(8, dtype=torch.int64)


def test_constructors_reject_bad_parameters() -> None:
    with pytest.raises(ValueError, match="rho must lie in"):
        multinormal_dense(2, 2, off_diag=1.0)
    with pytest.raises(ValueError, match="dim_x"):
        multinormal_sparse(1, 3, n_interacting=2)
    with pytest.raises(ValueError, match="strength"):
        multinormal_sparse(3, 3, strength=-1.0)
    with pytest.raises(ValueError, match="df must be an integer >= 1"):
        student_identity(2, 2, 2.5)
    with pytest.raises(ValueError, match="epsilon"):
        additive_uniform(0.0)
    with pytest.raises(ValueError, match="m must be an integer >= 2"):
        normal_views(1, 1, 0.5)
    with pytest.raises(ValueError, match="dim_y"):
        spiral(2, 2)
    with pytest.raises(ValueError, match="base must be a Task"):
        transformed("multinormal-dense-2-2-0.5", HALF_CUBE)


# -------------------------------------------------------------------------------- Gaussians


def lvm_correlation(dim_x: int, dim_y: int, k: int, lam: float) -> np.ndarray:
    """bmi's sparse latent model assembled from its mixing matrix: x_i = lam z_i + e_i,
    y_i = lam z_i + f_i for i < k, x_i = e_i + lam v_i, y_i = f_i + lam w_i otherwise, latents
    i.i.d. N(0, 1); covariance A A^T, scaled to a correlation matrix."""
    rows = []
    n_latent = k + dim_x + dim_y + (dim_x - k) + (dim_y - k)
    for side, dim in (("x", dim_x), ("y", dim_y)):
        for i in range(dim):
            a = np.zeros(n_latent)
            if i < k:
                a[i] = lam  # the shared z_i
            own = k + i if side == "x" else k + dim_x + i  # e_i or f_i
            a[own] = 1.0
            if i >= k:  # v_i or w_i
                a[k + dim_x + dim_y + (i - k if side == "x" else dim_x - k + i - k)] = lam
            rows.append(a)
    mixing = np.array(rows)
    cov = mixing @ mixing.T
    scale = 1.0 / np.sqrt(np.diag(cov))
    return cov * np.outer(scale, scale)


def expected_cov(task: Task) -> np.ndarray:
    if task.name.startswith("multinormal-dense"):
        dim = task.dim_x + task.dim_y
        return 0.5 * np.eye(dim) + 0.5 * np.ones((dim, dim))
    if task.name.startswith("multinormal-sparse"):
        return lvm_correlation(task.dim_x, task.dim_y, 2, 2.0)
    assert task.name == "1v1-normal-0.75"
    return np.array([[1.0, 0.75], [0.75, 1.0]])


GAUSSIAN_TASKS = [name for name in PAIR_TASKS if TASKS[name].family == "multinormal"]


@pytest.mark.parametrize("name", GAUSSIAN_TASKS)
def test_gaussian_mi_equals_the_log_det_of_an_independently_assembled_covariance(
    name: str,
) -> None:
    task = TASKS[name]
    assert task.mi == pytest.approx(logdet_mi(expected_cov(task), task.dim_x), abs=1e-10)


def test_sparse_mi_is_the_closed_form_of_its_canonical_correlations() -> None:
    """Two pairs with corr lam^2 / (1 + lam^2) = 0.8 and nothing else: -log(1 - 0.64)."""
    for dims in ((3, 3), (5, 5), (2, 7)):
        assert multinormal_sparse(*dims).mi == pytest.approx(-math.log(0.36), abs=1e-12)


@pytest.mark.parametrize("name", GAUSSIAN_TASKS)
def test_gaussian_sample_covariance_matches_the_assembled_covariance(name: str) -> None:
    """N = 20000: an entry of the sample covariance has standard error sqrt((1 + r^2) / N)
    <= 0.01; 0.06 is six of them, enough for the max over the 100 x 100 entries of the
    largest task (a normal's |z| > 6 has probability 2e-9 per entry)."""
    task = TASKS[name]
    sample = joint(task.sample(20_000, generator=seeded(11)))
    np.testing.assert_allclose(np.cov(sample, rowvar=False), expected_cov(task), atol=0.06)
    assert np.abs(sample.mean(0)).max() < 0.06


# -------------------------------------------------------------------------------- Student-t


@pytest.mark.parametrize("name", [n for n in PAIR_TASKS if n.startswith("student-identity")])
def test_student_mi_matches_a_monte_carlo_of_the_log_density_ratio(name: str) -> None:
    """E[log p(x, y) - log p(x) - log p(y)] over the task's own samples, with scipy's
    multivariate t densities: N = 20000 draws, and the closed form must lie within 4
    standard errors of the mean (fails by chance with probability 6e-5; the seed is fixed).
    This checks the formula and the sampler together: a wrong law of (x, y) moves the mean."""
    task = TASKS[name]
    df = int(name.rsplit("-", 1)[1])
    x, y = (t.numpy() for t in task.sample(20_000, generator=seeded(12)))

    def logpdf(z: np.ndarray) -> np.ndarray:
        dim = z.shape[1]
        return scipy.stats.multivariate_t(np.zeros(dim), np.eye(dim), df=df).logpdf(z)

    ratio = logpdf(np.hstack([x, y])) - logpdf(x) - logpdf(y)
    standard_error = ratio.std() / math.sqrt(ratio.size)
    assert abs(ratio.mean() - task.mi) < 4 * standard_error


@pytest.mark.parametrize("name", [n for n in PAIR_TASKS if n.startswith("student-identity")])
def test_student_margins_are_t_distributed(name: str) -> None:
    """Every coordinate of a multivariate t with identity dispersion is a univariate t with
    the same nu. KS test on 4000 draws per coordinate at level 1e-4 (a correct sampler fails a
    given coordinate with probability 1e-4; the seed is fixed)."""
    df = int(name.rsplit("-", 1)[1])
    for t in TASKS[name].sample(4000, generator=seeded(13)):
        for column in t.numpy().T:
            assert scipy.stats.kstest(column, scipy.stats.t(df).cdf).pvalue > 1e-4


def test_student_mi_special_values() -> None:
    """For d_x = d_y = nu = 1 (the bivariate Cauchy) the gamma and digamma terms reduce by
    hand to log(8 pi) - 3; as nu -> inf the law tends to N(0, I), with MI 0; more dimensions
    on one side share more of the scale, so more MI."""
    assert student_identity_mi(1, 1, 1) == pytest.approx(math.log(8 * math.pi) - 3, abs=1e-12)
    assert student_identity_mi(2, 2, 10**6) < 1e-5
    assert (
        student_identity_mi(1, 1, 2) < student_identity_mi(1, 3, 2) < student_identity_mi(1, 9, 2)
    )


# --------------------------------------------------------------------------- additive noise


@pytest.mark.parametrize("epsilon", [0.05, 0.1, 0.3, 0.5, 0.75, 1.0, 2.5])
def test_additive_mi_matches_numerical_integration(epsilon: float) -> None:
    """I = h(y) - h(n), h(n) = log(2 eps) and h(y) = -int p log p with p(y) the length of
    (0, 1) cut by (y - eps, y + eps), over 2 eps: the convolution written out, integrated by
    quad with the kinks as break points (error below 1e-10)."""

    def density(y: float) -> float:
        return max(0.0, min(1.0, y + epsilon) - max(0.0, y - epsilon)) / (2 * epsilon)

    def integrand(y: float) -> float:
        p = density(y)
        return -p * math.log(p) if p > 0 else 0.0

    kinks = sorted({-epsilon, epsilon, 1 - epsilon, 1 + epsilon})
    h_y, error = scipy.integrate.quad(integrand, kinks[0], kinks[-1], points=kinks[1:-1])
    assert error < 1e-10
    assert additive_uniform_mi(epsilon) == pytest.approx(h_y - math.log(2 * epsilon), abs=1e-9)


@pytest.mark.parametrize("epsilon", [0.1, 0.75])
def test_additive_sample_is_uniform_plus_independent_uniform_noise(epsilon: float) -> None:
    """KS tests at level 1e-4 on 5000 draws (x against U(0, 1), y - x against U(-eps, eps));
    independence: the rank correlation of x and y - x has standard error 1/sqrt(5000) = 0.014,
    and 0.06 is four of them."""
    x, y = (
        t.numpy()[:, 0] for t in TASKS[f"1v1-additive-{epsilon}"].sample(5000, generator=seeded(14))
    )
    noise = y - x
    assert ((x > 0) & (x < 1)).all() and (np.abs(noise) < epsilon).all()
    assert scipy.stats.kstest(x, "uniform").pvalue > 1e-4
    assert scipy.stats.kstest(noise, scipy.stats.uniform(-epsilon, 2 * epsilon).cdf).pvalue > 1e-4
    assert abs(scipy.stats.spearmanr(x, noise).statistic) < 0.06


# ------------------------------------------------------------------------------------- views


def views_cov(m: int, rho: float, d: int) -> np.ndarray:
    """All M d coordinates, view-major: rho between views, per coordinate; 0 across."""
    return np.kron((1 - rho) * np.eye(m) + rho * np.ones((m, m)), np.eye(d))


@pytest.mark.parametrize("name", [n for n in VIEW_TASKS if TASKS[n].family == "views"])
def test_view_mis_equal_log_dets_of_the_equicorrelated_covariance(name: str) -> None:
    task = TASKS[name]
    d, m, rho = int(name.split("-")[2]), task.views, float(name.split("-")[4])
    cov = views_cov(m, rho, d)
    assert task.mi == pytest.approx(logdet_mi(cov, d), abs=1e-10)
    assert task.mi_pairwise == pytest.approx(logdet_mi(cov[: 2 * d, : 2 * d], d), abs=1e-10)
    # the sample: N = 20000, standard error of an entry <= 0.01, tolerance 5 of them
    z = task.sample(20_000, generator=seeded(15)).flatten(1).numpy()
    np.testing.assert_allclose(np.cov(z, rowvar=False), cov, atol=0.05)


def test_split_one_vs_rest_takes_the_view_out_and_keeps_the_others_in_order() -> None:
    views = torch.arange(2 * 4 * 3, dtype=torch.float64).reshape(2, 4, 3)
    x, rest = split_one_vs_rest(views, a=2)
    assert torch.equal(x, views[:, 2])
    assert torch.equal(rest, views[:, [0, 1, 3]].reshape(2, 9))
    with pytest.raises(ValueError, match="a must be a view index"):
        split_one_vs_rest(views, a=4)
    with pytest.raises(ValueError, match=r"views must be a tensor of shape \(n, M, d\)"):
        split_one_vs_rest(views[:, 0])


# -------------------------------------------------------------------------------- transforms


def grid(low: float, high: float, step: float = 1e-3) -> torch.Tensor:
    return torch.arange(low, high, step, dtype=torch.float64)


def inverse_by_bisection(f, target: torch.Tensor, low: float = -60, high: float = 60):
    """The preimage under an increasing f, to float64 resolution (no closed form is used)."""
    lo, hi = torch.full_like(target, low), torch.full_like(target, high)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        below = f(mid) < target
        lo, hi = torch.where(below, mid, lo), torch.where(below, hi, mid)
    return 0.5 * (lo + hi)


ELEMENTWISE = {
    "half_cube": (HALF_CUBE.map_x, -20.0, 20.0),
    "asinh": (ASINH.map_x, -20.0, 20.0),
    "normal_cdf": (NORMAL_CDF.map_x, -6.0, 6.0),  # Phi rounds to 1 beyond ~8 in float64
    "wiggly_x": (WIGGLY.map_x, -40.0, 40.0),
    "wiggly_y": (WIGGLY.map_y, -40.0, 40.0),
}


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_elementwise_maps_are_strictly_increasing_bijections(name: str) -> None:
    """Strictly increasing and continuous, hence invertible on its image, so MI-preserving:
    values increase along a 1e-3 grid, the slope (autograd) is positive off the origin, and
    bisection finds every preimage back to 1e-9."""
    f, low, high = ELEMENTWISE[name]
    t = grid(low, high).requires_grad_()
    values = f(t)
    (slope,) = torch.autograd.grad(values.sum(), t)
    t, values = t.detach(), values.detach()
    assert bool((values.diff() > 0).all())
    assert bool((slope[t.abs() > 1e-3] > 0).all())
    probe = torch.linspace(low + 1, high - 1, 101, dtype=torch.float64)
    torch.testing.assert_close(inverse_by_bisection(f, f(probe)), probe, rtol=0, atol=1e-9)


def test_elementwise_maps_are_the_named_functions() -> None:
    t = torch.linspace(-5, 5, 41, dtype=torch.float64)
    torch.testing.assert_close(HALF_CUBE.map_x(t), torch.sign(t) * t.abs() ** 1.5)
    torch.testing.assert_close(ASINH.map_x(t), torch.log(t + torch.sqrt(t * t + 1)))
    expected = torch.from_numpy(scipy.stats.norm.cdf(t.numpy()))
    torch.testing.assert_close(NORMAL_CDF.map_x(t), expected)


def test_spiral_is_bmi_rotation_by_the_squared_norm_and_inverts() -> None:
    """x -> expm(speed |x|^2 A) x with A the (i, j) generator of so(n) (A[i, j] = -1,
    A[j, i] = 1), built here with scipy's matrix exponential, speed 1 / dim; it preserves the
    norm, so rotating the output back by the same angle recovers the input."""
    transform = spiral(3, 4)
    g = np.random.default_rng(16)
    for f, dim, (i, j) in ((transform.map_x, 3, (0, 1)), (transform.map_y, 4, (1, 2))):
        a = np.zeros((dim, dim))
        a[i, j], a[j, i] = -1.0, 1.0
        points = g.standard_normal((20, dim)) * 1.5
        out = f(torch.from_numpy(points)).numpy()
        for p, q in zip(points, out, strict=True):
            rotation = scipy.linalg.expm(a * (p @ p) / dim)
            np.testing.assert_allclose(q, rotation @ p, atol=1e-12)
            np.testing.assert_allclose(scipy.linalg.expm(-a * (q @ q) / dim) @ q, p, atol=1e-12)


@pytest.mark.parametrize("name", TRANSFORMED_TASKS)
def test_a_transformed_task_is_its_base_sample_mapped(name: str) -> None:
    """The same seed gives the base task's sample pushed through the maps, x and y each
    through its own: so the law is the image of the base law, and the MI the base's."""
    task = TASKS[name]
    base, transform = task.base, task.transform
    assert name == f"{transform.name}-{base.name}"
    assert (task.mi, task.dim_x, task.dim_y, task.views) == (
        base.mi,
        base.dim_x,
        base.dim_y,
        base.views,
    )
    assert task.mi_pairwise == base.mi_pairwise
    out = task.sample(500, generator=seeded(17))
    ref = base.sample(500, generator=seeded(17))
    if task.views is None:
        torch.testing.assert_close(out[0], transform.map_x(ref[0]), rtol=0, atol=0)
        torch.testing.assert_close(out[1], transform.map_y(ref[1]), rtol=0, atol=0)
        assert not torch.equal(out[0], ref[0])
    else:
        torch.testing.assert_close(out, transform.map_x(ref), rtol=0, atol=0)
