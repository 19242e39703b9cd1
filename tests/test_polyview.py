"""Tests of mibounds.polyview: loop references, the identities at M = 2, the inequalities of
Shidani et al. 2024 as properties, statistical checks with analytic critics on M-view Gaussians,
the training loss (NT-Xent at M = 2, cross-process gathering), half precision and bad input."""

from __future__ import annotations

import functools
import math

import numpy as np
import polyview_reference as ref
import pytest
import torch
import torch.nn.functional as nnf
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mibounds import polyview as P
from mibounds.bounds import MINE, eqco, infonce, nwj, tuba
from mibounds.catalogue import entry, pairwise_names
from mibounds.critics import CRITICS
from mibounds.gaussian import (
    mi_from_rho,
    multiview_log_ratio,
    one_vs_rest_log_ratio,
    one_vs_rest_mi,
    sample_views,
)
from mibounds.polyview_loss import PolyViewLoss, polyview_loss

SIZES = [(2, 2), (3, 4), (5, 3), (4, 6)]  # (K, M)
TIGHT = {"rel": 1e-10, "abs": 1e-10}  # float64 against a float64 loop reference


def random_scores(shape: tuple[int, ...], seed: int, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(shape, generator=g, dtype=torch.float64)


def random_views(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    """Embeddings whose views of one sample are correlated, so positives score higher."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(*shape[:-2], 1, shape[-1], generator=g, dtype=torch.float64)
    return common + 0.7 * torch.randn(shape, generator=g, dtype=torch.float64)


def bilinear_critic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A non-symmetric pair critic (..., K, D) x (..., K, D) -> (..., K, K) for the tests."""
    w = torch.linspace(0.5, 1.5, x.shape[-1], dtype=x.dtype)
    return (x * w) @ y.transpose(-1, -2) - 0.1 * (y**2).sum(-1).unsqueeze(-2)


# name -> (fast estimator of S, loop reference of S)
S_ESTIMATORS = {
    "multicrop": (P.multicrop, ref.multicrop),
    "multicrop_nwj": (
        functools.partial(P.multicrop, bound=nwj),
        functools.partial(ref.multicrop, bound=nwj),
    ),
    "multicrop_tuba": (
        functools.partial(P.multicrop, bound=functools.partial(tuba, log_baseline=0.5)),
        functools.partial(ref.multicrop, bound=functools.partial(tuba, log_baseline=0.5)),
    ),
    "arithmetic": (P.arithmetic, ref.arithmetic),
    "geometric": (P.geometric, ref.geometric),
    **{
        f"{name}_all_views": (
            functools.partial(getattr(P, name), negatives="all_views"),
            functools.partial(
                ref.contrastive_estimate,
                aggregate="geometric" if name == "multicrop" else name,
                negatives="view_pairs" if name == "multicrop" else "all_views",
            ),
        )
        for name in ("multicrop", "arithmetic", "geometric")
    },
    **{
        f"contrastive_printed_{neg}": (
            functools.partial(
                P.contrastive_estimate, aggregate="arithmetic_printed", negatives=neg
            ),
            functools.partial(
                ref.contrastive_estimate, aggregate="arithmetic_printed", negatives=neg
            ),
        )
        for neg in P.NEGATIVES
    },
    "one_vs_rest_set_arithmetic": (
        lambda S: P.one_vs_rest(P.set_scores(S, "arithmetic")),
        lambda S: ref.one_vs_rest(ref.set_scores(S, "arithmetic")),
    ),
    "one_vs_rest_set_geometric_nwj": (
        lambda S: P.one_vs_rest(P.set_scores(S, "geometric"), bound=nwj),
        lambda S: ref.one_vs_rest(ref.set_scores(S, "geometric"), bound=nwj),
    ),
}

# name -> (fast function of z, loop reference of z)
Z_FUNCTIONS = {
    "sufficient_statistics": (P.sufficient_statistics, ref.sufficient_statistics),
    "sufficient_statistics_normalized_nwj": (
        functools.partial(P.sufficient_statistics, normalize=True, bound=nwj),
        functools.partial(ref.sufficient_statistics, normalize=True, bound=nwj),
    ),
    "sufficient_statistics_bilinear": (
        functools.partial(P.sufficient_statistics, critic=bilinear_critic),
        functools.partial(ref.sufficient_statistics, critic=bilinear_critic),
    ),
    **{
        f"loss_{neg}_{agg}": (
            functools.partial(polyview_loss, temperature=0.3, aggregate=agg, negatives=neg),
            functools.partial(ref.polyview_loss, temperature=0.3, aggregate=agg, negatives=neg),
        )
        for neg in P.NEGATIVES
        for agg in P.LOSS_AGGREGATES
    },
}


# ---------------------------------------------------------------- agreement with loop references


@pytest.mark.parametrize("name", sorted(S_ESTIMATORS))
@pytest.mark.parametrize(("k", "m"), SIZES)
def test_estimators_match_loop_reference_value_and_gradient(name: str, k: int, m: int) -> None:
    fast, slow = S_ESTIMATORS[name]
    S = random_scores((k, m, k, m), seed=10 * k + m).requires_grad_()
    value = fast(S)
    (grad,) = torch.autograd.grad(value, S)
    expected = slow(S)
    (expected_grad,) = torch.autograd.grad(expected, S)
    assert value.dtype == torch.float64
    assert value.item() == pytest.approx(expected.item(), **TIGHT)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", sorted(S_ESTIMATORS))
def test_estimators_on_a_stack_match_each_slice(name: str) -> None:
    fast, _ = S_ESTIMATORS[name]
    stack = random_scores((2, 3, 4, 3, 4, 3), seed=1)
    out = fast(stack)
    assert out.shape == (2, 3)
    for idx in np.ndindex(2, 3):
        assert out[idx].item() == pytest.approx(fast(stack[idx]).item(), **TIGHT)


@pytest.mark.parametrize(
    "bound",
    [*(entry(n).estimator() for n in pairwise_names()), functools.partial(eqco, alpha=2.0)],
    ids=[*pairwise_names(), "eqco"],
)
def test_every_pairwise_estimator_plugs_into_multicrop_and_one_vs_rest(bound) -> None:
    S = random_scores((4, 3, 4, 3), seed=21)
    F = random_scores((3, 4, 4), seed=22)
    assert P.multicrop(S, bound).item() == pytest.approx(ref.multicrop(S, bound).item(), **TIGHT)
    assert P.one_vs_rest(F, bound).item() == pytest.approx(
        ref.one_vs_rest(F, bound).item(), **TIGHT
    )


def test_stateful_mine_plugs_in_with_the_stack_shape() -> None:
    S = random_scores((2, 4, 3, 4, 3), seed=23)
    """MINE's moving average has one entry per stacked pair: batch_shape (..., M - 1, M); its
    value is DV's."""
    value = P.multicrop(S, MINE(batch_shape=(2, 2, 3)).double())
    assert value.shape == (2,)
    torch.testing.assert_close(
        value, P.multicrop(S, entry("dv").estimator()), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("aggregate", P.AGGREGATES)
@pytest.mark.parametrize(("k", "m"), SIZES)
def test_set_scores_match_loop_reference(aggregate: str, k: int, m: int) -> None:
    S = random_scores((k, m, k, m), seed=k + m)
    F = P.set_scores(S, aggregate)
    assert F.shape == (m, k, k)
    torch.testing.assert_close(F, ref.set_scores(S, aggregate), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("bound", [infonce, nwj], ids=["infonce", "nwj"])
def test_one_vs_rest_matches_loop_reference_and_is_mean_of_pairwise(bound) -> None:
    F = random_scores((2, 5, 4, 4), seed=3)
    out = P.one_vs_rest(F, bound)
    assert out.shape == (2,)
    for r in range(2):
        assert out[r].item() == pytest.approx(ref.one_vs_rest(F[r], bound).item(), **TIGHT)
    # the generalized NWJ of the paper's Thm 2.1 is NWJ on each view's set critic, averaged
    assert out.mean().item() == pytest.approx(bound(F).mean().item(), **TIGHT)


@pytest.mark.parametrize("name", sorted(Z_FUNCTIONS))
@pytest.mark.parametrize(("k", "m"), SIZES)
def test_functions_of_embeddings_match_loop_reference(name: str, k: int, m: int) -> None:
    fast, slow = Z_FUNCTIONS[name]
    z = random_views((k, m, 5), seed=k * m).requires_grad_()
    value = fast(z)
    (grad,) = torch.autograd.grad(value, z)
    expected = slow(z)
    (expected_grad,) = torch.autograd.grad(expected, z)
    assert value.item() == pytest.approx(expected.item(), **TIGHT)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("negatives", P.NEGATIVES)
@pytest.mark.parametrize("aggregate", P.AGGREGATES)
def test_loss_with_extra_candidates_and_offset_matches_loop_reference(
    negatives: str, aggregate: str
) -> None:
    z = random_views((3, 4, 5), seed=1)
    candidates = random_views((7, 4, 5), seed=2)
    candidates[2:5] = z + 0.1  # the anchors' positives sit at rows offset + i
    value = polyview_loss(z, 0.5, aggregate, negatives, candidates=candidates, offset=2)
    expected = ref.polyview_loss(z, 0.5, aggregate, negatives, candidates, 2)
    assert value.item() == pytest.approx(expected.item(), **TIGHT)


def test_loss_on_a_stack_matches_each_slice() -> None:
    z = random_views((2, 4, 3, 5), seed=4)
    for negatives in P.NEGATIVES:
        out = polyview_loss(z, 0.2, negatives=negatives)
        assert out.shape == (2,)
        for r in range(2):
            expected = polyview_loss(z[r], 0.2, negatives=negatives)
            assert out[r].item() == pytest.approx(expected.item(), **TIGHT)


def test_estimators_work_under_vmap_without_value_checks() -> None:
    S = random_scores((3, 4, 3, 4, 3), seed=5).movedim(-1, 0).contiguous()
    z = random_views((3, 4, 3, 5), seed=6)
    for fn, x in [
        (P.multicrop, S),
        (P.arithmetic, S),
        (P.geometric, S),
        (P.sufficient_statistics, z),
        (polyview_loss, z),
    ]:
        mapped = torch.vmap(functools.partial(fn, validate_args=False))(x)
        torch.testing.assert_close(mapped, fn(x), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------- identities at M = 2


@pytest.mark.parametrize("k", [2, 3, 16])
def test_at_two_views_all_estimators_are_infonce_averaged_over_directions(k: int) -> None:
    """docs/polyview.md: at M = 2 there is one other view, so every aggregate is pairwise
    InfoNCE."""
    S = random_scores((k, 2, k, 2), seed=k)
    both = (infonce(S[:, 0, :, 1]) + infonce(S[:, 1, :, 0])) / 2
    for estimate in (P.multicrop(S), P.arithmetic(S), P.geometric(S)):
        assert estimate.item() == pytest.approx(both.item(), **TIGHT)
    for aggregate in P.AGGREGATES:  # the set critic is the pair critic itself
        F = P.set_scores(S, aggregate)
        assert P.one_vs_rest(F).item() == pytest.approx(both.item(), **TIGHT)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent (Chen et al. 2020) as usually written: 2K anchors, each anchor's
    partner in the other view is the target among the 2K - 1 other embeddings."""
    k = z1.shape[0]
    z = nnf.normalize(torch.cat([z1, z2]), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(-math.inf)
    targets = torch.cat([torch.arange(k, 2 * k), torch.arange(k)])
    return nnf.cross_entropy(logits, targets)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("aggregate", P.AGGREGATES)
def test_all_view_loss_at_two_views_is_nt_xent(dtype: torch.dtype, aggregate: str) -> None:
    z = random_views((32, 2, 16), seed=7).to(dtype)
    expected = nt_xent(z[:, 0], z[:, 1], 0.1)
    loss = polyview_loss(z, 0.1, aggregate, "all_views")
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6, rel=0)


@pytest.mark.parametrize("aggregate", P.AGGREGATES)
def test_same_view_loss_is_log_k_minus_the_bound(aggregate: str) -> None:
    z = random_views((6, 4, 5), seed=8)
    zn = nnf.normalize(z, dim=-1)
    S = torch.einsum("iad,jbd->iajb", zn, zn) / 0.25
    bound = P.arithmetic(S) if aggregate == "arithmetic" else P.geometric(S)
    loss = polyview_loss(z, 0.25, aggregate, "same_view")
    assert loss.item() == pytest.approx(math.log(6) - bound.item(), **TIGHT)


# ----------------------------------------------------------------------------------- properties

poly_scores = st.tuples(st.integers(2, 5), st.integers(2, 4)).flatmap(
    lambda km: arrays(np.float64, (km[0], km[1], km[0], km[1]), elements=st.floats(-30, 30))
)


@settings(max_examples=80, deadline=None)
@given(poly_scores)
def test_log_k_bounds_arithmetic_bounds_geometric_equals_multicrop(s: np.ndarray) -> None:
    """Shidani et al. 2024 (docs/polyview.md): log K >= Arithmetic PVC >= Geometric PVC on every
    batch (each ratio r <= K; Jensen), and Geometric PVC == Multi-Crop InfoNCE."""
    S = torch.from_numpy(s)
    k = s.shape[0]
    a, g = P.arithmetic(S).item(), P.geometric(S).item()
    assert math.log(k) + 1e-12 >= a
    assert a >= g - 1e-9
    assert P.multicrop(S).item() == pytest.approx(g, rel=1e-9, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(poly_scores, st.randoms(use_true_random=False))
def test_estimates_are_invariant_to_permuting_samples_or_views(s: np.ndarray, rnd) -> None:
    """Every estimator is a symmetric function of the K samples and of the M views: the same
    permutation on both sample axes (or both view axes) of S leaves it unchanged."""
    S = torch.from_numpy(s)
    k, m = s.shape[:2]
    samples = torch.tensor(rnd.sample(range(k), k))
    views = torch.tensor(rnd.sample(range(m), m))
    by_samples = S[samples][:, :, samples]
    by_views = S[:, views][:, :, :, views]
    for name, (fn, _) in S_ESTIMATORS.items():
        value = fn(S).item()  # relative tolerance: exp(30) scores make NWJ's value huge
        assert fn(by_samples).item() == pytest.approx(value, rel=1e-9, abs=1e-9), name
        assert fn(by_views).item() == pytest.approx(value, rel=1e-9, abs=1e-9), name


@settings(max_examples=30, deadline=None)
@given(
    st.integers(2, 5),
    st.integers(2, 4),
    st.integers(0, 2**16),
    st.randoms(use_true_random=False),
)
def test_functions_of_embeddings_are_invariant_to_permuting_samples_or_views(
    k: int, m: int, seed: int, rnd
) -> None:
    """The same symmetry for sufficient statistics and both training losses."""
    z = random_views((k, m, 3), seed=seed)
    samples = torch.tensor(rnd.sample(range(k), k))
    views = torch.tensor(rnd.sample(range(m), m))
    for name, (fn, _) in Z_FUNCTIONS.items():
        value = fn(z).item()
        assert fn(z[samples]).item() == pytest.approx(value, rel=1e-9, abs=1e-9), name
        assert fn(z[:, views]).item() == pytest.approx(value, rel=1e-9, abs=1e-9), name


# ---------------------------------------------------- statistical checks on M-view Gaussians

# d = 2, rho = 0.8: I(x_a; x_b) = 1.02 nats, I(x_a; X_\a) = 1.02 (M = 2) and 1.48 (M = 8);
# K = 64 (log K = 4.16) keeps InfoNCE's ceiling far away, so the estimates are close to the truth
# and the comparisons below are not vacuous. R = 32 independent batches give a standard error
# of about 0.02 nats on the mean estimate.
D, RHO, K, R = 2, 0.8, 64, 32


@functools.cache
def gaussian_views(m: int) -> torch.Tensor:
    """R batches of K samples with m equicorrelated views, (R, K, m, D); fixed seed."""
    g = torch.Generator().manual_seed(2024)
    return sample_views(R * K, m, D, RHO, generator=g).reshape(R, K, m, D)


def mean_and_se(estimates: torch.Tensor) -> tuple[float, float]:
    return estimates.mean().item(), estimates.std().item() / math.sqrt(estimates.numel())


def exact_rest_critic(m: int):
    """The optimal one-vs-rest critic written on (x_a, T), T = mean of the other m - 1 views
    (docs/gaussian.md): x_a | rest ~ N(beta T, 1 - R^2) per coordinate, beta = (m-1) rho / (1 +
    (m-2) rho), R^2 = (m-1) rho^2 / (1 + (m-2) rho); critic = log p(x_a | T) - log p(x_a)."""
    beta = (m - 1) * RHO / (1 + (m - 2) * RHO)
    resid = 1 - (m - 1) * RHO**2 / (1 + (m - 2) * RHO)

    def critic(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.shape[-3] != m:  # called with the view axis leading: x, t: (..., M, K, D)
            raise ValueError(f"this critic is exact for M = {m} views, got {x.shape[-3]}")
        diff = x.unsqueeze(-2) - beta * t.unsqueeze(-3)
        log_ratio = -0.5 * math.log(resid) - diff**2 / (2 * resid) + x.unsqueeze(-2) ** 2 / 2
        return log_ratio.sum(-1)

    return critic


def test_exact_rest_critic_matches_the_analytic_one_vs_rest_critic() -> None:
    """The rest enters the optimal critic only through its sum (docs/gaussian.md), so the critic on
    the mean T must reproduce mibounds.gaussian's F to rounding."""
    z = gaussian_views(8)[:2]
    rest = (z.sum(-2, keepdim=True) - z) / 7
    F = exact_rest_critic(8)(z.movedim(-2, -3), rest.movedim(-2, -3))
    torch.testing.assert_close(F, one_vs_rest_log_ratio(z, RHO), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m", [2, 8])
def test_bounds_stay_below_the_mi_they_bound(m: int) -> None:
    """Multi-Crop <= I(x_a; x_b); Arithmetic, Geometric PVC and Sufficient Statistics <=
    I(x_a; X_\\a) (Shidani et al. 2024). Each holds in expectation, so the mean over R batches
    may exceed the truth by noise only: 3 standard errors (a one-sided 0.1% false alarm)."""
    z = gaussian_views(m)
    S = multiview_log_ratio(z, RHO)
    pairwise, rest = mi_from_rho(RHO, D), one_vs_rest_mi(RHO, D, m)
    for estimates, truth in [
        (P.multicrop(S), pairwise),
        (P.arithmetic(S), rest),
        (P.geometric(S), rest),
        (P.sufficient_statistics(z, exact_rest_critic(m)), rest),
        (P.one_vs_rest(one_vs_rest_log_ratio(z, RHO)), rest),
    ]:
        mean, se = mean_and_se(estimates)
        assert mean <= truth + 3 * se
    # with the exact critic the sufficient-statistics bound is nearly tight (InfoNCE's bias at
    # K = 64 and 1.5 nats is about 0.05), so the check above is not vacuous
    mean, _ = mean_and_se(P.sufficient_statistics(z, exact_rest_critic(m)))
    assert mean >= rest - 0.15


def test_generalized_nwj_with_the_optimal_critic_is_unbiased() -> None:
    """Shidani et al. Thm 2.1: NWJ on F, tight at F = 1 + log ratio, where its expectation is
    I(x_a; X_\\a) exactly: the mean over R batches is within 4 standard errors of it."""
    z = gaussian_views(8)
    mean, se = mean_and_se(P.one_vs_rest(one_vs_rest_log_ratio(z, RHO) + 1.0, bound=nwj))
    assert abs(mean - one_vs_rest_mi(RHO, D, 8)) <= 4 * se


def test_one_vs_rest_bounds_grow_with_m_and_multicrop_does_not() -> None:
    """Shidani et al. 2024, Fig. 2: at fixed rho and K, Arithmetic PVC and Sufficient
    Statistics grow with M (they bound I(x_a; X_\\a), 1.02 -> 1.48 nats from M = 2 to 8), while
    Multi-Crop stays tied to the pairwise MI. The M = 2 batches are the first two views of the
    M = 8 ones (exactly M = 2 equicorrelated views), so the differences are paired; thresholds
    are 4 standard errors of the paired difference."""
    z8 = gaussian_views(8)
    z2 = z8[:, :, :2]
    S8, S2 = multiview_log_ratio(z8, RHO), multiview_log_ratio(z2, RHO)
    for growing in (
        P.arithmetic(S8) - P.arithmetic(S2),
        P.sufficient_statistics(z8, exact_rest_critic(8))
        - P.sufficient_statistics(z2, exact_rest_critic(2)),
    ):
        mean, se = mean_and_se(growing)
        assert mean > 4 * se
    mean, se = mean_and_se(P.multicrop(S8) - P.multicrop(S2))
    assert abs(mean) <= 4 * se


def test_critic_built_for_other_m_is_rejected() -> None:
    with pytest.raises(ValueError, match="M = 8"):
        P.sufficient_statistics(gaussian_views(2), exact_rest_critic(8))


@pytest.mark.parametrize("name", sorted(CRITICS))
def test_trainable_critics_plug_into_every_estimator(name: str) -> None:
    """A critic of mibounds.critics gives S: (K, M, K, M) in one call, the same scores as pair
    by pair; multicrop on it is the pairwise bound averaged over view pairs; the critic's
    pairwise mode is a valid sufficient-statistics critic; gradients reach its parameters."""
    torch.manual_seed(0)
    critic = CRITICS[name](3).double()
    z = random_views((5, 3, 3), seed=13)
    S = critic(z)
    assert S.shape == (5, 3, 5, 3)
    pairs = [infonce(critic(z[:, a], z[:, b])) for a in range(3) for b in range(3) if a != b]
    assert P.multicrop(S).item() == pytest.approx(torch.stack(pairs).mean().item(), **TIGHT)
    total = P.arithmetic(S) + P.geometric(S) + P.sufficient_statistics(z, critic)
    total.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in critic.parameters())


# ------------------------------------------------------------------------ module and gathering


def test_module_matches_function_and_says_it_is_not_a_bound() -> None:
    z = random_views((5, 3, 4), seed=9)
    module = PolyViewLoss(temperature=0.2, aggregate="geometric")
    assert module(z).item() == pytest.approx(
        polyview_loss(z, 0.2, "geometric", "all_views").item(), **TIGHT
    )
    assert "not" in PolyViewLoss.__doc__ and "bound" in PolyViewLoss.__doc__


@pytest.mark.parametrize("negatives", P.NEGATIVES)
def test_gathered_loss_averaged_over_ranks_is_the_global_loss(negatives: str) -> None:
    """With the gather hook, each of two simulated processes takes its own K rows as anchors and
    the global 2K as candidates; the mean of the two local losses is the loss on the global batch,
    and gradients reach the candidates through the hook."""
    z_global = random_views((8, 3, 4), seed=10).requires_grad_()
    losses = []
    for rank in range(2):
        local = z_global[4 * rank : 4 * rank + 4]
        module = PolyViewLoss(0.3, negatives=negatives, gather=lambda _, r=rank: (z_global, 4 * r))
        losses.append(module(local))
    total = (losses[0] + losses[1]) / 2
    expected = polyview_loss(z_global, 0.3, negatives=negatives)
    assert total.item() == pytest.approx(expected.item(), **TIGHT)
    (grad,) = torch.autograd.grad(total, z_global)
    (expected_grad,) = torch.autograd.grad(expected, z_global)
    torch.testing.assert_close(grad, expected_grad, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------ half precision


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype: torch.dtype) -> None:
    """Half inputs are upcast: the result equals float32 on the same rounded inputs (1e-5), and
    differs from float32 on the unrounded inputs by at most the rounding's effect. InfoNCE-type
    estimates move by at most 2 max|dS| (each log r is 1-Lipschitz in the positive and in the
    logsumexp), the loss by 2 max|d cos| / tau <= 2 * 2 * eps / tau."""
    S32 = random_scores((6, 4, 6, 4), seed=11, scale=3.0).float()
    S16 = S32.to(dtype)
    max_err = (S16.float() - S32).abs().max().item()
    for fn in (P.multicrop, P.arithmetic, P.geometric, lambda s: P.one_vs_rest(P.set_scores(s))):
        out = fn(S16)
        assert out.dtype == torch.float32 and torch.isfinite(out)
        assert out.item() == pytest.approx(fn(S16.float()).item(), abs=1e-5)
        assert abs(out.item() - fn(S32).item()) <= 2 * max_err + 1e-5
    z32 = random_views((6, 4, 8), seed=12).float()
    eps = torch.finfo(dtype).eps
    for negatives in P.NEGATIVES:
        loss = polyview_loss(z32.to(dtype), 0.1, negatives=negatives)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        assert abs(loss.item() - polyview_loss(z32, 0.1, negatives=negatives).item()) <= (
            4 * eps / 0.1
        )
    ss = P.sufficient_statistics(z32.to(dtype))
    assert ss.item() == pytest.approx(
        P.sufficient_statistics(z32.to(dtype).float()).item(), abs=1e-5
    )


# ------------------------------------------------------------------ the all-view reading


def cosine_scores(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """S[..., i, a, j, b] = <z_ia, z_jb> / (|z_ia| |z_jb| tau), the loss's own scores."""
    zn = nnf.normalize(z, dim=-1)
    return torch.einsum("...iad,...jbd->...iajb", zn / temperature, zn)


@pytest.mark.parametrize("shape", [(5, 3, 4), (2, 6, 4, 3), (3, 2, 2, 5)])
@pytest.mark.parametrize("aggregate", P.LOSS_AGGREGATES)
def test_all_view_estimates_are_the_constant_minus_the_loss(
    shape: tuple[int, ...], aggregate: str
) -> None:
    """docs/polyview.md: the all-view estimate is log(1 + M(K-1)) minus the all-view loss
    polyview_loss minimises (Multi-Crop's: log(2K - 1) minus its view-pair NT-Xent), on the
    same scores, with or without leading batch dims."""
    z = random_views(shape, seed=sum(shape))
    k, m = shape[-3], shape[-2]
    S = cosine_scores(z, 0.3)
    loss = polyview_loss(z, 0.3, aggregate, "all_views")
    estimate = P.contrastive_estimate(S, aggregate, "all_views")
    torch.testing.assert_close(estimate, math.log(1 + m * (k - 1)) - loss, rtol=0, atol=1e-10)
    if aggregate != "arithmetic_printed":
        by_name = getattr(P, aggregate)(S, negatives="all_views")
        torch.testing.assert_close(by_name, estimate, rtol=0, atol=1e-10)
    pairs = polyview_loss(z, 0.3, "geometric", "view_pairs")
    multicrop = P.multicrop(S, negatives="all_views")
    torch.testing.assert_close(multicrop, math.log(2 * k - 1) - pairs, rtol=0, atol=1e-10)


@pytest.mark.parametrize("k", [2, 5, 16])
def test_at_two_views_every_all_view_reading_is_the_nt_xent_reading(k: int) -> None:
    """At M = 2 an anchor has one target view and its 2K - 1 candidates are NT-Xent's, so the
    all-view arithmetic and geometric estimates and Multi-Crop's all-view reading all equal
    log(2K - 1) - NT-Xent."""
    z = random_views((k, 2, 8), seed=k)
    S = cosine_scores(z, 0.5)
    expected = math.log(2 * k - 1) - nt_xent(z[:, 0], z[:, 1], 0.5)
    for estimate in (
        P.arithmetic(S, negatives="all_views"),
        P.geometric(S, negatives="all_views"),
        P.multicrop(S, negatives="all_views"),
    ):
        torch.testing.assert_close(estimate, expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("negatives", P.NEGATIVES)
def test_the_printed_arithmetic_line_is_a_soft_max_that_differs_from_the_bound_from_three_views(
    negatives: str,
) -> None:
    """Algorithm 1's arithmetic line as printed, L = logsumexp_b CE - log K: at M = 2 (one
    target view) it is the soft-min (arithmetic) loss minus log K; from M = 3 on it is another
    function of the per-pair losses, at least their maximum minus log K (a soft-max) where the
    soft-min form is at most their mean."""
    z2 = random_views((6, 2, 4), seed=1)
    printed = polyview_loss(z2, 0.2, "arithmetic_printed", negatives)
    soft_min = polyview_loss(z2, 0.2, "arithmetic", negatives)
    torch.testing.assert_close(printed, soft_min - math.log(6), rtol=0, atol=1e-10)
    for m in (3, 5):
        z = random_views((6, m, 4), seed=m)
        printed = polyview_loss(z, 0.2, "arithmetic_printed", negatives)
        soft_min = polyview_loss(z, 0.2, "arithmetic", negatives)
        geometric = polyview_loss(z, 0.2, "geometric", negatives)
        shifted = printed.item() + math.log(6)  # mean_{i,a} logsumexp_b CE
        assert abs(shifted - soft_min.item()) > 1e-3
        assert shifted > geometric.item() >= soft_min.item()


@settings(max_examples=60, deadline=None)
@given(poly_scores)
def test_all_view_estimates_stay_below_their_constants_and_geometric_below_arithmetic(
    s: np.ndarray,
) -> None:
    """Every cross-entropy is >= 0, so log(1 + M(K-1)) >= all-view arithmetic (and Multi-Crop's
    all-view reading <= log(2K - 1)); Jensen (mean CE >= -log mean exp(-CE)) gives all-view
    geometric <= all-view arithmetic, on every batch."""
    S = torch.from_numpy(s)
    k, m = s.shape[:2]
    a = P.arithmetic(S, negatives="all_views").item()
    g = P.geometric(S, negatives="all_views").item()
    assert math.log(1 + m * (k - 1)) + 1e-12 >= a >= g - 1e-9
    assert math.log(2 * k - 1) + 1e-12 >= P.multicrop(S, negatives="all_views").item()


def test_all_view_readings_differ_where_the_same_view_numbers_agree() -> None:
    """With same-view candidates Geometric PVC and Multi-Crop are one number; read with all-view
    candidates they are two (constants log(1 + M(K-1)) and log(2K - 1)), as the reviewers'
    remark that Geometric can be tighter than Multi-Crop needs."""
    S = random_scores((6, 4, 6, 4), seed=3)
    assert P.geometric(S).item() == pytest.approx(P.multicrop(S).item(), abs=1e-10)
    g, mc = P.geometric(S, negatives="all_views"), P.multicrop(S, negatives="all_views")
    assert abs(g.item() - mc.item()) > 1e-2


def test_all_view_estimate_exceeds_the_true_mi_at_the_optimal_critic() -> None:
    """The measured counterexample (docs/polyview.md): at the analytic optimal pairwise critic,
    d = 1, K = 2, M = 16, rho = 0.95, the all-view arithmetic estimate averages about 1.69 nats
    over batches, above the one-vs-rest MI (1.466) and even above I(x_a; c) = 1.498.

    Tolerance: 4000 batches of K = 2 give the mean a standard error of about 0.017 nats (computed
    below from the batches themselves); requiring the mean above each reference by 5 standard
    errors keeps a false pass (an estimate that does not overshoot) below 3e-7 under a normal
    approximation, and the measured excess is 11-13 of them."""
    rho, k, m = 0.95, 2, 16
    z = sample_views(4000 * k, m, 1, rho, generator=torch.Generator().manual_seed(11))
    S = multiview_log_ratio(z.view(4000, k, m, 1), rho)  # (4000, K, M, K, M)
    estimates = P.arithmetic(S, negatives="all_views")
    mean, se = estimates.mean().item(), estimates.std().item() / math.sqrt(len(estimates))
    truth, limit = one_vs_rest_mi(rho, 1, m), -0.5 * math.log(1 - rho)
    assert mean > truth + 5 * se
    assert mean > limit + 5 * se
    same_view = P.arithmetic(S).mean().item()  # the bound stays below, as it must
    assert same_view < truth


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((4, 3, 4), r"\(\.\.\., K, M, K, M\)"),
        ((4, 3, 4, 2), r"\(\.\.\., K, M, K, M\)"),
        ((4, 3, 5, 3), r"\(\.\.\., K, M, K, M\)"),
        ((1, 3, 1, 3), "K >= 2"),
        ((4, 1, 4, 1), "M >= 2"),
    ],
)
def test_bad_score_shapes_raise(shape: tuple[int, ...], match: str) -> None:
    S = torch.zeros(shape)
    for fn in (P.multicrop, P.arithmetic, P.geometric, P.set_scores):
        with pytest.raises(ValueError, match=match):
            fn(S)


def test_non_finite_scores_raise_unless_unchecked() -> None:
    S = random_scores((3, 2, 3, 2), seed=0)
    S[1, 0, 2, 1] = math.nan
    for fn in (P.multicrop, P.arithmetic, P.geometric, P.set_scores):
        with pytest.raises(ValueError, match="non-finite"):
            fn(S)
    assert math.isnan(P.arithmetic(S, validate_args=False).item())


def test_bad_set_scores_raise() -> None:
    with pytest.raises(ValueError, match=r"\(\.\.\., M, K, K\)"):
        P.one_vs_rest(torch.zeros(3, 4, 5))
    with pytest.raises(ValueError, match="M >= 2"):
        P.one_vs_rest(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match="K >= 2"):
        P.one_vs_rest(torch.zeros(3, 1, 1))
    with pytest.raises(ValueError, match="overflowed"):
        P.one_vs_rest(torch.full((2, 3, 3), 200.0), bound=nwj)  # exp(199) is inf in float32


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((4, 3), r"\(\.\.\., K, M, D\)"),
        ((4, 3, 0), "D >= 1"),
        ((1, 3, 2), "K >= 2"),
        ((4, 1, 2), "M >= 2"),
    ],
)
def test_bad_embedding_shapes_raise(shape: tuple[int, ...], match: str) -> None:
    z = torch.zeros(shape)
    with pytest.raises(ValueError, match=match):
        P.sufficient_statistics(z)
    with pytest.raises(ValueError, match=match):
        polyview_loss(z)


def test_bad_loss_arguments_raise() -> None:
    z = random_views((4, 3, 2), seed=0)
    for temperature in (0.0, -1.0, math.inf):
        with pytest.raises(ValueError, match="temperature"):
            polyview_loss(z, temperature)
        with pytest.raises(ValueError, match="temperature"):
            PolyViewLoss(temperature)
    with pytest.raises(
        ValueError,
        match=r"aggregate must be one of \('arithmetic', 'geometric', 'arithmetic_printed'\)",
    ):
        polyview_loss(z, aggregate="harmonic")
    with pytest.raises(ValueError, match="aggregate must be one of"):
        P.set_scores(torch.zeros(2, 2, 2, 2), "harmonic")
    with pytest.raises(
        ValueError, match=r"negatives must be one of \('all_views', 'same_view', 'view_pairs'\)"
    ):
        PolyViewLoss(negatives="memory_bank")
    with pytest.raises(ValueError, match=r"candidates must have shape \(\.\.\., N, M, D\)"):
        polyview_loss(z, candidates=torch.zeros(6, 2, 2))
    with pytest.raises(ValueError, match="offset"):
        polyview_loss(z, candidates=torch.zeros(6, 3, 2), offset=3)
    with pytest.raises(ValueError, match="offset"):
        polyview_loss(z, offset=-1)


def test_bad_readings_raise_naming_the_argument() -> None:
    S = random_scores((3, 3, 3, 3), seed=0)
    for fn in (P.multicrop, P.arithmetic, P.geometric):
        with pytest.raises(ValueError, match="negatives must be one of"):
            fn(S, negatives="every_view")
        with pytest.raises(ValueError, match="K >= 2"):
            fn(torch.zeros(1, 3, 1, 3), negatives="all_views")
        with pytest.raises(ValueError, match="M >= 2"):
            fn(torch.zeros(3, 1, 3, 1), negatives="all_views")
        bad = S.clone()
        bad[0, 1, 2, 0] = math.inf
        with pytest.raises(ValueError, match="S has 1 non-finite"):
            fn(bad, negatives="all_views")
    with pytest.raises(ValueError, match="aggregate must be one of"):
        P.contrastive_estimate(S, "harmonic")
    with pytest.raises(ValueError, match="takes no pairwise bound"):
        P.multicrop(S, nwj, negatives="all_views")
    with pytest.raises(ValueError, match="bound must be a pairwise estimator"):
        P.multicrop(S, "nwj")


def test_critic_of_wrong_output_shape_raises() -> None:
    z = random_views((4, 3, 2), seed=0)
    with pytest.raises(ValueError, match=r"\(\.\.\., M, K, K\)"):
        P.sufficient_statistics(z, critic=lambda x, y: x @ y.transpose(-1, -2)[..., :2])
