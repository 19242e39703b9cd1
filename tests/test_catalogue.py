"""One estimator tester, in the spirit of torchmetrics' ``MetricTester``: every catalogue entry is
pushed through the same checks, chosen from what the entry declares (what it takes, whether it
keeps state):

- its loop reference (``REFERENCES``, float64, 1e-9): a newly registered entry fails here until
  it has one, so registering an estimator is what gets it tested;
- a stack of inputs gives the stack of each input's values (leading batch dims);
- half precision is computed in float32 (the same value as the float32 upcast, a float32
  result);
- scores of +-1e4 in float32 (positives high, negatives low) give a finite value and gradient;
- bad shapes (K = 1, a missing axis) are a ``ValueError``;
- ``torch.vmap`` over a stack with ``validate_args=False`` gives the stacked value;
- a stateful entry's ``state_dict`` round trip continues exactly, and ``is_bound`` answers.
"""

from __future__ import annotations

from collections.abc import Callable

import bounds_reference as bref
import numpy as np
import polyview_reference as pref
import pytest
import torch
from test_barlow import ref_multiview_barlow

from mibounds.catalogue import CATALOGUE, Entry, entry

K, M, D = 5, 3, 4
TIGHT = {"rel": 1e-9, "abs": 1e-9}


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().numpy()


