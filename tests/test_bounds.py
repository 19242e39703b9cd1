"""Tests of mibounds.bounds: loop references, the papers' identities and inequalities as
properties, statistical checks at the analytic optimal critic, gradients and bad input."""

from __future__ import annotations

import functools
import math

import bounds_reference as ref
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from mibounds import bounds as B
from mibounds.gaussian import pair_log_ratio, rho_from_mi, sample_pairs

# (torch estimator, loop reference) pairs; parameters fixed so that both see the same function
ESTIMATORS = {
    "infonce": (B.infonce, ref.infonce),
    "nwj": (B.nwj, ref.nwj),
    "dv": (B.dv, ref.dv),
    "js": (B.js, ref.js_value),
    "smile": (functools.partial(B.smile, clip=1.5), functools.partial(ref.smile, clip=1.5)),
    "eqco": (functools.partial(B.eqco, alpha=9.0), functools.partial(ref.eqco, alpha=9.0)),
    "tuba": (
        lambda s: B.tuba(s, torch.linspace(-0.5, 0.5, s.shape[-1], dtype=torch.float64)),
        lambda s: ref.tuba(s, np.linspace(-0.5, 0.5, s.shape[-1])),
    ),
    "interpolated": (
        lambda s: B.interpolated(
            s, 0.3, torch.linspace(0.0, 1.0, s.shape[-1], dtype=torch.float64)
        ),
        lambda s: ref.interpolated(s, 0.3, np.linspace(0.0, 1.0, s.shape[-1])),
    ),
}
STRAIGHT_THROUGH = {"js", "smile"}  # value and gradient come from different objectives


def random_scores(shape: tuple[int, ...], seed: int, scale: float = 2.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    s = scale * torch.randn(shape, generator=g, dtype=torch.float64)
    return s + 2.0 * torch.eye(*shape[-2:], dtype=torch.float64)  # positives a little higher


# ---------------------------------------------------------------- agreement with loop references


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
@pytest.mark.parametrize("k", [2, 3, 8])
def test_matches_loop_reference_unbatched_and_batched(name: str, k: int) -> None:
    fn, reference = ESTIMATORS[name]
    stack = random_scores((2, 3, k, k), seed=k)
    out = fn(stack)
    assert out.shape == (2, 3)
    assert out.dtype == torch.float64
    for idx in np.ndindex(2, 3):
        expected = reference(stack[idx].numpy())
        assert fn(stack[idx]).item() == pytest.approx(expected, rel=1e-10, abs=1e-10)
        assert out[idx].item() == pytest.approx(expected, rel=1e-10, abs=1e-10)


def test_infonce_with_memory_bank_negatives_matches_reference() -> None:
    s = random_scores((5, 12), seed=3)
    assert B.infonce(s).item() == pytest.approx(ref.infonce(s.numpy()), rel=1e-12)
    # the extra negatives raise the ceiling to log N
    assert B.infonce(s).item() <= math.log(12)


def test_interpolated_leave_one_out_is_exact_when_one_score_dominates() -> None:
    # a row where one candidate dominates by e^40 is where lse + log1p(-exp(.)) cancels to log 0
    s = random_scores((4, 4), seed=1, scale=0.5)
    s[0, 2] += 40.0
    assert B.interpolated(s, 0.5).item() == pytest.approx(
        ref.interpolated(s.numpy(), 0.5, np.zeros(4)), rel=1e-9
    )


@pytest.mark.parametrize("alpha", [0.01, 0.5, 1.0])
@pytest.mark.parametrize("scale", [300.0, 1e4])
def test_interpolated_matches_the_reference_at_large_scale(scale: float, alpha: float) -> None:
    # entries hundreds of nats apart: the largest negative of a row dominates the others by more
    # than the clamp's 4 log(eps) (-144 in float64), where the leave-one-out must stay exact
    g = torch.Generator().manual_seed(int(scale))
    s = scale * (2 * torch.rand(2, 6, 6, generator=g, dtype=torch.float64) - 1)
    log_q = torch.linspace(-scale / 2, scale / 2, 6, dtype=torch.float64)
    out = B.interpolated(s, alpha, log_q)
    for b in range(2):
        expected = ref.interpolated(s[b].numpy(), alpha, log_q.numpy())
        assert out[b].item() == pytest.approx(expected, rel=1e-12)


# ----------------------------------------------------------------------------------- properties

square_scores = st.integers(2, 6).flatmap(
    lambda k: arrays(np.float64, (k, k), elements=st.floats(-30, 30, allow_nan=False))
)


@settings(max_examples=60, deadline=None)
@given(square_scores)
def test_infonce_never_exceeds_log_k(s: np.ndarray) -> None:
    """CPC / Poole et al.: I_NCE <= log K for any critic, since each row's softmax is <= 1."""
    k = s.shape[0]
    assert B.infonce(torch.from_numpy(s)).item() <= math.log(k) + 1e-12


@settings(max_examples=60, deadline=None)
@given(square_scores, st.lists(st.floats(-50, 50), min_size=6, max_size=6))
def test_infonce_invariant_to_per_anchor_constants(s: np.ndarray, shifts: list[float]) -> None:
    """The softmax over each anchor's candidates ignores a constant added to that row."""
    k = s.shape[0]
    t = torch.from_numpy(s)
    shifted = t + torch.tensor(shifts[:k], dtype=torch.float64)[:, None]
    assert B.infonce(shifted).item() == pytest.approx(B.infonce(t).item(), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(square_scores)
def test_eqco_with_alpha_k_minus_1_is_infonce(s: np.ndarray) -> None:
    """Zhu et al.: with alpha = K_neg the margin vanishes and EqCo is InfoNCE."""
    t = torch.from_numpy(s)
    k = s.shape[0]
    assert B.eqco(t, alpha=k - 1).item() == pytest.approx(B.infonce(t).item(), abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, (4, 4), elements=st.floats(-20, 20)))
def test_js_value_is_nwj_of_shifted_scores_and_tuba_at_one_is_nwj(s: np.ndarray) -> None:
    """docs/pairwise.md#js: value of js(f) = nwj(f + 1); tuba with log a = 1 is nwj (Poole)."""
    t = torch.from_numpy(s)
    assert B.js(t).item() == pytest.approx(B.nwj(t + 1).item(), rel=1e-12, abs=1e-9)
    assert B.tuba(t, 1.0).item() == pytest.approx(B.nwj(t).item(), rel=1e-12, abs=1e-9)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(2, 5).flatmap(
        lambda k: arrays(np.float64, (3, k, k), elements=st.floats(-10, 10, allow_nan=False))
    ),
    st.sampled_from(sorted(ESTIMATORS)),
)
def test_estimate_of_a_stack_is_the_stack_of_estimates(s: np.ndarray, name: str) -> None:
    fn = ESTIMATORS[name][0]
    t = torch.from_numpy(s)
    stacked = fn(t)
    one_by_one = torch.stack([fn(t[b]) for b in range(t.shape[0])])
    torch.testing.assert_close(stacked, one_by_one, rtol=1e-12, atol=1e-12)


