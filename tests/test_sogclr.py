"""Tests of mibounds.sogclr: SogCLR (Yuan et al. 2022, Algorithm 1) against loop references, its
gamma = 1 identity with the decoupled InfoNCE gradient, the per-item state (only seen indices move,
checkpoint and resume, duplicates, processes kept consistent through the gather hook), the moving
average tracking the whole-dataset partition, the global estimate not being a bound, and bad
input."""

from __future__ import annotations

import functools
import io
import math
import threading

import pytest
import torch
import torch.nn.functional as nnf

from mibounds.bounds import infonce
from mibounds.sogclr import GlobalContrastive, SogCLRLoss, global_contrastive, sogclr_loss

TIGHT = {"rtol": 1e-10, "atol": 1e-12}  # float64 against float64 loop references


def randn(*shape: int, seed: int, requires_grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(requires_grad)


def correlated_views(k: int, m: int, d: int, seed: int) -> torch.Tensor:
    """Views of one sample share a component, so positives score above negatives."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(k, 1, d, generator=g, dtype=torch.float64)
    return (common + 0.7 * torch.randn(k, m, d, generator=g, dtype=torch.float64)).requires_grad_()


# ------------------------------------------------------------------------- loop references


def ref_pairwise(scores, log_u_old, visited, gamma, offset=0):
    """Loop SogCLR step on pairwise scores (K, N): (value, surrogate, new log u per anchor)."""
    k, n = scores.shape
    values, surrogates, new = [], [], []
    for i in range(k):
        p = offset + i
        negs = [j for j in range(n) if j != p]
        g = sum(torch.exp(scores[i, j].detach()) for j in negs) / len(negs)
        u = g if not visited[i] else (1 - gamma) * math.exp(log_u_old[i]) + gamma * g
        values.append(scores[i, p].detach() - torch.log(u))
        weighted = sum(torch.exp(scores[i, j].detach()) / u * scores[i, j] for j in negs)
        surrogates.append(scores[i, p] - weighted / len(negs))
        new.append(float(torch.log(u)))
    return torch.stack(values).mean(), torch.stack(surrogates).mean(), new


def ref_decoupled_infonce(scores, offset=0):
    """Loop decoupled InfoNCE estimate: mean_i [s_ip - log mean_{j != p} exp(s_ij)]."""
    k, n = scores.shape
    terms = []
    for i in range(k):
        p = offset + i
        negs = torch.stack([scores[i, j] for j in range(n) if j != p])
        terms.append(scores[i, p] - (torch.logsumexp(negs, 0) - math.log(n - 1)))
    return torch.stack(terms).mean()


def ref_multiview(z, log_u_old, visited, gamma, tau, candidates=None, offset=0):
    """Loop SogCLR step on views (K, M, D): (loss value, surrogate loss, new log u per item)."""
    c = z if candidates is None else candidates
    k, m, _ = z.shape
    n = c.shape[0]
    zn, cn = nnf.normalize(z, dim=-1), nnf.normalize(c, dim=-1)
    values, surrogates, new = [], [], []
    for i in range(k):
        p = offset + i
        u_views = []
        for a in range(m):
            pos = sum(zn[i, a] @ cn[p, b] / tau for b in range(m) if b != a) / (m - 1)
            negs = [zn[i, a] @ cn[j, b] / tau for j in range(n) if j != p for b in range(m)]
            g = sum(torch.exp(s.detach()) for s in negs) / len(negs)
            u = g if not visited[i] else (1 - gamma) * math.exp(log_u_old[i]) + gamma * g
            values.append(-pos.detach() + torch.log(u))
            surrogates.append(-pos + sum(torch.exp(s.detach()) / u * s for s in negs) / len(negs))
            u_views.append(float(u))
        new.append(math.log(sum(u_views) / m))
    return torch.stack(values).mean(), torch.stack(surrogates).mean(), new


def ref_decoupled_multiview(z, tau):
    """Loop decoupled multi-view loss: mean_{i,a} [-mean_{b!=a} S_iaib + log mean_neg e^S]."""
    k, m, _ = z.shape
    zn = nnf.normalize(z, dim=-1)
    terms = []
    for i in range(k):
        for a in range(m):
            pos = torch.stack([zn[i, a] @ zn[i, b] / tau for b in range(m) if b != a]).mean()
            negs = torch.stack(
                [zn[i, a] @ zn[j, b] / tau for j in range(k) if j != i for b in range(m)]
            )
            terms.append(-pos + torch.logsumexp(negs, 0) - math.log(len(negs)))
    return torch.stack(terms).mean()


def grad_of(f, x):
    (g,) = torch.autograd.grad(f, x)
    return g


# ------------------------------------------------------------------------- gamma = 1: InfoNCE


@pytest.mark.parametrize("gamma", [1.0, 0.9])  # 0.9: the first visit uses gamma = 1
@pytest.mark.parametrize(("k", "n", "offset"), [(2, 2, 0), (5, 5, 0), (4, 9, 3)])
def test_whole_dataset_first_visit_gradient_is_decoupled_infonce(gamma, k, n, offset):
    """docs/sogclr.md: with gamma = 1 and the whole dataset in one batch, u_i is the minibatch
    partition over the in-batch negatives, so the surrogate's gradient is InfoNCE's with the
    positive decoupled from the negatives; the value is the decoupled InfoNCE estimate."""
    scores = randn(k, n, seed=k + n, requires_grad=True)
    module = GlobalContrastive(k, gamma=gamma).double()
    estimate = module(scores, torch.arange(k), offset=offset)
    expected = ref_decoupled_infonce(scores, offset)
    torch.testing.assert_close(estimate, expected, **TIGHT)
    torch.testing.assert_close(grad_of(estimate, scores), grad_of(expected, scores), **TIGHT)


@pytest.mark.parametrize("m", [2, 3])
def test_multiview_first_visit_is_decoupled_multiview_loss(m):
    z = correlated_views(4, m, 5, seed=m)
    loss = SogCLRLoss(4, temperature=0.5, gamma=0.9).double()(z, torch.arange(4))
    expected = ref_decoupled_multiview(z, 0.5)
    torch.testing.assert_close(loss, expected, **TIGHT)
    torch.testing.assert_close(grad_of(loss, z), grad_of(expected, z), **TIGHT)


# ------------------------------------------------------------------------- later visits


def test_pairwise_steps_match_loop_reference():
    """Three steps over overlapping index sets: value, gradient and state against the loop."""
    n, gamma = 7, 0.8
    module = GlobalContrastive(n, gamma=gamma).double()
    state = {"log_u": [0.0] * n, "visited": [False] * n}
    for step, idx in enumerate([[0, 1, 2, 3], [2, 3, 4, 5, 6], [6, 0, 3]]):
        scores = randn(len(idx), len(idx), seed=10 + step, requires_grad=True)
        estimate = module(scores, torch.tensor(idx))
        value, surrogate, new = ref_pairwise(
            scores,
            [state["log_u"][i] for i in idx],
            [state["visited"][i] for i in idx],
            gamma,
        )
        torch.testing.assert_close(estimate, value, **TIGHT)
        torch.testing.assert_close(grad_of(estimate, scores), grad_of(surrogate, scores), **TIGHT)
        for i, v in zip(idx, new, strict=True):
            state["log_u"][i], state["visited"][i] = v, True
        torch.testing.assert_close(
            module.log_u, torch.tensor(state["log_u"], dtype=torch.float64), **TIGHT
        )
        assert module.visited.tolist() == state["visited"]


def test_multiview_steps_match_loop_reference():
    n, m, gamma, tau = 6, 3, 0.7, 0.3
    module = SogCLRLoss(n, temperature=tau, gamma=gamma).double()
    state = {"log_u": [0.0] * n, "visited": [False] * n}
    for step, idx in enumerate([[0, 1, 2], [1, 2, 3, 4], [5, 0, 2]]):
        z = correlated_views(len(idx), m, 4, seed=20 + step)
        loss = module(z, torch.tensor(idx))
        value, surrogate, new = ref_multiview(
            z,
            [state["log_u"][i] for i in idx],
            [state["visited"][i] for i in idx],
            gamma,
            tau,
        )
        torch.testing.assert_close(loss, value, **TIGHT)
        torch.testing.assert_close(grad_of(loss, z), grad_of(surrogate, z), **TIGHT)
        for i, v in zip(idx, new, strict=True):
            state["log_u"][i], state["visited"][i] = v, True
        torch.testing.assert_close(
            module.log_u, torch.tensor(state["log_u"], dtype=torch.float64), **TIGHT
        )


def official_form_m2(h1, h2, u_old, first, gamma, tau):
    """SogCLR's published M = 2 form (Yuan et al. 2022 code): unscaled cosine logits, positive
    plus the two blocks [a->b, a->a] with exp(l / tau) weights over 2(B - 1) negatives, the two
    directions summed, u stored as the mean of the two directions' updates."""
    h1, h2 = nnf.normalize(h1, dim=1), nnf.normalize(h2, dim=1)
    b = h1.shape[0]
    eye = torch.eye(b, dtype=torch.bool)
    neg = torch.cat([~eye, ~eye], 1)
    gamma = torch.where(first, 1.0, torch.tensor(gamma, dtype=torch.float64))[:, None]
    loss, us = 0.0, []
    for anchor, other in ((h1, h2), (h2, h1)):
        logits = torch.cat([anchor @ other.T, anchor @ anchor.T], 1)
        g = (torch.exp(logits / tau) * neg).sum(1, keepdim=True) / (2 * (b - 1))
        u = (1 - gamma) * u_old[:, None] + gamma * g
        weights = (torch.exp(logits / tau) * neg / u).detach()
        loss = loss + (-logits.diagonal() + (weights * logits).sum(1) / (2 * (b - 1)))
        us.append(u.squeeze(1).detach())
    return loss.mean(), (us[0] + us[1]) / 2


def test_m2_matches_the_published_form_up_to_two_tau():
    """At M = 2 our loss's gradient is the official code's divided by 2 tau (logits over tau,
    anchors averaged rather than directions summed), and the stored u are the same."""
    tau, gamma, b = 0.2, 0.9, 5
    module = SogCLRLoss(b, temperature=tau, gamma=gamma).double()
    u_old = torch.zeros(b, dtype=torch.float64)
    first = torch.ones(b, dtype=torch.bool)
    for step in range(2):
        z = correlated_views(b, 2, 6, seed=30 + step)
        ours = module(z, torch.arange(b))
        official, u_old = official_form_m2(z[:, 0], z[:, 1], u_old, first, gamma, tau)
        first = torch.zeros(b, dtype=torch.bool)
        g_ours, g_official = grad_of(ours, z), grad_of(official, z)
        torch.testing.assert_close(2 * tau * g_ours, g_official, **TIGHT)
        torch.testing.assert_close(module.u, u_old, **TIGHT)


# ------------------------------------------------------------------------- state


@pytest.mark.parametrize("kind", ["pairwise", "views"])
def test_u_moves_only_for_the_indices_seen(kind):
    n, idx = 10, torch.tensor([7, 2, 5])
    module = GlobalContrastive(n) if kind == "pairwise" else SogCLRLoss(n)
    before = module.log_u.clone()
    x = randn(3, 3, seed=1) if kind == "pairwise" else randn(3, 2, 4, seed=1)
    module(x.float(), idx)
    seen = torch.zeros(n, dtype=torch.bool)
    seen[idx] = True
    assert torch.equal(module.visited, seen)
    assert torch.equal(module.log_u[~seen], before[~seen])
    assert bool((module.log_u[seen] != before[seen]).all())


def test_checkpoint_restores_u_exactly_and_resumes_identically():
    n = 8
    trained = SogCLRLoss(n, temperature=0.2, gamma=0.9)
    for step in range(3):
        trained(correlated_views(4, 3, 5, seed=step).float(), torch.arange(step, step + 4) % n)
    buffer = io.BytesIO()
    torch.save(trained.state_dict(), buffer)
    buffer.seek(0)
    resumed = SogCLRLoss(n, temperature=0.2, gamma=0.9)
    resumed.load_state_dict(torch.load(buffer))
    assert set(resumed.state_dict()) == {"log_u", "visited"}
    assert torch.equal(resumed.log_u, trained.log_u)
    assert torch.equal(resumed.visited, trained.visited)
    z = correlated_views(4, 3, 5, seed=99).float()
    idx = torch.tensor([1, 4, 6, 7])
    assert torch.equal(resumed(z, idx), trained(z, idx))
    assert torch.equal(resumed.log_u, trained.log_u)


def test_duplicate_indices_store_the_mean_of_their_log_u_updates():
    scores = randn(4, 4, seed=3)
    module = GlobalContrastive(5).double()
    module(scores, torch.tensor([1, 3, 1, 0]))
    _, new = global_contrastive(scores, torch.zeros(4), torch.zeros(4, dtype=torch.bool))
    new = new.tolist()
    expected = torch.tensor([new[3], (new[0] + new[2]) / 2, 0.0, new[1], 0.0], dtype=torch.float64)
    torch.testing.assert_close(module.log_u, expected, **TIGHT)


def test_gamma_zero_evaluates_with_the_stored_partition():
    """gamma = 0 reads u without moving it: the estimate is mean_i (s_ii - log u_i) exactly,
    and under no_grad a stale u gives no NaN from the gradient surrogate."""
    module = GlobalContrastive(4).double()
    module(randn(4, 4, seed=4), torch.arange(4))
    scores = randn(4, 4, seed=5) * 30  # far from the stored u: large weights
    with torch.no_grad():
        estimate, log_u = global_contrastive(
            scores, module.log_u, module.visited, gamma=0.0, validate_args=True
        )
    torch.testing.assert_close(log_u, module.log_u, rtol=0, atol=0)
    torch.testing.assert_close(estimate, (scores.diagonal() - module.log_u).mean(), **TIGHT)


def test_eval_mode_reads_u_without_moving_it():
    """eval(): the global estimate with the stored u (gamma = 0), no state written."""
    module = GlobalContrastive(6).double()
    module(randn(4, 4, seed=13), torch.tensor([0, 1, 2, 3]))
    stored_log_u, stored_visited = module.log_u.clone(), module.visited.clone()
    module.eval()
    scores, idx = randn(3, 3, seed=14), torch.tensor([3, 1, 5])  # item 5 never visited
    estimate = module(scores, idx)
    assert torch.equal(module.log_u, stored_log_u)
    assert torch.equal(module.visited, stored_visited)
    own = torch.eye(3, dtype=torch.bool)
    batch_log_g = scores.masked_fill(own, -math.inf).logsumexp(1) - math.log(2)
    log_u = torch.stack([stored_log_u[3], stored_log_u[1], batch_log_g[2]])
    torch.testing.assert_close(estimate, (scores.diagonal() - log_u).mean(), **TIGHT)


@pytest.mark.parametrize("kind", ["pairwise", "views"])
def test_batch_shape_holds_independent_states(kind):
    """batch_shape=(R,): R seeds, each with its own dataset state, in one call; the same values,
    gradients and state as R separate modules."""
    r, n, k = 3, 7, 4
    if kind == "pairwise":
        make = functools.partial(GlobalContrastive, n, 0.8)
        x = randn(r, k, k, seed=15, requires_grad=True)
    else:
        make = functools.partial(SogCLRLoss, n, 0.3, 0.8)
        x = randn(r, k, 2, 3, seed=15, requires_grad=True)
    stacked = make(batch_shape=(r,)).double()
    single = [make().double() for _ in range(r)]
    g = torch.Generator().manual_seed(16)
    for _ in range(3):
        idx = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(r)])
        out = stacked(x, idx)
        assert out.shape == (r,)
        expected = torch.stack([single[b](x[b], idx[b]) for b in range(r)])
        torch.testing.assert_close(out, expected, **TIGHT)
        torch.testing.assert_close(grad_of(out.sum(), x), grad_of(expected.sum(), x), **TIGHT)
    torch.testing.assert_close(stacked.log_u, torch.stack([m.log_u for m in single]), **TIGHT)
    assert torch.equal(stacked.visited, torch.stack([m.visited for m in single]))


