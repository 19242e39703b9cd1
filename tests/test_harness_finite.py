"""Tests of the harness's finite-dataset mode: the ``gaussian_finite`` source, the per-item
``sogclr`` objective, the held-out InfoNCE readouts and the quick ``sogclr-gaussian``
reproduction with its findings."""

from __future__ import annotations

import math

import pytest
import torch

from mibounds.catalogue import CATALOGUE, Entry, entry, register
from mibounds.harness import SOURCES, RunConfig, sweep_from_dict, train
from mibounds.harness.objectives import build_objective
from mibounds.harness.results import load_results
from mibounds.reproductions import reproduce
from mibounds.reproductions.report import bound_violations
from mibounds.reproductions.sogclr_gaussian import sogclr_findings, sogclr_quantities
from mibounds.sogclr import GlobalContrastive

# one torch thread: many tiny steps (conftest.single_thread)
pytestmark = pytest.mark.usefixtures("single_thread")


BOUNDED = {"hidden_dim": 16, "embed_dim": 8, "n_hidden": 1, "similarity": "cosine"}


def finite(n: int = 12, **overrides) -> RunConfig:
    values = {
        "objective": "infonce",
        "k": 4,
        "d": 2,
        "rho": 0.8,
        "steps": 12,
        "eval_batches": 4,
        "curve_every": 4,
        "critic_params": {**BOUNDED, "temperature": 0.5},
        "source": "gaussian_finite",
        "source_params": {"n": n},
        **overrides,
    }
    return RunConfig(**values)


def build(config: RunConfig, seeds=(0, 1)):
    return SOURCES[config.source].build(config, seeds, torch.device("cpu"))


# ------------------------------------------------------------------------------ the source


@pytest.mark.parametrize("m", [None, 3], ids=["pairs", "views"])
def test_every_item_once_per_epoch_and_rows_match_their_indices(m):
    config = finite(m=m, objective="arithmetic" if m else "infonce")
    source = build(config)
    per_epoch = source.n_items // config.k  # 3 batches of 4 items
    seen_rows: dict[tuple[int, int], torch.Tensor] = {}
    orders = []
    for epoch in range(3):
        batches = [source.train_batch(epoch * per_epoch + b) for b in range(per_epoch)]
        idx = torch.cat([b.indices for b in batches], dim=1)  # (R, n)
        assert idx.shape == (2, 12) and idx.dtype == torch.long
        for r in range(2):
            assert sorted(idx[r].tolist()) == list(range(12))  # each item exactly once
        orders.append(idx)
        for batch in batches:
            assert batch.x.shape == ((2, 4, 3, 2) if m else (2, 4, 2))
            assert (batch.y is None) == (m is not None)
            for r in range(2):
                rows = source.data[0][r, batch.indices[r]]
                assert torch.equal(batch.x[r], rows)  # row i is item indices[i]
                for i, item in enumerate(batch.indices[r].tolist()):
                    first = seen_rows.setdefault((r, item), batch.x[r, i])
                    assert torch.equal(first, batch.x[r, i])  # the same data every epoch
    # a fresh permutation per epoch (12! orders: equal ones would be a bug) and per seed
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[1], orders[2])
    assert not torch.equal(orders[0][0], orders[0][1])


def test_same_seed_same_data_whatever_seeds_train_beside_it():
    config = finite()
    pair, alone = build(config, (0, 1)), build(config, (1,))
    for p, a in zip(pair.data, alone.data, strict=True):
        assert torch.equal(p[1], a[0])
    assert not torch.equal(pair.data[0][0], pair.data[0][1])  # seeds differ
    for step in (0, 4, 7):
        together, single = pair.train_batch(step), alone.train_batch(step)
        assert torch.equal(together.indices[1], single.indices[0])
        assert torch.equal(together.x[1], single.x[0])
    # random access: any step gives the same batch without replaying the earlier ones
    assert torch.equal(build(config, (1,)).train_batch(7).x, single.x)


def test_held_out_batches_are_fresh_draws_not_items():
    config = finite()
    source = build(config)
    held = source.eval_batches(3)
    assert held.x.shape == (2, 3, 4, 2) and held.indices is None
    items = source.data[0].flatten(0, 1)
    assert not (held.x.flatten(0, 2)[:, None] == items[None]).all(-1).any()
    # a readout stream per batch size k, apart from the default one even at k = K ...
    other = build(config).eval_batches(3, k=8)
    assert other.x.shape == (2, 3, 8, 2)
    assert not torch.equal(build(config).eval_batches(1, k=4).x, build(config).eval_batches(1).x)
    # ... and the same rows for every method, dataset and source at one MI
    sogclr_k8 = RunConfig(
        objective="sogclr", k=8, d=2, rho=0.8, source="gaussian_finite", source_params={"n": 64}
    )
    assert torch.equal(build(sogclr_k8).eval_batches(3, k=8).x, other.x)
    assert torch.equal(
        build(finite(source="gaussian", source_params={})).eval_batches(3, k=8).x, other.x
    )


