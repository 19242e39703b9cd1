"""The catalogue: every estimator and loss of mibounds, each declared once.

An ``Entry`` says what a name takes (``"scores"``: pairwise ``(..., K, K)``;
``"polyview_scores"``: ``(..., K, M, K, M)``; ``"views_and_critic"``: raw views and a pairwise
critic; ``"embeddings"``: ``(K, M, D)`` only), what it estimates (``"pairwise"`` I(x; y) or
I(x_a; x_b), ``"one_vs_rest"`` I(x_a; X_{\\a}), or ``"none"``), whether it is a lower bound as
a function of the batch size K and its parameters, its parameters with their checks, whether it
keeps state (per dataset item or not), and how it behaves across processes:

- ``"global_batch"``: it needs every sample's scores against every other's, so under DDP each
  process computes it on the gathered batch;
- ``"gathered_negatives"``: each process's anchors against candidates gathered from all, the
  mean over processes being the global value (``loss`` builds that form);
- ``"global_statistic"``: statistics over the whole batch (Barlow Twins' standardisation),
  computed on the gathered batch.

Both trainers are built from it: the Gaussian harness (``mibounds.harness.objectives``) scores a
critic's outputs with ``estimate``; the image trainer (``mibounds.vision.objectives``) uses
``loss`` where an entry has one (the embedding-level form that gathers negatives) and otherwise
minus ``estimate`` on cosine scores, a pairwise estimator averaged over the view pairs. A newly
registered entry is tested by registering it (``tests/test_catalogue.py``).

Example:
    >>> from mibounds.catalogue import entry
    >>> e = entry("eqco")
    >>> e.takes, e.estimates, e.is_bound(64, {"alpha": 63}), e.is_bound(64, {"alpha": 512})
    ('scores', 'pairwise', True, False)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn

from mibounds import barlow, bounds, polyview, sogclr
from mibounds._checks import add_once, check_at_least, flag, one_of, real_in, suggest
from mibounds.polyview_loss import PolyViewLoss

__all__ = [
    "CATALOGUE",
    "DISTRIBUTED",
    "ESTIMATES",
    "REQUIRED",
    "TAKES",
    "Entry",
    "LossContext",
    "Param",
    "entry",
    "is_bound",
    "pairwise_names",
    "register",
]

TAKES = ("scores", "polyview_scores", "views_and_critic", "embeddings")
ESTIMATES = ("pairwise", "one_vs_rest", "none")
DISTRIBUTED = ("global_batch", "gathered_negatives", "global_statistic")
REQUIRED: Any = object()
"""The default of a parameter that must be given."""

Gather = Callable[[Tensor], tuple[Tensor, int]]


# ------------------------------------------------------------------------- parameter checks


def _finite() -> Callable:
    return real_in(-math.inf, math.inf, low_open=True)


@dataclass(frozen=True)
class Param:
    """A parameter of an entry: ``check(value)`` returns the value normalised or raises
    ``ValueError("must be ..., got ...")`` (``check_params`` names the entry and parameter);
    ``choices`` (if any) are listed by the command line."""

    name: str
    default: Any
    check: Callable[[Any], Any]
    help: str
    choices: tuple[str, ...] | None = None


def _negatives(default: str = "same_view") -> Param:
    choices = ("same_view", "all_views")
    return Param(
        "negatives",
        default,
        one_of(choices),
        "same_view: the K samples' target view (the bound); all_views: the paper's Algorithm 1, "
        "the positive and every view of every other sample (an estimate, not a bound)",
        choices,
    )


# ------------------------------------------------------------------------------------ entries


@dataclass(frozen=True)
class LossContext:
    """What an embedding-level loss is built with: the temperature tau of the cosine scores,
    the views per image M, the training items n (per-item state), the ``gather`` hook
    (``gather(z_local) -> (z_global, offset)``; None in one process) and the bytes the
    ``(K, M, N, M)`` scores may take before the loss computes them in blocks
    (``memory_budget``, ``mibounds.tiled``)."""

    temperature: float = 0.1
    views: int = 2
    dataset_size: int = 0
    gather: Gather | None = None
    memory_budget: int = 2**30


@dataclass(frozen=True)
class Entry:
    """One estimator or loss (the module docstring explains the fields).

    ``estimate(x, **params, validate_args=...) -> (...)`` nats, on what ``takes`` names (None
    for a loss without an estimate); ``state(params, batch_shape, n_items) -> nn.Module`` for a
    stateful entry, whose ``forward(scores, [indices,] *, validate_args)`` gives the training
    value (``estimate``, if given, is then the value read with the trained critic, called
    without the parameters, which belong to the state: DV for MINE; without it the state
    module in ``eval()`` mode is read); ``loss(context, params) ->
    nn.Module`` with ``forward(z: (K, M, D), indices: (K,)) -> ()``, the embedding-level
    training loss (minimised); ``views``: the accepted number of views M (``None``: no limit).
    """

    name: str
    summary: str
    takes: str
    estimates: str
    estimate: Callable[..., Tensor] | None
    distributed: str
    params: tuple[Param, ...] = ()
    bound: Callable[[int, Mapping[str, Any]], bool] = lambda k, params: False
    state: Callable[[Mapping[str, Any], tuple[int, ...], int], nn.Module] | None = None
    per_item: bool = False
    loss: Callable[[LossContext, Mapping[str, Any]], nn.Module] | None = None
    views: tuple[int, int | None] = (2, None)
    source: str = ""
    check: Callable[[Mapping[str, Any]], None] | None = None
    """A check of the parameters together (after each one's own), raising ``ValueError``."""
    defaults: Mapping[str, Any] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name, value, allowed in (
            ("takes", self.takes, TAKES),
            ("estimates", self.estimates, ESTIMATES),
            ("distributed", self.distributed, DISTRIBUTED),
        ):
            if value not in allowed:
                raise ValueError(
                    f"entry {self.name!r}: {name} must be one of {allowed}, got {value!r}"
                )
        object.__setattr__(self, "defaults", {p.name: p.default for p in self.params})

    def check_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The parameters with the defaults filled in, each checked; unknown or missing ones
        raise ``ValueError`` naming them."""
        names = [p.name for p in self.params]
        for key in given:
            if key not in names:
                accepts = f"one of {names}" if names else "no parameters"
                raise ValueError(
                    f"{self.name!r} got unknown parameter {key!r}{suggest(key, names)}; accepts "
                    f"{accepts}"
                )
        out = {}
        for p in self.params:
            value = given.get(p.name, p.default)
            if value is REQUIRED:
                raise ValueError(f"{self.name!r} needs parameter {p.name!r} ({p.help})")
            try:
                out[p.name] = p.check(value)
            except ValueError as err:
                raise ValueError(f"{self.name!r}: {p.name} {err}") from None
        if self.check is not None:
            try:
                self.check(out)
            except ValueError as err:
                raise ValueError(f"{self.name!r}: {err}") from None
        return out

    def estimator(self, params: Mapping[str, Any] | None = None) -> Callable[..., Tensor]:
        """``estimate`` with ``params`` (checked, the defaults filled in) bound to it: a function
        of the input alone (and ``validate_args``), e.g. a pairwise bound to plug into
        ``polyview.multicrop``."""
        if self.estimate is None:
            raise ValueError(f"{self.name!r} has no estimate (it is a loss or keeps state)")
        checked = self.check_params(params or {})
        return functools.partial(self.estimate, **checked) if checked else self.estimate

    def is_bound(self, k: int, params: Mapping[str, Any]) -> bool:
        """Whether the estimate is a lower bound on the MI it ``estimates`` at batch size K
        (docs/conventions.md#bound-and-estimate)."""
        check_at_least(k, 2, "k")
        return bool(self.bound(k, self.check_params(params)))

    def check_views(self, m: int) -> None:
        """Raise unless the entry accepts M views per sample."""
        low, high = self.views
        if m < low or (high is not None and m > high):
            allowed = f"M >= {low}" if high is None else f"{low} <= M <= {high}"
            raise ValueError(f"{self.name!r} needs {allowed} views per sample, got M = {m}")


CATALOGUE: dict[str, Entry] = {}


def register(new: Entry) -> Entry:
    """Add ``new`` to the catalogue; a name registered twice is an error."""
    return add_once(CATALOGUE, new.name, new, "the catalogue")


def entry(name: str, what: str = "estimator") -> Entry:
    """``CATALOGUE[name]``, or a ``ValueError`` that lists the known names (``what`` says what
    the name was given as: "estimator", "objective", ...)."""
    if not isinstance(name, str) or name not in CATALOGUE:
        raise ValueError(
            f"unknown {what} {name!r}{suggest(str(name), CATALOGUE)}; expected one of "
            f"{sorted(CATALOGUE)}"
        )
    return CATALOGUE[name]


def is_bound(name: str, k: int, **params: Any) -> bool:
    """Whether estimator ``name`` with ``params`` is a lower bound on MI at batch size ``k``:
    EqCo only for ``alpha <= k - 1``; DV, MINE, SMILE and SogCLR never (estimates); the
    poly-view readings only with same-view candidates.

    Example:
        >>> from mibounds.catalogue import is_bound
        >>> is_bound("infonce", 64), is_bound("dv", 64), is_bound("eqco", 64, alpha=512)
        (True, False, False)
        >>> is_bound("arithmetic", 64), is_bound("arithmetic", 64, negatives="all_views")
        (True, False)
    """
    return entry(name).is_bound(k, params)


def pairwise_names() -> tuple[str, ...]:
    """The stateless pairwise estimators without required parameters: what Multi-Crop and
    Sufficient Statistics can plug in as their ``bound``."""
    return tuple(
        n
        for n, e in CATALOGUE.items()
        if e.takes == "scores" and e.state is None and REQUIRED not in e.defaults.values()
    )


def _always(k: int, params: Mapping[str, Any]) -> bool:
    return True


# --------------------------------------------------------------------------- pairwise (scores)

_PAIRWISE_SOURCE = "Poole et al. 2019 (arXiv 1905.06922); docs/pairwise.md"
for _name, _summary, _bound, _params in (
    ("infonce", "InfoNCE (CPC), <= log K", True, ()),
    ("nwj", "NWJ / MINE-f (TUBA with log a = 1)", True, ()),
    (
        "tuba",
        "TUBA with a constant baseline a",
        True,
        (Param("log_baseline", 0.0, _finite(), "log a(x), one constant"),),
    ),
    ("dv", "Donsker-Varadhan minibatch estimate (biased, not a bound)", False, ()),
    ("js", "NWJ value with Jensen-Shannon gradients", True, ()),
    (
        "smile",
        "SMILE (Song & Ermon 2020): DV value of clipped scores, JS gradients; an estimate",
        False,
        (
            Param(
                "clip",
                5.0,
                real_in(0.0, math.inf, low_open=True, high_open=False),
                "clip threshold tau > 0 (inf: DV)",
            ),
        ),
    ),
    (
        "interpolated",
        "Poole's I_alpha between InfoNCE and TUBA",
        True,
        (
            Param(
                "alpha",
                0.01,
                real_in(0.0, 1.0, low_open=True, high_open=False),
                "interpolation weight in (0, 1]",
            ),
            Param("log_baseline", 0.0, _finite(), "log q(x), one constant"),
        ),
    ),
):
    register(
        Entry(
            _name,
            _summary,
            "scores",
            "pairwise",
            getattr(bounds, _name),
            "global_batch",
            _params,
            bound=_always if _bound else (lambda k, params: False),
            source=_PAIRWISE_SOURCE,
        )
    )

register(
    Entry(
        "eqco",
        "EqCo (Zhu et al. 2020): margin InfoNCE as if with alpha negatives; a bound iff "
        "alpha <= K - 1",
        "scores",
        "pairwise",
        bounds.eqco,
        "global_batch",
        (
            Param(
                "alpha",
                REQUIRED,
                real_in(0.0, math.inf, low_open=True, high_open=True),
                "the number of negatives EqCo stands in for, > 0",
            ),
        ),
        bound=lambda k, params: params["alpha"] <= k - 1,
        source="Zhu et al. 2020 (arXiv 2010.01929); docs/pairwise.md#eqco",
    )
)
register(
    Entry(
        "mine",
        "MINE (Belghazi et al. 2018): DV value, moving-average gradient; state saved",
        "scores",
        "pairwise",
        bounds.dv,
        "global_batch",
        (
            Param(
                "momentum",
                0.99,
                real_in(0.0, 1.0, low_open=False, high_open=True),
                "moving-average momentum in [0, 1)",
            ),
        ),
        state=lambda params, batch_shape, n_items: bounds.MINE(params["momentum"], batch_shape),
        source="Belghazi et al. 2018; docs/pairwise.md#mine",
    )
)


def _sogclr_loss(ctx: LossContext, params: Mapping[str, Any]) -> nn.Module:
    """SogCLR keyed by the training split's indices; under DDP each process's anchors against
    the gathered candidates, and every process's (index, log u) updates written everywhere."""
    return sogclr.SogCLRLoss(
        ctx.dataset_size,
        ctx.temperature,
        params["gamma"],
        ctx.gather,
        memory_budget=ctx.memory_budget,
    )


register(
    Entry(
        "sogclr",
        "SogCLR (Yuan et al. 2022): global contrastive estimate with a moving-average partition "
        "per dataset item; state saved; an estimate",
        "scores",
        "pairwise",
        None,
        "gathered_negatives",
        (
            Param(
                "gamma",
                0.9,
                real_in(0.0, 1.0, low_open=True, high_open=False),
                "moving-average weight of the new batch, in (0, 1]",
            ),
        ),
        state=lambda params, batch_shape, n_items: sogclr.GlobalContrastive(
            n_items, params["gamma"], batch_shape=batch_shape
        ),
        per_item=True,
        loss=_sogclr_loss,
        source="Yuan et al. 2022 (arXiv 2202.12387); docs/sogclr.md",
    )
)


# ---------------------------------------------------------------- poly-view (polyview_scores)


class _EmbeddingLoss(nn.Module):
    """``forward(z, indices)`` of a loss on embeddings that ignores the indices."""

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        self.loss = loss

    def forward(self, z: Tensor, indices: Tensor | None = None) -> Tensor:
        # no argument checks per step: they sync with the device; the trainer checks the loss
        return self.loss(z, validate_args=False)


def _polyview_loss(aggregate: str, negatives: str | None = None) -> Callable:
    """The embedding-level form of a poly-view reading: ``polyview_loss`` over gathered
    candidates (``log C`` minus the estimate on the cosine scores; the same gradient)."""

    def build(ctx: LossContext, params: Mapping[str, Any]) -> nn.Module:
        chosen = negatives or params["negatives"]
        module = PolyViewLoss(ctx.temperature, aggregate, chosen, ctx.gather, ctx.memory_budget)
        return _EmbeddingLoss(module)

    return build


def _multicrop_loss(ctx: LossContext, params: Mapping[str, Any]) -> nn.Module | None:
    if params["negatives"] == "all_views":  # each view pair's NT-Xent
        return _polyview_loss("geometric", "view_pairs")(ctx, params)
    if params["bound"] == "infonce":  # log K - multicrop(S): InfoNCE averaged over view pairs
        return _polyview_loss("geometric", "same_view")(ctx, params)
    return None  # another pairwise bound: minus multicrop on the gathered batch's scores


def _check_multicrop(params: Mapping[str, Any]) -> None:
    if params["negatives"] == "all_views" and params["bound"] != "infonce":
        raise ValueError(
            "negatives = 'all_views' reads each view pair's NT-Xent and takes no pairwise "
            f"bound; got bound = {params['bound']!r}"
        )


def _multicrop(S: Tensor, bound: str, negatives: str, *, validate_args: bool = True) -> Tensor:
    return polyview.multicrop(
        S, entry(bound).estimator(), negatives=negatives, validate_args=validate_args
    )


register(
    Entry(
        "multicrop",
        "Multi-Crop: a pairwise bound averaged over view pairs (same_view), or each view pair's "
        "NT-Xent (all_views, an estimate); estimates the pairwise MI",
        "polyview_scores",
        "pairwise",
        _multicrop,
        "gathered_negatives",
        (
            Param(
                "bound",
                "infonce",
                one_of(pairwise_names),
                "the pairwise bound averaged over view pairs (same_view only)",
            ),
            _negatives(),
        ),
        bound=lambda k, params: (
            params["negatives"] == "same_view" and entry(params["bound"]).is_bound(k, {})
        ),
        loss=_multicrop_loss,
        source="Shidani et al. 2024 (arXiv 2403.05490), §2; docs/polyview.md#multicrop",
        check=_check_multicrop,
    )
)
for _name in ("arithmetic", "geometric"):
    register(
        Entry(
            _name,
            f"{_name.title()} PVC on the one-vs-rest MI: a bound with same_view candidates, "
            "Algorithm 1's estimate with all_views",
            "polyview_scores",
            "one_vs_rest",
            getattr(polyview, _name),
            "gathered_negatives",
            (_negatives(),),
            bound=lambda k, params: params["negatives"] == "same_view",
            loss=_polyview_loss(_name),
            source=f"Shidani et al. 2024, {_name.title()} PVC; docs/polyview.md#{_name}",
        )
    )
register(
    Entry(
        "arithmetic_printed",
        "Algorithm 1's arithmetic line as printed: logsumexp_b CE - log K, a soft-max of the "
        "per-pair losses; not a bound",
        "polyview_scores",
        "one_vs_rest",
        functools.partial(polyview.contrastive_estimate, aggregate="arithmetic_printed"),
        "gathered_negatives",
        (_negatives("all_views"),),
        loss=_polyview_loss("arithmetic_printed"),
        source="Shidani et al. 2024, Algorithm 1; "
        "docs/polyview.md#two-readings-of-the-papers-algorithm-1",
    )
)
register(
    Entry(
        "simclr",
        "SimCLR's NT-Xent (Chen et al. 2020): 2K anchors, 2K - 1 candidates each; M = 2 only",
        "polyview_scores",
        "pairwise",
        functools.partial(polyview.multicrop, negatives="all_views"),
        "gathered_negatives",
        loss=_polyview_loss("geometric", "all_views"),
        views=(2, 2),
        source="Chen et al. 2020; docs/polyview.md#polyview_loss",
    )
)


def _sufficient_statistics(
    views: Tensor, critic: Callable, normalize: bool, bound: str, *, validate_args: bool = True
) -> Tensor:
    return polyview.sufficient_statistics(
        views,
        critic,
        normalize=normalize,
        bound=entry(bound).estimator(),
        validate_args=validate_args,
    )


register(
    Entry(
        "sufficient_statistics",
        "Sufficient Statistics: a pairwise critic between one view and the mean of the others, "
        "a bound on the one-vs-rest MI",
        "views_and_critic",
        "one_vs_rest",
        _sufficient_statistics,
        "global_batch",
        (
            Param("normalize", False, flag, "re-normalise the rest's mean"),
            Param(
                "bound",
                "infonce",
                one_of(pairwise_names),
                "the pairwise bound on the set scores",
            ),
        ),
        bound=lambda k, params: entry(params["bound"]).is_bound(k, {}),
        source="Shidani et al. 2024, Thm 2.4 and Algorithm 2; "
        "docs/polyview.md#sufficient_statistics",
    )
)


# -------------------------------------------------------------------------- embeddings only


def _barlow_loss(ctx: LossContext, params: Mapping[str, Any]) -> nn.Module:
    return _EmbeddingLoss(barlow.MultiViewBarlowLoss(params["beta"]))


register(
    Entry(
        "barlow_multiview",
        "multi-view Barlow Twins (Ghosh, Agrawal et al. 2024): invariance + beta * redundancy "
        "of standardised embeddings; not an MI objective, ignores the temperature",
        "embeddings",
        "none",
        None,
        "global_statistic",
        (
            Param(
                "beta",
                0.0051,
                real_in(0.0, math.inf, low_open=False, high_open=True),
                "weight of the off-diagonal (redundancy) term, >= 0",
            ),
        ),
        loss=_barlow_loss,
        source="Ghosh, Agrawal et al. 2024; Zbontar et al. 2021",
    )
)