# ------------------------------------------------------------------------- multi-process


class ThreadGather:
    """An all-gather between threads standing in for processes: concatenates every rank's
    tensor along dim 0 in rank order; the local part keeps its graph, as a differentiable
    all-gather does."""

    def __init__(self, world: int) -> None:
        self.slots: list[torch.Tensor | None] = [None] * world
        self.barrier = threading.Barrier(world, timeout=30)

    def hook(self, rank: int):
        def gather(t: torch.Tensor) -> tuple[torch.Tensor, int]:
            self.slots[rank] = t.detach()
            self.barrier.wait()
            parts = list(self.slots)
            parts[rank] = t
            offset = sum(p.shape[0] for p in parts[:rank])
            self.barrier.wait()  # nobody overwrites a slot before everyone has read it
            return torch.cat(parts), offset

        return gather


def run_ranks(modules, inputs):
    """Run modules[r](*inputs[r]) on one thread per rank; return the outputs in rank order."""
    out, errors = [None] * len(modules), []

    def work(r):
        try:
            out[r] = modules[r](*inputs[r])
        except Exception as e:  # surfaced in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(r,)) for r in range(len(modules))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return out


def test_processes_share_negatives_and_hold_the_same_u():
    """Two ranks with a gather hook give the single-process result on the concatenated batch:
    the same loss (mean over ranks) and the same u on every rank, over two steps."""
    n, world, k = 12, 2, 3
    comm = ThreadGather(world)
    ranks = [
        SogCLRLoss(n, temperature=0.3, gamma=0.9, gather=comm.hook(r)).double()
        for r in range(world)
    ]
    single = SogCLRLoss(n, temperature=0.3, gamma=0.9).double()
    for step, order in enumerate([torch.arange(6), torch.tensor([5, 9, 1, 11, 0, 7])]):
        z = correlated_views(world * k, 3, 4, seed=40 + step).detach()
        local = [(z[r * k : (r + 1) * k], order[r * k : (r + 1) * k]) for r in range(world)]
        losses = run_ranks(ranks, local)
        expected = single(z, order)
        torch.testing.assert_close(sum(losses) / world, expected, **TIGHT)
        for module in ranks:
            torch.testing.assert_close(module.log_u, single.log_u, **TIGHT)
            assert torch.equal(module.visited, single.visited)


