"""The image trainer's objective registry: the Multi-Crop loss against a loop reference, the
M = 2 identities with SimCLR, every objective's loss and gradient, SogCLR's and Barlow Twins'
entries against their modules, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as nnf

from mibounds.barlow import multiview_barlow
from mibounds.catalogue import CATALOGUE, Entry, register
from mibounds.polyview_loss import polyview_loss
from mibounds.sogclr import sogclr_loss
from mibounds.vision.objectives import LossContext as ObjectiveContext
from mibounds.vision.objectives import build_objective, cosine_scores

TRAINABLE = sorted(n for n, e in CATALOGUE.items() if not (e.per_item and e.loss is None))
ALL_VIEWS = {"negatives": "all_views"}

# one torch thread: many tiny steps (conftest.single_thread)
pytestmark = pytest.mark.usefixtures("single_thread")


def multicrop_loss(z: torch.Tensor, tau: float, **candidates) -> torch.Tensor:
    """Multi-Crop's loss: polyview_loss over view-pair candidates, geometric aggregate."""
    return polyview_loss(z, tau, "geometric", "view_pairs", **candidates)


def _views(k: int, m: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(k, m, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def multicrop_reference(z: torch.Tensor, tau: float) -> torch.Tensor:
    """NT-Xent on every ordered view pair (a, b), one anchor at a time."""
    u = nnf.normalize(z, dim=-1)
    k, m, _ = z.shape
    losses = []
    for i in range(k):
        for a in range(m):
            for b in range(m):
                if a == b:
                    continue
                logits = [u[i, a] @ u[i, b]]
                logits += [u[i, a] @ u[j, v] for j in range(k) if j != i for v in (a, b)]
                logits = torch.stack(logits) / tau
                losses.append(logits.logsumexp(0) - logits[0])
    return torch.stack(losses).mean()


@pytest.mark.parametrize(("k", "m"), [(2, 2), (5, 3), (4, 5)])
def test_multicrop_matches_loop_reference(k: int, m: int) -> None:
    z = _views(k, m, 6)
    torch.testing.assert_close(multicrop_loss(z, 0.3), multicrop_reference(z, 0.3))
    loss = build_objective("multicrop", ObjectiveContext(0.3, m, k), **ALL_VIEWS)(
        z, torch.arange(k)
    )
    torch.testing.assert_close(loss, multicrop_reference(z, 0.3))


def test_multicrop_with_candidates_from_other_processes() -> None:
    # the rows [offset, offset + K) of the candidates are the anchors themselves: the loss on
    # those anchors is the single-process loss restricted to them
    z = _views(6, 3, 4)
    local = z[2:4]
    per_anchor = multicrop_loss(local, 0.5, candidates=z, offset=2)
    reference = torch.stack(
        [multicrop_loss(z[i : i + 1], 0.5, candidates=z, offset=i) for i in range(6)]
    )
    torch.testing.assert_close(per_anchor, reference[2:4].mean())
    torch.testing.assert_close(reference.mean(), multicrop_loss(z, 0.5))


def test_simclr_multicrop_arithmetic_geometric_agree_at_two_views() -> None:
    # at M = 2 there is one view pair: the four all-view losses are NT-Xent (docs/polyview.md)
    z = _views(7, 2, 5).float()
    ctx = ObjectiveContext(temperature=0.2, views=2, dataset_size=7)
    idx = torch.arange(7)
    values = [
        build_objective(n, ctx, **ALL_VIEWS)(z, idx)
        for n in ("multicrop", "arithmetic", "geometric")
    ]
    simclr = build_objective("simclr", ctx)(z, idx)
    for value in values:
        torch.testing.assert_close(value, simclr)
    torch.testing.assert_close(simclr, polyview_loss(z, 0.2, "geometric"))


def test_cosine_scores_shape_and_scale() -> None:
    z = _views(3, 4, 5)
    s = cosine_scores(z, 0.5)
    assert s.shape == (3, 4, 3, 4)
    # a view against itself: cosine 1 over tau
    torch.testing.assert_close(
        s.diagonal(dim1=0, dim2=2).diagonal(dim1=0, dim2=1), 2 * torch.ones(3, 4, dtype=s.dtype)
    )


@pytest.mark.parametrize("name", TRAINABLE)
def test_every_objective_gives_a_finite_loss_and_gradient(name: str) -> None:
    m = 2 if name == "simclr" else 3
    ctx = ObjectiveContext(temperature=0.2, views=m, dataset_size=10)
    objective = build_objective(name, ctx, **({"alpha": 8.0} if name == "eqco" else {}))
    z = _views(6, m, 8).float().requires_grad_()
    loss = objective(z, torch.arange(6))
    loss.backward()
    assert loss.shape == ()
    assert math.isfinite(float(loss.detach()))
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_bound_objectives_are_minus_the_estimate_of_the_cosine_scores() -> None:
    from mibounds import polyview

    z = _views(5, 3, 4).float()
    s = cosine_scores(z, 0.2)
    ctx = ObjectiveContext(temperature=0.2, views=3, dataset_size=5)
    idx = torch.arange(5)
    # the same-view readings train through polyview_loss: log K minus the bound on S
    for name in ("arithmetic", "geometric"):
        loss = build_objective(name, ctx)(z, idx)
        torch.testing.assert_close(loss, math.log(5) - getattr(polyview, name)(s))
    torch.testing.assert_close(
        build_objective("multicrop", ctx)(z, idx), math.log(5) - polyview.multicrop(s)
    )
    # the all-view readings: log(1 + M(K - 1)) minus the all-view estimate on S
    loss = build_objective("arithmetic", ctx, **ALL_VIEWS)(z, idx)
    torch.testing.assert_close(loss, math.log(13) - polyview.arithmetic(s, negatives="all_views"))
    # a pairwise bound: minus its average over the view pairs
    torch.testing.assert_close(build_objective("infonce", ctx)(z, idx), -polyview.multicrop(s))
    nwj = build_objective("multicrop", ctx, bound="nwj")(z, idx)
    torch.testing.assert_close(nwj, build_objective("nwj", ctx)(z, idx))
    # the loss log K - I_SS is a cross-entropy: the bound is at most log K
    ss = build_objective("sufficient_statistics", ctx, normalize=True)(z, idx)
    assert -float(ss) <= math.log(5) + 1e-6


def test_mine_state_is_saved_and_restored() -> None:
    ctx = ObjectiveContext(temperature=0.2, views=3, dataset_size=5)
    a, b = build_objective("mine", ctx), build_objective("mine", ctx)
    a(_views(5, 3, 4).float(), torch.arange(5))
    assert int(a.state_dict()["loss.state.steps"]) == 1
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(
        b.state_dict()["loss.state.log_partition"], a.state_dict()["loss.state.log_partition"]
    )


def test_sogclr_entry_keeps_one_partition_per_training_item() -> None:
    # two steps through the registry against sogclr_loss with the state threaded by hand: the
    # first visit uses the batch partition, the second mixes with gamma
    ctx = ObjectiveContext(temperature=0.2, views=3, dataset_size=12)
    objective = build_objective("sogclr", ctx, gamma=0.5)
    idx = torch.tensor([7, 2, 11, 0, 5])
    log_u, visited = torch.zeros(5), torch.zeros(5, dtype=torch.bool)
    for seed in (0, 1):
        z = _views(5, 3, 4, seed).float()
        expected, log_u = sogclr_loss(z, log_u, visited, 0.5, 0.2)
        visited = torch.ones(5, dtype=torch.bool)
        torch.testing.assert_close(objective(z, idx), expected)
    torch.testing.assert_close(objective.log_u[idx], log_u)
    assert objective.visited.sum() == 5 and objective.visited[idx].all()
    assert set(objective.state_dict()) == {"log_u", "visited"}


def test_barlow_entry_is_multiview_barlow_on_the_raw_embeddings() -> None:
    z = _views(6, 4, 5).float()
    ctx = ObjectiveContext(temperature=0.2, views=4, dataset_size=6)
    loss = build_objective("barlow_multiview", ctx, beta=0.3)(z, torch.arange(6))
    torch.testing.assert_close(loss, multiview_barlow(z, 0.3))
    default = build_objective("barlow_multiview", ctx)(z, torch.arange(6))
    torch.testing.assert_close(default, multiview_barlow(z, 0.0051))


def test_bad_sogclr_and_barlow_input() -> None:
    ctx = ObjectiveContext(temperature=0.2, views=2, dataset_size=10)
    z = _views(4, 2, 3).float()
    sogclr = build_objective("sogclr", ctx)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, n\) = \[0, 10\).*\[3, 10\]"):
        sogclr(z, torch.tensor([3, 4, 5, 10]))
    with pytest.raises(ValueError, match="needs the dataset indices"):
        sogclr(z, None)
    assert not sogclr.visited.any()  # a refused batch stores nothing
    with pytest.raises(ValueError, match=r"n \(the dataset size\) must be an integer >= 2"):
        build_objective("sogclr", ObjectiveContext(views=2))
    with pytest.raises(ValueError, match=r"gamma must be a number in \(0, 1\], got 1.5"):
        build_objective("sogclr", ctx, gamma=1.5)
    with pytest.raises(ValueError, match=r"beta must be a number in \[0, inf\), got -1\.0"):
        build_objective("barlow_multiview", ctx, beta=-1.0)


def test_params_override_defaults_and_unknown_params_fail() -> None:
    ctx = ObjectiveContext(temperature=0.2, views=3, dataset_size=5)
    z = _views(5, 3, 4).float()
    clipped = build_objective("smile", ctx, clip=0.1)(z, torch.arange(5))
    default = build_objective("smile", ctx)(z, torch.arange(5))
    assert not torch.allclose(clipped, default)
    with pytest.raises(ValueError, match="'simclr' got unknown parameter 'beta'"):
        build_objective("simclr", ObjectiveContext(views=2), beta=1.0)


@pytest.mark.parametrize("name", ["arithmetic", "geometric", "multicrop", "sufficient_statistics"])
def test_polyview_objectives_reject_one_view(name: str) -> None:
    with pytest.raises(ValueError, match=r"needs M >= 2 views per sample, got M = 1"):
        build_objective(name, ObjectiveContext(views=1))


def test_simclr_needs_exactly_two_views_and_names_are_checked() -> None:
    with pytest.raises(ValueError, match=r"2 <= M <= 2.*got M = 4"):
        build_objective("simclr", ObjectiveContext(views=4))
    with pytest.raises(ValueError, match=r"unknown objective 'simclr-v3'.*did you mean 'simclr'"):
        build_objective("simclr-v3", ObjectiveContext())
    with pytest.raises(ValueError, match="already in the catalogue"):
        register(Entry("simclr", "dup", "embeddings", "none", None, "global_batch"))
