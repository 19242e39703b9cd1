"""Tests of the Gaussian harness: configs and bad input, the batched trainer, pluggable data
sources and stateful objectives, and a quick poly-view reproduction with its findings."""

from __future__ import annotations

import math
import statistics

import pytest
import torch
from torch import Tensor, nn

from mibounds import bounds
from mibounds.catalogue import CATALOGUE, Entry, register
from mibounds.harness import (
    SOURCES,
    RunConfig,
    load_sweep,
    register_source,
    sweep_from_dict,
    train,
    true_mi,
)
from mibounds.harness.config import digest
from mibounds.harness.data import GaussianDataset
from mibounds.harness.sweep import pending
from mibounds.harness.trainer import StackedCritic, init_critic
from mibounds.reproductions import REPRODUCTIONS, grid_path, reproduce
from mibounds.reproductions.polyview_gaussian import polyview_findings
from mibounds.reproductions.report import bound_violations

# one torch thread: many tiny steps (conftest.single_thread)
pytestmark = pytest.mark.usefixtures("single_thread")


TINY = {"k": 8, "d": 2, "rho": 0.8, "steps": 12, "eval_batches": 4, "curve_every": 4}
TINY_CRITIC = {"hidden_dim": 16, "embed_dim": 8, "n_hidden": 1}


def tiny(**overrides) -> RunConfig:
    values = {**TINY, "critic_params": TINY_CRITIC, **overrides}
    return RunConfig(**values)


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"objective": "infonse"}, "unknown objective 'infonse' (did you mean 'infonce'?)"),
        ({"objective": "infonce", "critic": "seperable"}, "unknown critic 'seperable'"),
        ({"objective": "nwj", "m": 4}, "objective 'nwj' is pairwise"),
        ({"objective": "arithmetic"}, "needs M >= 2 views"),
        ({"objective": "infonce", "rho": 1.0}, "rho must lie in [0, 1)"),
        ({"objective": "infonce", "rho": -0.2}, "rho must lie in [0, 1)"),
        ({"objective": "infonce", "mi": 2.0}, "exactly one of rho"),
        ({"objective": "eqco"}, "'eqco' needs parameter 'alpha'"),
        ({"objective": "eqco", "objective_params": {"alpha": 0}}, "alpha must be a number in (0"),
        ({"objective": "eqco", "objective_params": {"alpha": True}}, "alpha must be a number"),
        ({"objective": "interpolated", "objective_params": {"alpha": 0}}, "alpha must be a number"),
        ({"objective": "smile", "objective_params": {"clip": -1}}, "clip must be a number in (0"),
        ({"objective": "mine", "objective_params": {"momentum": 1}}, "momentum must be a number"),
        ({"objective": "infonce", "critic_params": {"similarity": "l2"}}, "similarity must be one"),
        ({"objective": "infonce", "critic_params": {"temperature": 0}}, "temperature must be"),
        ({"objective": "smile", "objective_params": {"clipp": 3}}, "unknown parameter 'clipp'"),
        ({"objective": "infonce", "critic_params": {"width": 3}}, "critic 'separable' got unknown"),
        ({"objective": "infonce", "k": 1}, "k must be an integer >= 2"),
        ({"objective": "infonce", "source": "imagenet"}, "unknown data source 'imagenet'"),
        ({"objective": "multicrop", "m": 3, "objective_params": {"bound": "x"}}, "bound must be"),
        (
            {
                "objective": "multicrop",
                "m": 3,
                "objective_params": {"negatives": "all_views", "bound": "nwj"},
            },
            "takes no pairwise bound",
        ),
        (
            {"objective": "arithmetic", "m": 3, "objective_params": {"negatives": "x"}},
            "negatives must",
        ),
    ],
)
def test_bad_run_config_is_a_clear_error(values, message):
    with pytest.raises(ValueError) as err:
        RunConfig(**{"rho": 0.5, **values})
    assert message in str(err.value)


def test_staircase_steps_must_split_evenly():
    with pytest.raises(ValueError, match="multiple of the 5 mi_levels"):
        RunConfig(objective="infonce", mi_levels=(2, 4, 6, 8, 10), steps=12)