def test_pairwise_processes_hold_the_same_u():
    n, world, k = 8, 2, 3
    comm = ThreadGather(world)
    ranks = [GlobalContrastive(n, gather=comm.hook(r)).double() for r in range(world)]
    single = GlobalContrastive(n).double()
    scores = randn(world * k, world * k, seed=6)
    order = torch.tensor([3, 0, 7, 5, 1, 2])

    def rank_call(r):
        return lambda: ranks[r](
            scores[r * k : (r + 1) * k], order[r * k : (r + 1) * k], offset=r * k
        )

    estimates = run_ranks([rank_call(r) for r in range(world)], [(), ()])
    expected = single(scores, order)
    torch.testing.assert_close(sum(estimates) / world, expected, **TIGHT)
    for module in ranks:
        torch.testing.assert_close(module.log_u, single.log_u, **TIGHT)


# ------------------------------------------------------------------------- what u estimates


def test_moving_average_tracks_the_whole_dataset_partition():
    """Over epochs with a fixed critic, u_i averages minibatch partitions that are unbiased for
    the whole-dataset partition Z_i = mean_{j != i} exp(S_ij), so with a small gamma log u_i
    approaches log Z_i: the 'global' in SogCLR.

    n = 48 items, K = 6, scores N(0, 0.5^2). A minibatch g_i (5 negatives) has a relative
    standard deviation of about 0.25; the moving average with gamma = 0.02 shrinks its variance by
    gamma / (2 - gamma) ~ 0.01, to ~0.025 relative, so every item lies well within 0.12 of
    log Z_i (> 4.5 sd), while the last minibatch partition (gamma = 1) is off by ~0.2 on average.
    """
    n, k, epochs = 48, 6, 300
    g = torch.Generator().manual_seed(7)
    S = 0.5 * torch.randn(n, n, generator=g, dtype=torch.float64)
    log_z = S.masked_fill(torch.eye(n, dtype=torch.bool), -math.inf).logsumexp(1) - math.log(n - 1)
    averaged, last_batch = GlobalContrastive(n, gamma=0.02).double(), GlobalContrastive(n, 1.0)
    last_batch.double()
    for _ in range(epochs):
        for idx in torch.randperm(n, generator=g).view(-1, k):
            averaged(S[idx][:, idx], idx, validate_args=False)
            last_batch(S[idx][:, idx], idx, validate_args=False)
    error = (averaged.log_u - log_z).abs()
    assert float(error.max()) < 0.12
    assert float((last_batch.log_u - log_z).abs().mean()) > 3 * float(error.mean())