@settings(max_examples=60, deadline=None)
@given(square_scores, st.floats(0.01, 1.0))
def test_interpolated_ceiling(s: np.ndarray, alpha: float) -> None:
    """Poole et al.: I_alpha <= 1 + log(K / alpha) for any critic and baseline."""
    k = s.shape[0]
    value = B.interpolated(torch.from_numpy(s), alpha, log_baseline=-3.0).item()
    assert value <= 1 + math.log(k / alpha) + 1e-9


def test_interpolated_at_alpha_one_ignores_the_baseline() -> None:
    """At alpha = 1 the baseline's weight 1 - alpha is zero: I_alpha no longer depends on q."""
    s = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    s.requires_grad_()
    low, high = (B.interpolated(s, 1.0, log_baseline=q) for q in (-3.0, 4.0))
    torch.testing.assert_close(low, high, rtol=0, atol=0)
    assert torch.isfinite(torch.autograd.grad(low.sum(), s)[0]).all()


# -------------------------------------------------------- statistics at the analytic optimal critic


def optimal_scores(mi: float, k: int, batches: int, seed: int) -> torch.Tensor:
    """``(batches, K, K)`` exact log density ratios log p(y|x)/p(y) on d = 20 Gaussian pairs."""
    rho = rho_from_mi(mi, 20)
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(batches):
        x, y = sample_pairs(k, 20, rho, generator=g, dtype=torch.float64)
        out.append(pair_log_ratio(x, y, rho))
    return torch.stack(out)


def test_nwj_at_its_optimal_critic_is_unbiased_for_the_true_mi() -> None:
    # f* = 1 + log r makes E[nwj] = I exactly. Per batch of K = 128 the marginal term averages
    # 16256 ratios of variance e^{2I} - 1 = 53.6 (correlated through shared samples): the sd of the
    # mean over 40 batches, measured below, is ~0.01, so 5 standard errors (>= 0.03) bounds chance.
    est = B.nwj(optimal_scores(2.0, 128, 40, seed=0) + 1.0)
    se = est.std().item() / math.sqrt(len(est))
    assert abs(est.mean().item() - 2.0) < max(5 * se, 0.03)