def sweep_dict(**overrides) -> dict:
    data = {
        "name": "t",
        "seeds": 2,
        "run": {**TINY, "critic": {"name": "separable", **TINY_CRITIC}},
        "grid": {"objective": ["infonce", {"name": "eqco", "alpha": 16}]},
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"grid": {"objective": []}}, "empty list: the grid is empty"),
        ({"grid": {"objectve": ["infonce"]}}, "unknown key 'objectve'"),
        ({"extra": 1}, "unknown key 'extra'"),
        ({"grid": {"objective": ["nwj"], "m": [2, 4]}}, "setting objective='nwj', m=2"),
        ({"grid": {"objective": ["infonce"], "rho": [0.5, 1.5]}}, "rho must lie in [0, 1)"),
        ({"seeds": []}, "no seeds"),
        ({"seeds": 0}, "seeds (a count) must be an integer >= 1"),
    ],
)
def test_bad_sweep_is_a_clear_error(change, message):
    with pytest.raises(ValueError) as err:
        sweep_from_dict(sweep_dict(**change))
    assert message in str(err.value)


def test_grid_expands_to_the_product_and_dedupes_a_union():
    grids = [
        {"objective": ["infonce", "nwj"], "k": [8, 16]},
        {"objective": ["infonce"], "k": [8, 32]},  # (infonce, 8) is in both: runs once
    ]
    sweep = sweep_from_dict(sweep_dict(grid=grids))
    assert [(s.objective, s.k) for s in sweep.settings] == [
        ("infonce", 8),
        ("infonce", 16),
        ("nwj", 8),
        ("nwj", 16),
        ("infonce", 32),
    ]
    assert sweep.n_runs == 10
    eqco = sweep_from_dict(sweep_dict()).settings[1]
    assert eqco.objective_params == (("alpha", 16),) and eqco.objective_label == "eqco(alpha=16)"


def test_a_grid_may_set_its_own_seeds_and_other_grids_keep_their_hash():
    grids = [
        {"objective": ["infonce"], "k": [8, 16]},
        {"objective": ["nwj"], "k": [8], "seeds": 1},
        {"objective": ["infonce"], "k": [16, 32], "seeds": [5]},  # (infonce, 16) is in both
    ]
    sweep = sweep_from_dict(sweep_dict(grid=grids))
    seeds = {(s.objective, s.k): sweep.seeds_of(s) for s in sweep.settings}
    assert seeds == {
        ("infonce", 8): (0, 1),
        ("infonce", 16): (0, 1, 5),  # the union of its two grids' seeds
        ("nwj", 8): (0,),
        ("infonce", 32): (5,),
    }
    assert sweep.n_runs == 2 + 3 + 1 + 1
    assert [len(seeds) for _, seeds in pending(sweep, done=set())] == [2, 3, 1, 1]
    # without per-grid seeds the hash is that of settings and seeds alone, as results files
    # written before this option was added recorded it
    plain = sweep_from_dict(sweep_dict())
    old_hash = digest({"settings": [s.key() for s in plain.settings], "seeds": [0, 1]})
    assert plain.setting_seeds == {} and plain.grid_hash == old_hash
    assert sweep.grid_hash != sweep_from_dict(sweep_dict(grid=grids[:1])).grid_hash