def pair_critic(x: torch.Tensor, y: torch.Tensor, rho: float) -> torch.Tensor:
    """Exact log p(y|x)/p(y) for unit-variance pairs with correlation rho (docs/gaussian.md), d = 1:
    (..., K) x (..., K) -> (..., K, K)."""
    x, y = x.unsqueeze(-1), y.unsqueeze(-2)
    return -0.5 * math.log(1 - rho**2) + (rho * x * y - rho**2 * (x**2 + y**2) / 2) / (1 - rho**2)


def test_global_estimate_is_not_a_bound():
    """With the optimal critic the estimate's expectation is I - E log mean_{j != i} r_ij >= I
    (Jensen), so at small K it exceeds the true MI while InfoNCE stays below it.

    rho = 0.9, d = 1, I = 0.830 nats, K = 4, 4000 batches. The per-batch estimate has a standard
    deviation of about 1.4, so the mean's standard error is ~0.023; the mean (~1.69) is ~37 of
    them above I, and InfoNCE (<= log 4; ~0.56 on average) ~12 below it: 10 leaves room for seeds.
    """
    rho, k, batches = 0.9, 4, 4000
    mi = -0.5 * math.log(1 - rho**2)
    g = torch.Generator().manual_seed(8)
    x = torch.randn(batches, k, generator=g, dtype=torch.float64)
    y = rho * x + math.sqrt(1 - rho**2) * torch.randn(batches, k, generator=g, dtype=torch.float64)
    scores = pair_critic(x, y, rho)
    never = torch.zeros(batches, k, dtype=torch.bool)
    estimate, _ = global_contrastive(scores, torch.zeros(batches, k), never)
    se = float(estimate.std()) / math.sqrt(batches)
    assert float(estimate.mean()) > mi + 10 * se
    assert float(infonce(scores).mean()) < mi - 10 * se


