"""Image runs through the harness's sweeps (the "vision" kind): a TOML grid of TrainConfig
settings, one run directory per setting and seed, typed records, resume, and an untrained
(epochs = 0) floor."""

from __future__ import annotations

import pytest

import mibounds.vision.sweeps  # noqa: F401 (registers the kind)
from mibounds.harness import run_sweep, sweep_from_dict
from mibounds.harness.results import read_records
from mibounds.records import VisionRecord, check_record
from mibounds.vision.config import TrainConfig

pytestmark = pytest.mark.usefixtures("single_thread")

RUN = {
    "image_size": 8,
    "subset": 16,
    "batch_size": 8,
    "proj_hidden": 16,
    "proj_dim": 8,
    "optimizer": "adamw",
    "lr": 1e-3,
    "warmup_epochs": 0.0,
    "workers": 0,
    "probe_epochs": 2,
    "knn_k": 5,
}
GRID = [
    {"objective": [{"name": "arithmetic", "negatives": "all_views"}, "simclr"], "views": 2},
    {"objective": "simclr", "views": 2, "epochs": 0},  # the untrained encoder's probe
]


def sweep():
    data = {"name": "v", "trainer": "vision", "seeds": 2, "run": {**RUN, "epochs": 1}}
    return sweep_from_dict({**data, "grid": GRID})


def test_a_vision_sweep_trains_probes_and_resumes(tmp_path):
    results = tmp_path / "results.jsonl"
    frame = run_sweep(sweep(), results, progress=False, device="cpu")
    records = read_records(results)
    assert len(frame) == 6 and all(r["trainer"] == "vision" for r in records)
    for record in records:
        check_record(record)
        assert set(record) <= set(VisionRecord.__annotations__)
        assert 0 <= record["knn_top1"] <= 1 and record["git_commit"]
    floor = [r for r in records if r["epochs"] == 0]
    assert len(floor) == 2 and all(r["steps"] == 0 and r["final_loss"] is None for r in floor)
    # at M = 2 the all-view arithmetic loss is NT-Xent: the same runs as SimCLR, seed for seed
    by = {(r["objective"], r["seed"]): r for r in records if r["epochs"] == 1}
    for seed in (0, 1):
        assert by[("arithmetic", seed)]["final_loss"] == pytest.approx(
            by[("simclr", seed)]["final_loss"], abs=1e-6
        )
    # one directory per setting and seed beside the results; a rerun trains nothing
    assert len(list((tmp_path / "results-runs").glob("*/seed*/checkpoint.pt"))) == 6
    before = results.read_text()
    run_sweep(sweep(), results, progress=False, device="cpu")
    assert results.read_text() == before


def test_a_setting_key_ignores_seed_and_where_it_runs():
    a = TrainConfig(**RUN)
    assert a.key() == a.replace(seed=3, out="elsewhere", workers=1, device="cpu").key()
    assert a.key() != a.replace(batch_size=4).key() != a.replace(probe_epochs=3).key()
    assert (
        a.replace(objective="smile", objective_params={"clip": 2.0})
        .label()
        .startswith("smile(clip=2) M=2")
    )