def test_dataset_batches_hold_every_item_in_index_order():
    source = build(finite())
    everything = source.dataset_batches()
    assert everything.indices.shape == (2, 3, 4)
    assert everything.indices[1].flatten().tolist() == list(range(12))
    assert torch.equal(everything.x.flatten(1, 2), source.data[0])


# ------------------------------------------------------------------------ the objective


def test_u_moves_only_for_the_indices_seen():
    config = finite(n=16, objective="sogclr")
    source = build(config)
    objective = build_objective(entry("sogclr"), {"gamma": 0.9}, 2, source.n_items)
    batch = source.train_batch(0)
    before = objective.state.log_u.clone()
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 4, 4, generator=g)
    objective(lambda x, y: scores, batch, validate_args=True)  # a stand-in critic
    seen = torch.zeros(2, 16, dtype=torch.bool).scatter_(1, batch.indices, True)
    after = objective.state.log_u
    assert torch.equal(objective.state.visited, seen)
    assert torch.equal(after[~seen], before[~seen])
    assert bool((after[seen] != before[seen]).all())
    assert not torch.equal(batch.indices[0], batch.indices[1])  # each seed its own items


class Recorded(GlobalContrastive):
    """SogCLR's state that keeps itself as it was after its last training step."""

    def forward(self, scores, indices, *, validate_args):
        out = super().forward(scores, indices, validate_args=validate_args)
        if self.training:
            self.after_training = self.log_u.clone()
        return out


def test_training_visits_the_batches_items_and_evaluation_moves_no_u():
    made: list[Recorded] = []

    def state(params, batch_shape, n_items):
        made.append(Recorded(n_items, 0.9, batch_shape=batch_shape))
        return made[-1]

    register(
        Entry(
            "test-sogclr",
            "t",
            "scores",
            "pairwise",
            None,
            "gathered_negatives",
            state=state,
            per_item=True,
        )
    )
    try:
        config = finite(n=16, objective="test-sogclr", steps=2, curve_every=1)
        (record, _) = train(config, [0, 1])
    finally:
        CATALOGUE.pop("test-sogclr")
    state = made[-1]
    # two of the four batches of epoch 0: exactly those 8 items per seed were visited
    first = build(config).order(0)[:, :8]
    assert torch.equal(state.visited, torch.zeros(2, 16, dtype=torch.bool).scatter_(1, first, True))
    # the final pass over the dataset and the held-out readout read u, never write it
    assert torch.equal(state.log_u, made[-1].after_training)
    assert record["estimate_on"] == "training set" and not record["is_bound"]
    assert math.isfinite(record["infonce_k4_mean"]) and record["infonce_k4_sd"] > 0


def test_global_estimate_is_the_dataset_mean_of_positive_minus_log_u():
    """After training, the record's estimate is mean_i [s_ii - log u_i] over all n items."""
    config = finite(n=8, objective="sogclr", steps=6, eval_infonce_k=(8,))
    source = build(config, (0,))
    objective = build_objective(entry("sogclr"), {"gamma": 0.5}, 1, source.n_items)
    weight = torch.randn(1, 2, 2, generator=torch.Generator().manual_seed(1))

    def critic(x, y):  # a fixed bilinear critic, seed-stacked
        return x @ weight @ y.mT

    for step in range(6):
        objective(critic, source.train_batch(step), validate_args=True)
    objective.eval()
    everything = source.dataset_batches()
    estimate = objective(critic, everything, validate_args=True)  # (1, n / K)
    x, y = source.data
    positive = (x[0] @ weight[0] * y[0]).sum(-1)
    expected = (positive - objective.state.log_u[0]).mean()
    torch.testing.assert_close(estimate.mean(), expected, rtol=0, atol=1e-5)


def test_readouts_are_recorded_for_any_pairwise_objective():
    (record,) = train(finite(eval_infonce_k=(8, 2)), [0])
    assert {"infonce_k2_mean", "infonce_k8_mean", "infonce_k8_sd"} <= set(record)
    assert record["infonce_k2_mean"] <= math.log(2) + 1e-6  # InfoNCE's ceiling, exactly
    assert record["estimate_on"] == "held-out" and "infonce_k4_mean" not in record