# ------------------------------------------------------------------------- shapes and dtypes


def test_leading_dimensions_are_batches():
    scores = randn(3, 4, 6, seed=9)
    log_u, visited = randn(3, 4, seed=10), torch.tensor([[True, False, True, True]] * 3)
    estimate, new = global_contrastive(scores, log_u, visited, 0.5, offset=2)
    for b in range(3):
        e, nb = global_contrastive(scores[b], log_u[b], visited[b], 0.5, offset=2)
        torch.testing.assert_close(estimate[b], e, **TIGHT)
        torch.testing.assert_close(new[b], nb, **TIGHT)
    z = randn(2, 3, 2, 5, seed=11)
    loss, new = sogclr_loss(z, log_u[:2, :3], visited[:2, :3], 0.5)
    for b in range(2):
        lb, nb = sogclr_loss(z[b], log_u[b, :3], visited[b, :3], 0.5)
        torch.testing.assert_close(loss[b], lb, **TIGHT)
        torch.testing.assert_close(new[b], nb, **TIGHT)


def test_half_precision_is_computed_in_float32():
    z = randn(4, 2, 8, seed=12).float()
    loss32 = SogCLRLoss(4)(z, torch.arange(4))
    loss16 = SogCLRLoss(4)(z.half(), torch.arange(4))
    assert loss16.dtype == torch.float32
    torch.testing.assert_close(loss16, loss32, rtol=1e-2, atol=1e-2)  # fp16 input rounding


