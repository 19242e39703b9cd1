"""Tests of mibounds.critics: shapes in pairwise and multi-view mode, loop references (every
pair, every view pair), the analytic critics, cosine scores bounded by 1/temperature, batched
seeds under torch.func (stack_module_state + functional_call, with and without vmap),
device-agnosticism, gradients and bad input."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from mibounds.critics import (
    CRITICS,
    AnalyticOneVsRestCritic,
    AnalyticPairCritic,
    BilinearCritic,
    ConcatCritic,
    Critic,
    Linear,
    SeparableCritic,
    mlp,
)
from mibounds.gaussian import multiview_log_ratio, one_vs_rest_log_ratio, pair_log_ratio

D = 3
LEARNED: dict[str, Callable[[], Critic]] = {
    "separable": lambda: SeparableCritic(D, embed_dim=8, hidden_dim=16),
    "separable-shared": lambda: SeparableCritic(D, embed_dim=8, hidden_dim=16, shared=True),
    "separable-cosine": lambda: SeparableCritic(
        D, embed_dim=8, hidden_dim=16, similarity="cosine", temperature=0.2
    ),
    "bilinear": lambda: BilinearCritic(D),
    "concat": lambda: ConcatCritic(D, hidden_dim=16),
}
ALL: dict[str, Callable[[], Critic]] = {**LEARNED, "analytic": lambda: AnalyticPairCritic(0.6)}


def make(name: str, seed: int = 0) -> Critic:
    torch.manual_seed(seed)
    return ALL[name]().double()


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", sorted(ALL))
def test_pairwise_scores_have_shape_k_by_k_with_leading_batch_dims(name: str) -> None:
    critic = make(name)
    x, y = randn(2, 3, 5, D, seed=1), randn(2, 3, 5, D, seed=2)
    scores = critic(x, y)
    assert scores.shape == (2, 3, 5, 5)
    assert critic(x[0, 0], y[0, 0]).shape == (5, 5)
    for idx in np.ndindex(2, 3):
        torch.testing.assert_close(scores[idx], critic(x[idx], y[idx]))


@pytest.mark.parametrize("name", sorted(ALL))
def test_multiview_scores_are_the_pairwise_critic_between_every_two_views(name: str) -> None:
    """S[i, a, j, b] = forward(x[:, a], x[:, b])[i, j], for a = b too, from one batched call."""
    critic = make(name)
    k, m = 4, 3
    z = randn(2, k, m, D, seed=3)
    S = critic(z)
    assert S.shape == (2, k, m, k, m)
    for r, a, b in itertools.product(range(2), range(m), range(m)):
        torch.testing.assert_close(S[r, :, a, :, b], critic(z[r, :, a], z[r, :, b]))
    torch.testing.assert_close(critic(z[1]), S[1])


# --------------------------------------------------------------------------- loop references


def test_concat_critic_equals_an_explicit_double_loop_over_pairs() -> None:
    critic = make("concat")
    x, y = randn(4, D, seed=4), randn(4, D, seed=5)
    expected = torch.tensor(
        [[critic.net(torch.cat([x[i], y[j]])).item() for j in range(4)] for i in range(4)],
        dtype=torch.float64,
    )
    torch.testing.assert_close(critic(x, y), expected)


def test_bilinear_critic_equals_x_w_y_for_every_pair() -> None:
    critic = make("bilinear")
    x, y = randn(4, D, seed=6), randn(4, D, seed=7)
    w = critic.weight.detach()
    expected = torch.tensor([[(x[i] @ w @ y[j]).item() for j in range(4)] for i in range(4)])
    torch.testing.assert_close(critic(x, y), expected.double())


@pytest.mark.parametrize("shared", [False, True])
def test_separable_critic_is_the_dot_product_of_its_embeddings(shared: bool) -> None:
    torch.manual_seed(0)
    critic = SeparableCritic(D, embed_dim=8, hidden_dim=16, shared=shared, temperature=0.5)
    critic = critic.double()
    x, y = randn(5, D, seed=8), randn(5, D, seed=9)
    gx, hy = critic.embed_x(x), critic.embed_y(y)
    assert gx.shape == hy.shape == (5, 8)
    expected = torch.tensor([[(gx[i] @ hy[j]).item() / 0.5 for j in range(5)] for i in range(5)])
    torch.testing.assert_close(critic(x, y), expected.double())
    # one encoder when shared (and its parameters only once), two different ones otherwise
    assert torch.equal(critic.embed_x(y), hy) == shared
    assert (critic.h is None) == shared


def test_cosine_scores_are_bounded_by_one_over_temperature() -> None:
    torch.manual_seed(0)
    temperature = 0.2
    critic = SeparableCritic(
        D, embed_dim=8, hidden_dim=16, shared=True, similarity="cosine", temperature=temperature
    ).double()
    x, y = 100.0 * randn(2, 16, D, seed=10), 100.0 * randn(2, 16, D, seed=11)
    scores = critic(x, y)
    assert scores.abs().max().item() <= 1 / temperature + 1e-12
    # with one shared encoder an input has cosine 1 with itself: the bound is attained
    torch.testing.assert_close(
        critic(x, x).diagonal(dim1=-2, dim2=-1), torch.full((2, 16), 5.0).double()
    )
    gx, gy = critic.embed_x(x), critic.embed_y(y)
    cos = nn.functional.cosine_similarity(gx.unsqueeze(-2), gy.unsqueeze(-3), dim=-1)
    torch.testing.assert_close(scores, cos / temperature)


def test_analytic_critics_are_the_gaussian_log_ratios() -> None:
    x, y, z = randn(5, D, seed=12), randn(5, D, seed=13), randn(5, 4, D, seed=14)
    pair = AnalyticPairCritic(0.6)
    torch.testing.assert_close(pair(x, y), pair_log_ratio(x, y, 0.6))
    torch.testing.assert_close(pair(z), multiview_log_ratio(z, 0.6))
    F = AnalyticOneVsRestCritic(0.6)(z)
    assert F.shape == (4, 5, 5)
    torch.testing.assert_close(F, one_vs_rest_log_ratio(z, 0.6))


# -------------------------------------------------------------- batched seeds with torch.func


def stacked_scores(critics: list[Critic], in_dims: tuple, *inputs: torch.Tensor) -> torch.Tensor:
    """R critics as one model: stacked parameters, a stateless copy on the meta device."""
    params, buffers = stack_module_state(critics)
    base = copy.deepcopy(critics[0]).to("meta")

    def one(p, b, *xs):
        return functional_call(base, (p, b), xs)

    return torch.vmap(one, in_dims=(0, 0, *in_dims))(params, buffers, *inputs)


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_vmap_over_stacked_critics_equals_each_critic_alone(name: str) -> None:
    r = 3
    critics = [make(name, seed=s) for s in range(r)]
    x, y = randn(5, D, seed=15), randn(5, D, seed=16)
    xs, ys, zs = randn(r, 5, D, seed=17), randn(r, 5, D, seed=18), randn(r, 4, 3, D, seed=19)
    shared_inputs = stacked_scores(critics, (None, None), x, y)
    own_inputs = stacked_scores(critics, (0, 0), xs, ys)
    multiview = stacked_scores(critics, (0,), zs)
    assert shared_inputs.shape == (r, 5, 5) and multiview.shape == (r, 4, 3, 4, 3)
    for s, critic in enumerate(critics):
        torch.testing.assert_close(shared_inputs[s], critic(x, y))
        torch.testing.assert_close(own_inputs[s], critic(xs[s], ys[s]))
        torch.testing.assert_close(multiview[s], critic(zs[s]))
    # different seeds are different critics, so the comparison above is not vacuous
    assert not torch.allclose(shared_inputs[0], shared_inputs[1])


@pytest.mark.parametrize("name", sorted(ALL))
def test_stackable_critics_run_stacked_parameters_without_vmap(name: str) -> None:
    # the ``stackable`` contract: parameters with a leading copy axis R and inputs with the same
    # leading axis give copy r's scores on slice r, extra batch axes included
    r = 3
    critics = [make(name, seed=s) for s in range(r)]
    assert type(critics[0]).stackable
    params, buffers = stack_module_state(critics)
    base = copy.deepcopy(critics[0]).to("meta")
    xs, ys, zs = randn(r, 2, 5, D, seed=20), randn(r, 2, 5, D, seed=21), randn(r, 4, 3, D, seed=22)
    pairs = functional_call(base, (params, buffers), (xs, ys))
    views = functional_call(base, (params, buffers), (zs,))
    assert pairs.shape == (r, 2, 5, 5) and views.shape == (r, 4, 3, 4, 3)
    for s, critic in enumerate(critics):
        torch.testing.assert_close(pairs[s], critic(xs[s], ys[s]))
        torch.testing.assert_close(views[s], critic(zs[s]))


def test_stacked_linear_is_each_copy_alone() -> None:
    layers = [Linear(4, 3, bias=b).double() for b in (True, True, False, False)]
    for pair in (layers[:2], layers[2:]):
        params, _ = stack_module_state(pair)
        x = randn(2, 6, 5, 4, seed=23)
        out = functional_call(copy.deepcopy(pair[0]).to("meta"), params, (x,))
        assert out.shape == (2, 6, 5, 3)
        for s, layer in enumerate(pair):
            torch.testing.assert_close(out[s], layer(x[s]))


# ------------------------------------------------------------------- devices, dtypes, gradients


@pytest.mark.parametrize("name", sorted(ALL))
def test_critics_run_on_any_device(name: str) -> None:
    """Nothing is created on the CPU behind the inputs' back: on the meta device (a stand-in
    for an accelerator here) any CPU tensor would raise a device mismatch."""
    critic = ALL[name]().to("meta")
    x = torch.empty(6, D, device="meta")
    assert critic(x, x).device.type == "meta" and critic(x, x).shape == (6, 6)
    S = critic(torch.empty(6, 2, D, device="meta"))
    assert S.device.type == "meta" and S.shape == (6, 2, 6, 2)
    F = AnalyticOneVsRestCritic(0.5)(torch.empty(6, 3, D, device="meta"))
    assert F.device.type == "meta" and F.shape == (3, 6, 6)


@pytest.mark.parametrize("name", sorted(LEARNED))
def test_gradients_reach_every_parameter(name: str) -> None:
    critic = make(name)
    scores = critic(randn(6, D, seed=20), randn(6, D, seed=21))
    (scores.diagonal().mean() - scores.logsumexp(-1).mean()).backward()
    for pname, p in critic.named_parameters():
        assert p.grad is not None and bool(p.grad.abs().sum() > 0), pname


def test_mlp_layers() -> None:
    net = mlp(4, 16, 2, 3, activation=nn.Tanh)
    kinds = [type(layer) for layer in net]
    assert kinds == [Linear, nn.Tanh, Linear, nn.Tanh, Linear]
    assert net(torch.zeros(7, 2, 4)).shape == (7, 2, 3)
    assert [type(layer) for layer in mlp(4, 16, 0, 3)] == [Linear]


def test_registry_names_the_learned_critics() -> None:
    assert CRITICS == {
        "separable": SeparableCritic,
        "bilinear": BilinearCritic,
        "concat": ConcatCritic,
    }
    for cls in CRITICS.values():
        assert cls(D)(randn(3, D).float(), randn(3, D).float()).shape == (3, 3)


# -------------------------------------------------------------------------------- bad input

X = torch.zeros(4, D)
BAD = {
    "y other shape": (lambda: make("separable")(X, torch.zeros(5, D)), "same shape"),
    "wrong d": (lambda: make("concat")(torch.zeros(4, 2), torch.zeros(4, 2)), "built for d = 3"),
    "wrong d views": (lambda: make("bilinear")(torch.zeros(4, 2, 5)), "built for d = 3"),
    "K = 1": (lambda: make("separable")(X[:1], X[:1]), "needs K >= 2, got K = 1"),
    "K = 1 views": (lambda: make("concat")(torch.zeros(1, 3, D)), "needs K >= 2, got K = 1"),
    "M = 1": (lambda: make("separable")(torch.zeros(4, 1, D)), "needs M >= 2, got M = 1"),
    "1-D": (lambda: make("bilinear")(X[0], X[0]), "must have shape \\(..., K, d\\)"),
    "2-D views": (lambda: make("analytic")(X), "must have shape \\(..., K, M, d\\)"),
    "not a tensor": (lambda: make("separable")(X.numpy(), X), "must be a torch.Tensor"),
    "temperature 0": (lambda: SeparableCritic(D, temperature=0.0), "temperature must be"),
    "temperature < 0": (lambda: SeparableCritic(D, temperature=-1.0), "temperature must be"),
    "similarity": (lambda: SeparableCritic(D, similarity="l2"), "similarity must be one of"),
    "dim 0": (lambda: ConcatCritic(0), "dim must be an integer >= 1"),
    "mlp hidden": (lambda: mlp(3, 0, 1, 1), "hidden_dim must be an integer >= 1"),
    "rho = 1": (lambda: AnalyticPairCritic(1.0), "rho must lie in \\(-1, 1\\)"),
    "rest rho < 0": (lambda: AnalyticOneVsRestCritic(-0.2), "rho must lie in \\[0, 1\\)"),
    "rest M = 1": (lambda: AnalyticOneVsRestCritic(0.5)(torch.zeros(4, 1, D)), "M >= 2"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_raises_value_error_saying_what_was_expected(case: str) -> None:
    fn, message = BAD[case]
    with pytest.raises(ValueError, match=message):
        fn()