def test_the_new_field_leaves_old_keys_unchanged():
    """Keys computed by the code before ``eval_infonce_k`` existed (so old results resume)."""
    assert RunConfig(objective="infonce", rho=0.5).key() == "679a9438e1461640"
    assert RunConfig(objective="nwj", k=8, d=2, mi=3.0).key() == "ddcdca7c30dc17d4"
    assert RunConfig(objective="infonce", rho=0.5, eval_infonce_k=(64,)).key() != (
        "679a9438e1461640"
    )


# ------------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"objective": "sogclr", "source": "gaussian", "source_params": {}},
            "objective 'sogclr' needs a finite dataset source",
        ),
        ({"source_params": {"n": 3}}, "needs n >= K"),
        ({"source_params": {"n": 14}}, "multiple of K = 4"),
        ({"source_params": {}}, "needs parameter(s) ['n']"),
        ({"source_params": {"n": 12, "size": 2}}, "unknown parameter 'size'"),
        ({"rho": None, "mi_levels": (1.0, 2.0)}, "give rho or mi, not mi_levels"),
        ({"objective": "sogclr", "objective_params": {"gamma": 1.5}}, "gamma must be"),
        ({"objective": "sogclr", "objective_params": {"gama": 0.5}}, "did you mean 'gamma'"),
        ({"eval_infonce_k": (1,)}, "each of eval_infonce_k must be an integer >= 2"),
        ({"objective": "arithmetic", "m": 3, "eval_infonce_k": (8,)}, "needs a pairwise"),
    ],
)
def test_bad_finite_config_is_a_clear_error(values, message):
    with pytest.raises(ValueError) as err:
        finite(**values)
    assert message in str(err.value)


def test_bad_setting_in_a_grid_fails_before_training():
    data = {
        "name": "bad",
        "seeds": 1,
        "run": {"k": 8, "d": 2, "rho": 0.5, "steps": 2, "curve_every": 1},
        "grid": {"objective": ["infonce", "sogclr"]},
    }
    with pytest.raises(ValueError, match=r"objective='sogclr'.*needs a finite dataset source"):
        sweep_from_dict(data)


# --------------------------------------------------------------- batched seeds, reproduction


def test_batched_seeds_equal_each_seed_alone():
    config = finite(objective="sogclr", eval_infonce_k=(8,))
    together, alone = train(config, [0, 1, 2]), train(config, [1])[0]
    # the same computation batched: only float rounding of the batched kernels differs
    for key in ("estimate_mean", "infonce_k4_mean", "infonce_k8_mean"):
        assert together[1][key] == pytest.approx(alone[key], abs=1e-5)
    assert together[1]["curve_estimate"] == pytest.approx(alone["curve_estimate"], abs=1e-5)
    assert together[0]["estimate_mean"] != pytest.approx(alone["estimate_mean"], abs=1e-4)


def test_quick_sogclr_reproduction_findings(tmp_path):
    """``mibounds reproduce sogclr-gaussian --quick``: K = 16 against K = 128, I = 2 and 8 nats,
    n = 2048, 300 steps, 2 seeds (about 10 s)."""
    paths = reproduce("sogclr-gaussian", quick=True, out=tmp_path, progress=False)
    assert {p.name for p in paths} == {"results.jsonl", "sogclr_gaussian.png", "sogclr_gaussian.md"}
    assert "Regenerate: `mibounds reproduce sogclr-gaussian --quick`" in paths[2].read_text()
    frame = load_results(paths[0])
    base = {"source": {"name": "gaussian_finite", "n": 2048}}
    found = sogclr_findings(frame, base)
    # every bound (each held-out InfoNCE of every critic) below the true MI within 3 standard
    # errors of its held-out mean: bounds hold for any critic, so this cannot depend on training
    assert bound_violations(sogclr_quantities(frame)).empty
    # InfoNCE at K = 16 is capped by log 16 = 2.77 and, at I = 8, pressed against it: seen
    # 2.50 ± 0.05 over seeds, so 0.5 below the cap leaves ~5 sd
    assert math.log(16) - 0.5 < found["infonce_at_k/16/8"] <= math.log(16)
    # ... while SogCLR's global estimate has no such ceiling (seen 8.4; log 16 = 2.77) and the
    # large-K InfoNCE on the stream passes log 16 too (seen 4.4)
    assert found["global_minus_mi/0.9/16/8"] + 8 > math.log(16) + 2
    assert found["large_stream/8"] > math.log(16) + 1