def test_toml_config_and_quick_overrides(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\nseeds = 3\n[run]\nk = 8\nd = 2\nrho = 0.5\nsteps = 40\n'
        '[grid]\nobjective = ["infonce", "js"]\n'
        "[quick]\nseeds = 1\nrun = {steps = 4, curve_every = 2}\n"
    )
    full, quick = load_sweep(path), load_sweep(path, quick=True)
    assert (full.seeds, full.settings[0].steps) == ((0, 1, 2), 40)
    assert (quick.seeds, quick.settings[0].steps) == ((0,), 4)
    assert full.grid_hash != quick.grid_hash
    path.write_text('name = "s"\nseeds = 1\nrun = {rho = 0.5}\nbogus = 1\n')
    with pytest.raises(ValueError, match="unknown key 'bogus'"):
        load_sweep(path)
    path.write_text("name = \n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_sweep(path)


def test_every_shipped_grid_is_valid_and_every_reproduction_has_one():
    configs = sorted(grid_path("polyview-gaussian").parent.glob("*.toml"))
    assert {p.stem for p in configs} >= set(REPRODUCTIONS)
    for path in configs:
        load_sweep(path)
        if "[quick]" in path.read_text():
            load_sweep(path, quick=True)


# ---------------------------------------------------------------------------- trainer


def test_record_fields_and_true_mi():
    config = tiny(objective="infonce")
    (record,) = train(config, [3])
    mi = -0.5 * 2 * math.log(1 - 0.8**2)  # d = 2, docs/gaussian.md#correlated-pairs
    assert record["seed"] == 3 and record["true_mi"] == pytest.approx(mi)
    assert record["gap"] == pytest.approx(mi - record["estimate_mean"])
    assert record["relative_mi"] == pytest.approx(mi / record["estimate_mean"])
    assert record["curve_step"] == [4, 8, 12] and len(record["curve_estimate"]) == 3
    assert record["estimate_sd"] > 0 and record["is_bound"] and record["diverged_step"] is None
    for key in ("wall_time_s", "torch_version", "device", "git_commit", "run_key"):
        assert key in record
    views = true_mi(tiny(objective="multicrop", m=4, rho=0.9, d=1))
    assert views["target"] == views["pairwise"] < views["one_vs_rest"]


@pytest.mark.parametrize("name", ["multicrop", "geometric", "arithmetic", "arithmetic_printed"])
def test_all_view_objectives_are_recorded_as_estimates_not_bounds(name):
    all_views = tiny(objective=name, m=3, objective_params={"negatives": "all_views"})
    (record,) = train(all_views, [0])
    assert not record["is_bound"] and record["objective_label"] == f"{name}(negatives=all_views)"
    if name != "arithmetic_printed":  # the same-view reading of the other three is a bound
        assert train(tiny(objective=name, m=3), [0])[0]["is_bound"]


@pytest.mark.parametrize(
    "config",
    [
        tiny(objective="infonce"),
        tiny(objective="mine"),  # stateful: one moving average per seed
        tiny(objective="sufficient_statistics", m=3),
        tiny(objective="arithmetic", m=3, critic="concat", critic_params={"hidden_dim": 8}),
    ],
    ids=["infonce", "mine", "sufficient_statistics", "arithmetic-concat"],
)
def test_batched_seeds_equal_each_seed_alone(config):
    together = train(config, [0, 1, 2])
    alone = train(config, [1])[0]
    # the same computation batched: only float rounding of the batched kernels differs
    assert together[1]["estimate_mean"] == pytest.approx(alone["estimate_mean"], abs=1e-5)
    assert together[1]["curve_estimate"] == pytest.approx(alone["curve_estimate"], abs=1e-5)
    assert together[0]["estimate_mean"] != pytest.approx(alone["estimate_mean"], abs=1e-4)


def test_stacked_critic_is_the_seeds_critics_side_by_side():
    config = tiny(objective="infonce", critic="concat", critic_params={"hidden_dim": 8})
    modules = [init_critic(config, s) for s in (4, 5)]
    stacked = StackedCritic(modules)
    x, y = torch.randn(2, 8, 2), torch.randn(2, 8, 2)
    scores = stacked(x, y)
    assert scores.shape == (2, 8, 8)
    for r, module in enumerate(modules):
        assert torch.allclose(scores[r], module(x[r], y[r]), atol=1e-6)
        assert torch.allclose(stacked.module(r)(x[r], y[r]), scores[r], atol=1e-6)


def test_a_critic_that_is_not_stackable_runs_under_vmap_with_the_same_numbers():
    class Cubic(nn.Module):
        """Scores (x^T W y)^3 with a raw parameter: correct alone, not written for stacking."""

        def __init__(self, seed: int) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(seed)
            self.weight = nn.Parameter(torch.randn(2, 2, generator=g))

        def forward(self, x, y):
            return ((x @ self.weight) @ y.mT) ** 3

    modules = [Cubic(s) for s in (1, 2)]
    stacked = StackedCritic(modules)
    assert not stacked.stackable
    x, y = torch.randn(2, 3, 8, 2), torch.randn(2, 3, 8, 2)  # an extra batch axis of 3
    scores = stacked(x, y)
    for r, module in enumerate(modules):
        torch.testing.assert_close(scores[r], module(x[r], y[r]))
    with pytest.raises(ValueError, match="leading seed axis of size R = 2"):
        stacked(x[:1], y[:1])


def test_pairwise_estimates_learn_and_eqco_passes_log_k():
    # MI = 3 nats > log 8: InfoNCE stays below log K, EqCo(alpha = 64) may exceed it. Medians
    # over 8 seeds: one short run is chaotic (a change in float rounding alone moved one EqCo
    # seed from 2.5 to 0.8 nats), while the medians sit ~1 nat apart (InfoNCE ~1.4, EqCo ~2.4)
    base = {"k": 8, "d": 2, "mi": 3.0, "steps": 150, "eval_batches": 20, "lr": 3e-3}
    infonce, eqco = (
        train(RunConfig(objective=o, objective_params=p, **base), range(8))
        for o, p in (("infonce", {}), ("eqco", {"alpha": 64}))
    )
    nce = [r["estimate_mean"] for r in infonce]
    assert max(nce) <= math.log(8) + 1e-6
    assert statistics.median(nce) > 1.0  # it learned: the untrained critic scores ~0
    assert statistics.median(r["estimate_mean"] for r in eqco) > statistics.median(nce) + 0.5
    assert not eqco[0]["is_bound"] and infonce[0]["is_bound"]


def test_divergence_is_recorded_per_seed_not_fatal():
    class Explodes:
        """An objective that is finite for seed 0 and -inf for seed 1 from step 3 on."""

        calls = 0

        def __call__(self, scores, *, validate_args):
            value = bounds.infonce(scores, validate_args=validate_args)
            Explodes.calls += 1
            if Explodes.calls > 3:
                seed_axis = torch.tensor([0.0, -math.inf]).view(2, *[1] * (value.dim() - 1))
                value = value + seed_axis
            return value

    register(Entry("test-explodes", "t", "scores", "pairwise", Explodes(), "global_batch"))
    try:
        records = train(tiny(objective="test-explodes"), [0, 1])
    finally:
        CATALOGUE.pop("test-explodes")
    assert records[0]["diverged_step"] is None and math.isfinite(records[0]["estimate_mean"])
    assert records[1]["diverged_step"] == 3


# ---------------------------------------------------------- pluggable source and objective


class CountsVisits(nn.Module):
    """InfoNCE that keeps per-seed, per-item state keyed by the batch's dataset indices."""

    def __init__(self, n: int, batch_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("visits", torch.zeros(*batch_shape, n, dtype=torch.long))

    def forward(self, scores: Tensor, indices: Tensor, *, validate_args: bool) -> Tensor:
        if self.training:
            self.visits.scatter_add_(1, indices, torch.ones_like(indices))
        return bounds.infonce(scores, validate_args=validate_args)


def test_finite_source_and_stateful_catalogue_entry_plug_in():
    made: list[CountsVisits] = []

    def state(params, batch_shape, n_items):
        made.append(CountsVisits(n_items, batch_shape))
        return made[-1]

    register_source("test-finite", GaussianDataset, {"n": 32}, finite=True)  # a third-party name
    visits = Entry(
        "test-visits", "t", "scores", "pairwise", None, "global_batch", state=state, per_item=True
    )
    register(visits)
    try:
        config = tiny(objective="test-visits", source="test-finite", source_params={"n": 32})
        records = train(config, [0, 1])
        with pytest.raises(ValueError, match="got unknown parameter 'size'"):
            tiny(objective="test-visits", source="test-finite", source_params={"size": 3})
        with pytest.raises(ValueError, match="needs a finite dataset source"):
            tiny(objective="test-visits")
    finally:
        SOURCES.pop("test-finite")
        CATALOGUE.pop("test-visits")
    # 12 steps of K = 8 over n = 32 items: three epochs, every item visited 3 times per seed
    assert torch.equal(made[0].visits, torch.full((2, 32), 3))
    assert all(math.isfinite(r["estimate_mean"]) for r in records)


# ------------------------------------------------------- quick reproduction in CI


QUICK_POLYVIEW = """
name = "polyview-ci"
seeds = 3
[run]
d = 1
k = 16
rho = 0.9
critic = {name = "separable", hidden_dim = 32, embed_dim = 8, n_hidden = 2}
steps = 250
lr = 3e-3
eval_batches = 40
curve_every = 25
[grid]
objective = ["multicrop", "geometric", "arithmetic", "sufficient_statistics"]
m = [2, 8]
"""


def test_quick_polyview_reproduction_findings(tmp_path):
    config = tmp_path / "polyview-ci.toml"
    config.write_text(QUICK_POLYVIEW)
    paths = reproduce("polyview-gaussian", config=config, out=tmp_path, progress=False)
    table = (tmp_path / "polyview_gaussian.md").read_text()
    assert (tmp_path / "polyview_gaussian.png").exists() and "Regenerate:" in table
    from mibounds.harness.results import load_results

    frame = load_results(paths[0])
    found = polyview_findings(frame, m=8)
    # Shidani et al. 2024: at M = 8 the one-vs-rest bounds beat Multi-Crop; the margin seen
    # here is ~0.15 nats against a seed sd of ~0.02, so 0.05 cannot be noise
    assert found["arithmetic_minus_multicrop"] > 0.05
    assert found["sufficient_statistics_minus_multicrop"] > 0.05
    # every bound below the MI it bounds, within 3 standard errors of the held-out mean
    assert bound_violations(frame).empty
    # Multi-Crop and Geometric PVC are the same number on every batch, so train identically
    mc = frame[frame["objective"] == "multicrop"].sort_values(["m", "seed"])["estimate_mean"]
    geo = frame[frame["objective"] == "geometric"].sort_values(["m", "seed"])["estimate_mean"]
    assert mc.to_numpy() == pytest.approx(geo.to_numpy(), abs=1e-4)


@pytest.mark.slow
def test_readme_quick_polyview_reproduction(tmp_path):
    """The README's command: ``mibounds reproduce polyview-gaussian --quick`` (a few minutes)."""
    paths = reproduce("polyview-gaussian", quick=True, out=tmp_path, progress=False)
    from mibounds.harness.results import load_results

    frame = load_results(paths[0])
    main = frame[(frame["k"] == 16) & (frame["rho"] == 0.9)]
    found = polyview_findings(main, m=8)
    assert found["arithmetic_minus_multicrop"] > 0.05
    assert found["sufficient_statistics_minus_multicrop"] > 0.05
    assert bound_violations(frame).empty
    assert {p.name for p in paths} >= {"polyview_gaussian.png", "polyview_gaussian_k.png"}


@pytest.mark.slow
def test_quick_eqco_and_staircase_reproductions(tmp_path):
    from mibounds.harness.results import load_results

    frame = load_results(reproduce("eqco-toy", quick=True, out=tmp_path / "e", progress=False)[0])
    at = frame.groupby(["objective", "k", "mi"])["estimate_mean"].mean()
    # EqCo(alpha = 512) passes InfoNCE's log(K + 1) ceiling at K = 64 negatives, MI = 10 ...
    assert at[("eqco", 65, 10.0)] > math.log(65) + 1.0 > at[("infonce", 65, 10.0)]
    # ... and is InfoNCE itself at K = 512 negatives (alpha = K - 1)
    assert at[("eqco", 513, 10.0)] == pytest.approx(at[("infonce", 513, 10.0)], abs=1e-4)
    stairs = load_results(
        reproduce("poole-staircase", quick=True, out=tmp_path / "s", progress=False)[0]
    )
    assert len(stairs) == 12
    infonce = stairs[stairs["objective"] == "infonce"]
    assert (infonce["curve_estimate"].map(max) <= math.log(64) + 1e-4).all()