@pytest.mark.parametrize("mi", [2.0, 6.0])
def test_every_bound_lies_below_the_true_mi_on_average(mi: float) -> None:
    # the optimal critic (tight for NWJ/JS/TUBA) and a worse one (f*/2); means over 40 batches
    # with 5 standard errors of slack, because a mean of a bound can only exceed I by chance.
    f = optimal_scores(mi, 64, 40, seed=1)
    for scale in (1.0, 0.5):
        s = scale * f
        for name, est in {
            "infonce": B.infonce(s),
            "nwj": B.nwj(s + 1.0),
            "js": B.js(s),
            "tuba": B.tuba(s, 1.0),
            "interpolated": B.interpolated(s, 0.01, 1.0),
            "eqco(alpha=K-1)": B.eqco(s, 63.0),
        }.items():
            se = est.std().item() / math.sqrt(len(est))
            assert est.mean().item() <= mi + 5 * se + 1e-6, (name, scale, est.mean().item())


def test_infonce_approaches_min_of_mi_and_log_k() -> None:
    # I = 2 nats: the optimal-critic bias is about var(r) / (2K) = 53.6 / 4096 = 0.013 at K = 2048,
    # so 0.05 leaves room for the sd of 4 batches (~0.01).
    low = B.infonce(optimal_scores(2.0, 2048, 4, seed=2)).mean().item()
    assert 2.0 - 0.05 < low <= 2.0 + 0.01
    # I = 10 nats >> log 64: positives dominate every row, InfoNCE saturates just below log K
    high = B.infonce(optimal_scores(10.0, 64, 20, seed=3)).mean().item()
    assert math.log(64) - 0.1 < high <= math.log(64)
    # and it grows with K toward I (same data law, nested batch sizes)
    by_k = [B.infonce(optimal_scores(6.0, k, 10, seed=4)).mean().item() for k in (16, 128, 1024)]
    assert by_k[0] < by_k[1] < by_k[2] < 6.0


# ------------------------------------------------------------------------------------- gradients


@pytest.mark.parametrize("name", sorted(set(ESTIMATORS) - STRAIGHT_THROUGH))
def test_gradcheck_float64(name: str) -> None:
    s = random_scores((2, 4, 4), seed=5, scale=1.0).requires_grad_()
    assert torch.autograd.gradcheck(ESTIMATORS[name][0], (s,))