def _dot(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A pairwise critic for Sufficient Statistics: ``(..., K, D) x (..., K, D) -> (..., K, K)``."""
    return x @ y.transpose(-1, -2)


def _sogclr_first_visit(s: torch.Tensor, p: dict) -> float:
    """SogCLR's global estimate on a first visit (gamma = 1): u_i is the batch partition over
    the K - 1 negatives, so the value is mean_i [s_ii - log mean_{j != i} exp s_ij]."""
    k = s.shape[0]
    return float(
        np.mean([s[i, i] - bref._lme([s[i, j] for j in range(k) if j != i]) for i in range(k)])
    )


def _pairwise(fn: Callable) -> Callable:
    return lambda s, p: fn(_np(s))


def _poly(name: str) -> Callable:
    def reference(S: torch.Tensor, p: dict) -> float:
        if name == "multicrop" and p["negatives"] == "same_view":
            bound = entry(p["bound"]).estimator()
            return float(pref.multicrop(S, bound=bound))
        if name in ("multicrop", "simclr"):
            return float(pref.contrastive_estimate(S, "geometric", "view_pairs"))
        if p["negatives"] == "same_view" and name != "arithmetic_printed":
            return float(getattr(pref, name)(S))  # the bound's own reference
        return float(pref.contrastive_estimate(S, name, p["negatives"]))

    return reference


REFERENCES: dict[str, Callable[[torch.Tensor, dict], float]] = {
    "infonce": _pairwise(bref.infonce),
    "nwj": _pairwise(bref.nwj),
    "tuba": lambda s, p: bref.tuba(_np(s), np.full(s.shape[0], p["log_baseline"])),
    "dv": _pairwise(bref.dv),
    "js": _pairwise(bref.js_value),
    "smile": lambda s, p: bref.smile(_np(s), p["clip"]),
    "interpolated": lambda s, p: bref.interpolated(
        _np(s), p["alpha"], np.full(s.shape[0], p["log_baseline"])
    ),
    "eqco": lambda s, p: bref.eqco(_np(s), p["alpha"]),
    "mine": _pairwise(bref.dv),  # the first step's value: DV
    "sogclr": lambda s, p: _sogclr_first_visit(_np(s), p),
    "multicrop": _poly("multicrop"),
    "arithmetic": _poly("arithmetic"),
    "geometric": _poly("geometric"),
    "arithmetic_printed": _poly("arithmetic_printed"),
    "simclr": _poly("simclr"),
    "sufficient_statistics": lambda z, p: float(
        pref.sufficient_statistics(
            z, _dot, normalize=p["normalize"], bound=entry(p["bound"]).estimator()
        )
    ),
    "barlow_multiview": lambda z, p: float(ref_multiview_barlow(z, p["beta"])),
}
"""A loop reference per catalogue entry: ``reference(x, params) -> float`` on one unbatched,
float64 input of the kind the entry takes."""

EXAMPLE_PARAMS = {"eqco": {"alpha": 8.0}}
"""Parameters an entry needs (required ones), beyond its defaults."""


def cases() -> list[tuple[str, dict]]:
    """Every entry with its defaults, and once more for each other choice of a choice
    parameter (e.g. ``negatives = "all_views"``)."""
    out = []
    for name, e in CATALOGUE.items():
        base = dict(EXAMPLE_PARAMS.get(name, {}))
        out.append((name, base))
        for p in e.params:
            for choice in p.choices or ():
                if choice != p.default:
                    out.append((name, {**base, p.name: choice}))
    return out


CASES = cases()
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in p.items()) or 'defaults'}" for n, p in CASES]


def views_of(e: Entry) -> int:
    return e.views[1] if e.views[1] is not None else M


def sample(e: Entry, seed: int, *batch: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """An input of the kind ``e`` takes: scores ``(*batch, K, K)`` or ``(*batch, K, M, K, M)``
    with positives scored high, or views / embeddings ``(*batch, K, M, D)``."""
    g = torch.Generator().manual_seed(seed)
    m = views_of(e)
    if e.takes in ("views_and_critic", "embeddings"):
        common = torch.randn(*batch, K, 1, D, generator=g, dtype=torch.float64)
        x = common + 0.7 * torch.randn(*batch, K, m, D, generator=g, dtype=torch.float64)
        return x.to(dtype)
    if e.takes == "scores":
        s = torch.randn(*batch, K, K, generator=g, dtype=torch.float64)
        return (s + 2 * torch.eye(K, dtype=torch.float64)).to(dtype)
    s = torch.randn(*batch, K, m, K, m, generator=g, dtype=torch.float64)
    own = torch.eye(K, dtype=torch.float64)[:, None, :, None]
    return (s + 2 * own).to(dtype)


def positives_of(e: Entry) -> torch.Tensor:
    """1 where a score is a positive pair's (an anchor against its own sample), else 0."""
    if e.takes == "scores":
        return torch.eye(K, dtype=torch.float64)
    m = views_of(e)
    return torch.eye(K, dtype=torch.float64)[:, None, :, None].expand(K, m, K, m).clone()


def value(e: Entry, params: dict, x: torch.Tensor, *, validate_args: bool = True, state=None):
    """The entry's value on ``x`` (a stateful entry's first step, from a fresh state for
    ``x``'s batch shape unless ``state`` is given)."""
    params = e.check_params(params)
    if e.state is not None:
        shape = tuple(x.shape[:-2])
        module = state if state is not None else e.state(params, shape, 2 * K)
        args = (x, torch.arange(K).expand(*shape, K)) if e.per_item else (x,)
        return module(*args, validate_args=validate_args)
    if e.takes == "views_and_critic":
        return e.estimate(x, _dot, **params, validate_args=validate_args)
    if e.takes == "embeddings":
        return e.loss(None, params)(x) if x.dim() == 3 else _batched_loss(e, params, x)
    return e.estimate(x, **params, validate_args=validate_args)


def _batched_loss(e: Entry, params: dict, x: torch.Tensor) -> torch.Tensor:
    module = e.loss(None, params).loss  # the loss itself takes leading batch dims
    return module(x, validate_args=True)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_every_entry_matches_its_loop_reference(name: str, params: dict) -> None:
    e = CATALOGUE[name]
    assert name in REFERENCES, f"{name!r} is in the catalogue without a loop reference"
    x = sample(e, 1)
    expected = REFERENCES[name](x, e.check_params(params))
    assert float(value(e, params, x)) == pytest.approx(expected, **TIGHT)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_a_stack_gives_each_slice(name: str, params: dict) -> None:
    e = CATALOGUE[name]
    x = sample(e, 2, 3)
    stacked = value(e, params, x)
    assert stacked.shape == (3,)
    for i in range(3):
        torch.testing.assert_close(stacked[i], value(e, params, x[i]), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(name: str, params: dict, dtype) -> None:
    e = CATALOGUE[name]
    x = sample(e, 3, dtype=dtype)
    half = value(e, params, x)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, value(e, params, x.float()), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_scores_of_1e4_give_a_finite_value_and_gradient(name: str, params: dict) -> None:
    e = CATALOGUE[name]
    if e.takes in ("views_and_critic", "embeddings"):
        x = (1e4 * sample(e, 4)).float().requires_grad_()
    else:  # +1e4 on the positives (own sample), -1e4 on every negative
        x = (1e4 * (2 * positives_of(e) - 1)).float().requires_grad_()
    out = value(e, params, x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_bad_shapes_are_a_value_error(name: str, params: dict) -> None:
    e = CATALOGUE[name]
    x = sample(e, 5)
    one_sample = x[:1] if e.takes != "polyview_scores" else x[:1, :, :1]
    if e.takes == "scores":
        one_sample = x[:1, :1]
    for bad in (one_sample, x[..., 0]):
        with pytest.raises(ValueError):
            value(e, params, bad)


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_vmap_without_value_checks_gives_the_stacked_value(name: str, params: dict) -> None:
    e = CATALOGUE[name]
    if e.state is not None or e.takes == "embeddings":
        pytest.skip("state updates and whole-batch statistics are not per-sample functions")
    x = sample(e, 6, 3)
    mapped = torch.vmap(lambda t: value(e, params, t, validate_args=False))(x)
    torch.testing.assert_close(mapped, value(e, params, x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name", [n for n, e in CATALOGUE.items() if e.state is not None])
def test_a_state_dict_round_trip_continues_exactly(name: str) -> None:
    e = CATALOGUE[name]
    params = e.check_params(EXAMPLE_PARAMS.get(name, {}))
    a = e.state(params, (), 2 * K)
    value(e, params, sample(e, 7), state=a)
    b = e.state(params, (), 2 * K)
    b.load_state_dict(a.state_dict())
    nxt = sample(e, 8)
    torch.testing.assert_close(value(e, params, nxt, state=b), value(e, params, nxt, state=a))


@pytest.mark.parametrize(("name", "params"), CASES, ids=IDS)
def test_is_bound_answers_for_every_batch_size(name: str, params: dict) -> None:
    e = CATALOGUE[name]
    answers = {e.is_bound(k, params) for k in (2, 16, 1024)}
    assert answers <= {True, False}
    if e.estimates == "none":
        assert answers == {False}


def test_registering_a_name_twice_is_refused_and_an_unknown_name_suggests() -> None:
    from mibounds.catalogue import register

    with pytest.raises(ValueError, match="already in the catalogue"):
        register(CATALOGUE["infonce"])
    with pytest.raises(ValueError, match=r"unknown estimator 'infonse' \(did you mean 'infonce'"):
        entry("infonse")
    with pytest.raises(ValueError, match=r"'eqco' got unknown parameter 'alpah'"):
        entry("eqco").check_params({"alpah": 1.0})


def test_is_bound_refuses_missing_and_unknown_parameters_and_says_which_are_bounds() -> None:
    from mibounds.catalogue import is_bound

    with pytest.raises(ValueError, match="'eqco' needs parameter 'alpha'"):
        is_bound("eqco", 8)
    with pytest.raises(ValueError, match="alpha must be a number"):
        is_bound("eqco", 8, alpha=True)
    with pytest.raises(ValueError, match="'nwj' got unknown parameter 'clip'"):
        is_bound("nwj", 8, clip=5.0)
    with pytest.raises(ValueError, match="k must be an integer >= 2"):
        is_bound("infonce", 1)
    assert is_bound("infonce", 8) and is_bound("nwj", 8) and is_bound("js", 8)
    assert is_bound("tuba", 8, log_baseline=1.0) and is_bound("interpolated", 8, alpha=0.5)
    assert not is_bound("dv", 8) and not is_bound("smile", 8, clip=5.0)
    assert not is_bound("mine", 8, momentum=0.9) and not is_bound("sogclr", 8)
    assert is_bound("eqco", 64, alpha=63) and not is_bound("eqco", 64, alpha=512)
    assert is_bound("multicrop", 8, bound="nwj") and not is_bound("multicrop", 8, bound="dv")
