"""The run record schema: what a trainer returns is checked against it, and a record that
lacks a field or carries an unknown one is refused by name."""

from __future__ import annotations

import pytest

from mibounds.harness import RunConfig, train
from mibounds.records import SCHEMA_VERSION, GaussianRecord, check_record


@pytest.fixture(scope="module")
def record():
    config = RunConfig(objective="infonce", rho=0.5, k=8, steps=4, curve_every=2, eval_batches=2)
    return train(config, [0], extra={"sweep": "s", "grid_hash": "h", "jobs": 1})[0]


def test_a_gaussian_record_has_exactly_the_schema_fields(record):
    check_record(record)
    assert record["schema_version"] == SCHEMA_VERSION and record["trainer"] == "gaussian"
    # every required field, and of the optional ones those the sweep's extra gave
    assert set(record) == GaussianRecord.__required_keys__ | {"sweep", "grid_hash", "jobs"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("estimate_mean"), r"missing \['estimate_mean'\]"),
        (lambda r: r.update(estimte_mean=1.0), r"unknown \['estimte_mean'\]"),
        (lambda r: r.update(schema_version=1), "schema_version 1"),
        (lambda r: r.update(trainer="audio"), "trainer 'audio'"),
    ],
)
def test_a_record_off_the_schema_is_refused_by_name(record, change, message):
    bad = dict(record)
    change(bad)
    with pytest.raises(ValueError, match=message):
        check_record(bad)


def test_readouts_at_other_batch_sizes_are_part_of_the_schema(record):
    check_record({**record, "infonce_k512_mean": 1.0, "infonce_k512_sd": 0.1})