# ------------------------------------------------------------------------- bad input

BAD_MODULE_CALLS = {
    "index out of range": lambda: GlobalContrastive(4)(torch.zeros(3, 3), torch.tensor([0, 1, 4])),
    "negative index": lambda: SogCLRLoss(4)(torch.randn(3, 2, 4), torch.tensor([0, -1, 2])),
    "indices missing": lambda: SogCLRLoss(4)(torch.randn(3, 2, 4), None),
    "indices not a tensor": lambda: GlobalContrastive(4)(torch.zeros(2, 2), [0, 1]),
    "float indices": lambda: GlobalContrastive(4)(torch.zeros(2, 2), torch.tensor([0.0, 1.0])),
    "one index short": lambda: SogCLRLoss(4)(torch.randn(3, 2, 4), torch.tensor([0, 1])),
    "K < 2 scores": lambda: GlobalContrastive(4)(torch.zeros(1, 3), torch.tensor([0])),
    "K < 2 views": lambda: SogCLRLoss(4)(torch.randn(1, 2, 4), torch.tensor([0])),
    "M < 2": lambda: SogCLRLoss(4)(torch.randn(3, 1, 4), torch.tensor([0, 1, 2])),
    "scores not 2-D": lambda: GlobalContrastive(4)(torch.zeros(2, 2, 2), torch.tensor([0, 1])),
    "z not 3-D": lambda: SogCLRLoss(4)(torch.randn(2, 2), torch.tensor([0, 1])),
    "offset past the end": lambda: GlobalContrastive(4)(
        torch.zeros(2, 3), torch.tensor([0, 1]), offset=2
    ),
    "NaN scores": lambda: GlobalContrastive(4)(
        torch.tensor([[0.0, math.nan], [0.0, 0.0]]), torch.tensor([0, 1])
    ),
    "scores without the seed axis": lambda: GlobalContrastive(4, batch_shape=(2,))(
        torch.zeros(3, 3), torch.tensor([0, 1, 2])
    ),
    "indices without the seed axis": lambda: GlobalContrastive(4, batch_shape=(2,))(
        torch.zeros(2, 3, 3), torch.tensor([0, 1, 2])
    ),
    "gather with batch_shape": lambda: SogCLRLoss(4, gather=lambda t: (t, 0), batch_shape=(2,)),
    "gamma > 1": lambda: GlobalContrastive(4, gamma=1.5),
    "gamma < 0": lambda: SogCLRLoss(4, gamma=-0.1),
    "n < 2": lambda: GlobalContrastive(1),
    "temperature 0": lambda: SogCLRLoss(4, temperature=0.0),
    "log_u wrong shape": lambda: global_contrastive(
        torch.zeros(3, 3), torch.zeros(2), torch.zeros(3, dtype=torch.bool)
    ),
    "visited not bool": lambda: global_contrastive(
        torch.zeros(3, 3), torch.zeros(3), torch.zeros(3)
    ),
    "candidates mismatch": lambda: sogclr_loss(
        torch.randn(3, 2, 4),
        torch.zeros(3),
        torch.zeros(3, dtype=torch.bool),
        candidates=torch.randn(5, 3, 4),
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_MODULE_CALLS))
def test_bad_input_raises_value_error(name):
    with pytest.raises(ValueError):
        BAD_MODULE_CALLS[name]()


def test_error_messages_say_what_was_expected_and_what_came():
    with pytest.raises(ValueError, match=r"\[0, 4\).*\[0, 4\]"):
        GlobalContrastive(4)(torch.zeros(3, 3), torch.tensor([0, 1, 4]))
    with pytest.raises(ValueError, match=r"indices of shape \(3,\), got None"):
        SogCLRLoss(4)(torch.randn(3, 2, 4), None)