def numerical_gradient(f, s: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(s)
    for idx in np.ndindex(s.shape):
        up, down = s.copy(), s.copy()
        up[idx] += eps
        down[idx] -= eps
        grad[idx] = (f(up) - f(down)) / (2 * eps)
    return grad


@pytest.mark.parametrize("fn", [B.js, functools.partial(B.smile, clip=1.0)], ids=["js", "smile"])
def test_straight_through_gradient_is_the_js_fgan_gradient(fn) -> None:
    """js and smile report one value but train with the JS f-GAN gradient (Poole; Song & Ermon)."""
    s = random_scores((5, 5), seed=6, scale=1.0).requires_grad_()
    (grad,) = torch.autograd.grad(fn(s), s)
    expected = numerical_gradient(ref.js_fgan, s.detach().numpy())
    np.testing.assert_allclose(grad.numpy(), expected, rtol=1e-6, atol=1e-8)


# the fused forward/backward passes against the plain autograd formulas of bounds_reference.py:
# (estimator, plain formula, whether the values agree too) as functions of (scores, log baseline)
FUSED = {
    "nwj": (lambda s, q: B.nwj(s), lambda s, q: ref.torch_nwj(s), True),
    "tuba": (B.tuba, ref.torch_tuba, True),
    "dv": (lambda s, q: B.dv(s), lambda s, q: ref.torch_dv(s), True),
    "js": (lambda s, q: B.js(s), lambda s, q: ref.torch_js_fgan(s), False),
    "smile": (lambda s, q: B.smile(s, 2.0), lambda s, q: ref.torch_js_fgan(s), False),
    "eqco(0.5)": (lambda s, q: B.eqco(s, 0.5), lambda s, q: ref.torch_eqco(s, 0.5), True),
    "eqco(1e3)": (lambda s, q: B.eqco(s, 1e3), lambda s, q: ref.torch_eqco(s, 1e3), True),
}
FUSED |= {
    f"interpolated({alpha})": (
        lambda s, q, alpha=alpha: B.interpolated(s, alpha, q),
        lambda s, q, alpha=alpha: ref.torch_interpolated(s, alpha, q),
        True,
    )
    for alpha in (0.01, 0.5, 1.0)
}


def fused_cases() -> list[tuple[str, torch.Tensor]]:
    """(label, (2, K, K) float64 scores): moderate and large scales, ties, K = 2 and 100, and rows
    whose largest negative dominates the rest by more than the clamp's 4 log(eps) = -144."""
    g = torch.Generator().manual_seed(13)
    cases = [(f"scale {c:g}", random_scores((2, 5, 5), seed=14, scale=c)) for c in (1.0, 30.0)]
    cases.append(("scale 300", 300 * (2 * torch.rand(2, 5, 5, generator=g) - 1).double()))
    cases.append(("ties", torch.randint(-1, 2, (2, 5, 5), generator=g).double()))
    cases.append(("K = 2", random_scores((2, 2, 2), seed=15)))
    # interpolated sums logs as logs of products of 64 entries: one product and a rest of 36
    cases.append(("K = 100", random_scores((2, 100, 100), seed=21)))
    dominated = random_scores((2, 5, 5), seed=16, scale=1.0)
    dominated[:, torch.arange(5), (torch.arange(5) + 1) % 5] += 200.0
    cases.append(("dominated", dominated))
    return cases


@pytest.mark.parametrize("name", sorted(FUSED))
@pytest.mark.parametrize(("label", "scores"), fused_cases(), ids=[c[0] for c in fused_cases()])
def test_fused_gradients_are_the_plain_autograd_gradients(name, label, scores) -> None:
    fn, plain, same_value = FUSED[name]
    k = scores.shape[-1]
    results = []
    for f in (fn, plain):
        s = scores.clone().requires_grad_()
        q = torch.linspace(-1.0, 2.0, k, dtype=torch.float64).expand(2, k).clone()
        q.requires_grad_()
        value = f(s, q)
        # weights per stacked matrix, so that a mix-up between the matrices would show
        weighted = (value * torch.tensor([1.0, -2.0])).sum()
        results.append((value, *torch.autograd.grad(weighted, (s, q), allow_unused=True)))
    (value, grad_s, grad_q), (plain_value, plain_s, plain_q) = results
    if same_value:
        torch.testing.assert_close(value, plain_value, rtol=1e-12, atol=1e-12)
    # the only differences are float64 rounding and the clamp (an entry 144 nats below its
    # row's largest term gets e^-144 of that term's gradient instead of less): 1e-10 of the
    # largest gradient entry
    tolerance = dict(rtol=1e-10, atol=1e-10 * plain_s.abs().max().item())
    torch.testing.assert_close(grad_s, plain_s, **tolerance)
    if plain_q is not None:
        torch.testing.assert_close(grad_q, plain_q, rtol=1e-10, atol=1e-10 * plain_q.abs().max())


@pytest.mark.parametrize(
    ("name", "dominated"),
    [("tuba", False)]
    + [(f"interpolated({a})", d) for a in (0.01, 0.5, 1.0) for d in (False, True)],
)
def test_gradcheck_in_scores_and_baseline(name: str, dominated: bool) -> None:
    s = random_scores((2, 4, 4), seed=17, scale=1.0)
    if dominated:  # each row's largest negative 40 nats above the rest: the j* branch
        s[:, torch.arange(4), (torch.arange(4) + 1) % 4] += 40.0
    q = torch.linspace(-1.0, 1.0, 4, dtype=torch.float64).repeat(2, 1)
    fn = FUSED[name][0]
    assert torch.autograd.gradcheck(fn, (s.requires_grad_(), q.requires_grad_()))


def test_row_logsumexp_gradient_with_an_output_unused() -> None:
    # autograd passes None for an unused output (no K x K zeros): each output alone
    s = random_scores((2, 5, 5), seed=22).requires_grad_()
    lse, positives = B._row_logsumexp(s, -math.inf)
    (grad_lse,) = torch.autograd.grad(lse.sum(), s, retain_graph=True)
    (grad_positives,) = torch.autograd.grad(positives.sum(), s)
    masked = s + torch.zeros(5, 5, dtype=s.dtype).fill_diagonal_(-math.inf)
    (expected,) = torch.autograd.grad(torch.logsumexp(masked, -1).sum(), s)
    torch.testing.assert_close(grad_lse, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(grad_positives, torch.eye(5, dtype=s.dtype).expand(2, 5, 5))


UNCHECKED = {
    "nwj": B.nwj,
    "tuba": functools.partial(B.tuba, log_baseline=0.5),
    "dv": B.dv,
    "js": B.js,
    "smile": B.smile,
    "eqco": functools.partial(B.eqco, alpha=3.0),
    "interpolated": functools.partial(B.interpolated, alpha=0.2, log_baseline=0.5),
}


@pytest.mark.parametrize("name", sorted(UNCHECKED))
def test_fused_estimators_work_under_vmap_and_func_grad(name: str) -> None:
    fn = functools.partial(UNCHECKED[name], validate_args=False)  # value checks cannot run there
    s = random_scores((3, 5, 5), seed=18)
    torch.testing.assert_close(torch.vmap(fn)(s), fn(s), rtol=1e-12, atol=1e-12)
    (expected,) = torch.autograd.grad(fn(s.requires_grad_()).sum(), s)
    torch.testing.assert_close(torch.vmap(torch.func.grad(fn))(s.detach()), expected)


@pytest.mark.parametrize("name", sorted(UNCHECKED))
def test_any_memory_layout_gives_the_same_values_and_gradients(name: str) -> None:
    fn = UNCHECKED[name]
    base = random_scores((2, 5, 5), seed=19)
    results = []
    for s in (base.clone(), base.transpose(-1, -2).contiguous().transpose(-1, -2)):
        s.requires_grad_()
        value = fn(s)
        results.append((value, *torch.autograd.grad(value.sum(), s)))
    torch.testing.assert_close(results[0], results[1], rtol=1e-12, atol=1e-12)


def test_mine_value_is_dv_and_gradient_uses_the_moving_average() -> None:
    mine = B.MINE(momentum=0.9)
    s1, s2 = random_scores((4, 4), seed=7), random_scores((4, 4), seed=8).requires_grad_()
    mine(s1)
    value = mine(s2)
    assert value.item() == pytest.approx(ref.dv(s2.detach().numpy()), rel=1e-12)

    def mean_exp_negatives(s: np.ndarray) -> float:
        return sum(math.exp(s[i, j]) for i in range(4) for j in range(4) if i != j) / 12

    z = 0.9 * mean_exp_negatives(s1.numpy()) + 0.1 * mean_exp_negatives(s2.detach().numpy())
    assert mine.log_partition.item() == pytest.approx(math.log(z), rel=1e-6)
    (grad,) = torch.autograd.grad(value, s2)
    surrogate = lambda s: np.trace(s) / 4 - mean_exp_negatives(s) / z  # noqa: E731
    np.testing.assert_allclose(
        grad.numpy(), numerical_gradient(surrogate, s2.detach().numpy()), rtol=1e-6, atol=1e-8
    )


def test_mine_state_round_trips_through_state_dict() -> None:
    mine = B.MINE(momentum=0.5, batch_shape=(3,))
    mine(random_scores((3, 4, 4), seed=9))
    restored = B.MINE(momentum=0.5, batch_shape=(3,))
    restored.load_state_dict(mine.state_dict())
    s = random_scores((3, 4, 4), seed=10)
    torch.testing.assert_close(restored(s), mine(s))
    torch.testing.assert_close(restored.log_partition, mine.log_partition)


LOG_DOMAIN = ["infonce", "dv", "smile", "eqco", "interpolated"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_finite_values_and_gradients_at_scores_1e4(name: str, dtype: torch.dtype) -> None:
    fn = ESTIMATORS[name][0]
    g = torch.Generator().manual_seed(11)
    if name in LOG_DOMAIN:
        # every entry as large as 1e4 in magnitude: only logsumexp-type reductions survive this
        s = 1e4 * (2 * torch.rand(6, 6, generator=g) - 1)
    else:
        # exp-type bounds (NWJ, TUBA, JS) are linear in exp(negatives): the estimate itself is
        # finite only when negatives stay moderate, so the large scores are the positives
        s = torch.randn(6, 6, generator=g) + 1e4 * torch.eye(6)
    s = s.to(dtype).requires_grad_()
    out = fn(s)
    (grad,) = torch.autograd.grad(out.sum(), s)
    assert out.dtype == torch.float32
    assert torch.isfinite(out).all() and torch.isfinite(grad).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_half_precision_agrees_with_float32_on_the_same_scores(name, dtype) -> None:
    fn = ESTIMATORS[name][0]
    s = random_scores((6, 6), seed=12).to(dtype)
    # computation runs in float32, so the only difference is float32 rounding
    assert fn(s).item() == pytest.approx(fn(s.float()).item(), rel=1e-6, abs=1e-6)


def test_nwj_overflow_is_an_error_not_minus_infinity() -> None:
    s = torch.full((4, 4), 1e4)
    with pytest.raises(ValueError, match="overflow"):
        B.nwj(s)
    assert B.nwj(s, validate_args=False).item() == -math.inf


# ------------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_bad_shapes_and_values_raise(name: str) -> None:
    fn = ESTIMATORS[name][0]
    with pytest.raises(ValueError, match=r"\(\.\.\., K, K\)"):
        fn(torch.zeros(5))
    with pytest.raises(ValueError, match="K >= 2"):
        fn(torch.zeros(1, 1))
    with pytest.raises(ValueError, match="non-finite"):
        fn(torch.tensor([[1.0, float("nan")], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="floating-point"):
        fn(torch.zeros(3, 3, dtype=torch.long))
    if name != "infonce":
        with pytest.raises(ValueError, match="square"):
            fn(torch.zeros(3, 4))


def test_bad_parameters_raise() -> None:
    s = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="N >= K"):
        B.infonce(torch.zeros(4, 3))
    with pytest.raises(ValueError, match="alpha"):
        B.eqco(s, alpha=0.0)
    with pytest.raises(ValueError, match="alpha"):
        B.interpolated(s, alpha=1.5)
    with pytest.raises(ValueError, match="clip"):
        B.smile(s, clip=0.0)
    with pytest.raises(ValueError, match="log_baseline"):
        B.tuba(s, torch.zeros(4))
    with pytest.raises(ValueError, match="momentum"):
        B.MINE(momentum=1.0)
    with pytest.raises(ValueError, match="batch_shape"):
        B.MINE()(torch.zeros(2, 3, 3))


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda s: B.eqco(s, True), "alpha"),
        (lambda s: B.eqco(s, math.nan), "alpha"),
        (lambda s: B.interpolated(s, True), "alpha"),
        (lambda s: B.interpolated(s, math.nan), "alpha"),
        (lambda s: B.interpolated(s, 0.1, math.nan), "log_baseline"),
        (lambda s: B.interpolated(s, 0.1, torch.tensor([0.0, math.inf, 0.0])), "log_baseline"),
        (lambda s: B.interpolated(s, 0.1, True), "log_baseline"),
        (lambda s: B.tuba(s, math.inf), "log_baseline"),
        (lambda s: B.tuba(s, False), "log_baseline"),
        (lambda s: B.tuba(s, torch.ones(3, dtype=torch.bool)), "log_baseline"),
        (lambda s: B.smile(s, clip=True), "clip"),
        (lambda s: B.smile(s, clip=math.nan), "clip"),
        (lambda s: B.smile(s, clip="5"), "clip"),
        (lambda s: B.MINE(momentum=False), "momentum"),
        (lambda s: B.MINE(momentum=math.nan), "momentum"),
    ],
)
def test_bools_nan_and_infinities_where_numbers_are_meant_raise(call, argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call(torch.zeros(3, 3))


@pytest.mark.parametrize("fn", [B.tuba, functools.partial(B.interpolated, alpha=0.1)])
def test_baseline_shape_is_checked_against_the_stack(fn) -> None:
    s = torch.zeros(2, 3, 4, 4)
    for bad in (
        torch.zeros(5, 4),
        torch.zeros(1, 2, 3, 4),
        torch.zeros(2, 3, 3),
        torch.zeros(4, 1),
    ):
        with pytest.raises(ValueError, match=r"log_baseline must have shape \(\.\.\., K\)"):
            fn(s, log_baseline=bad)
    # leading dimensions that broadcast against the stack (2, 3) are accepted, as documented
    full = fn(s, log_baseline=torch.ones(2, 3, 4))
    for fits in (torch.ones(4), torch.ones(3, 4), torch.ones(2, 1, 4)):
        torch.testing.assert_close(fn(s, log_baseline=fits), full)


def test_validate_args_false_skips_value_checks_only() -> None:
    s = torch.tensor([[1.0, float("nan")], [0.0, 1.0]])
    assert torch.isnan(B.infonce(s, validate_args=False))
    with pytest.raises(ValueError, match="K >= 2"):
        B.infonce(torch.zeros(1, 1), validate_args=False)
