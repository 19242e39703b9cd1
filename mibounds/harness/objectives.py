"""Training objectives: every estimator of ``mibounds.bounds`` and ``mibounds.polyview`` as a
function of a seed-batched critic and a batch.

An objective is called as ``objective(critic, batch, *, validate_args) -> (R, ...)``: the
estimate in nats for each of the R seeds (and any extra batch axes of ``batch``); training
maximises it. ``critic(x, y=None)`` maps seed-stacked inputs to seed-stacked scores: pairs
``(R, ..., K, d), (R, ..., K, d) -> (R, ..., K, K)``, views ``(R, ..., K, M, d) ->
(R, ..., K, M, K, M)``. The estimator itself runs once on the stacked scores, outside any vmap.

Objectives are stateless callables or stateful ``nn.Module``s (MINE's moving average; SogCLR's
per-item partitions keyed by ``batch.indices``, which need a finite dataset source). The trainer
moves modules to the device and switches them to ``eval()`` for the final estimate.
``register_objective`` adds new ones.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from mibounds import bounds, polyview
from mibounds._checks import check_params, suggest
from mibounds.harness.interface import Batch, BatchedCritic, Objective
from mibounds.sogclr import GlobalContrastive

__all__ = [
    "OBJECTIVES",
    "Objective",
    "ObjectiveSpec",
    "build_critic",
    "critic_class",
    "objective_spec",
    "register_objective",
]

ObjectiveBuilder = Callable[..., Objective]
"""``build(params, n_seeds)``, or ``build(params, n_seeds, n_items)`` for a per-item objective."""


@dataclass(frozen=True)
class ObjectiveSpec:
    """How to build an objective and what it estimates.

    Attributes:
        data: ``"pairs"`` (takes (x, y), no M) or ``"views"`` (takes M >= 2 views).
        target: the true MI the estimate is compared with: ``"pairwise"`` I(x; y) (or
            I(x_a; x_b) for views) or ``"one_vs_rest"`` I(x_a; X_{\\a}).
        build: ``build(params, n_seeds) -> Objective``; with ``per_item``,
            ``build(params, n_seeds, n_items)``.
        defaults / required: the keyword parameters it accepts.
        is_bound: ``is_bound(k, params)``, whether the estimate is a lower bound at batch size k.
        per_item: the objective keeps state per dataset item, keyed by ``batch.indices``. It
            then needs a finite source (``RunConfig`` refuses others), is built with the dataset
            size, and its final estimate is read on the training set, one pass over every item
            in ``eval()`` mode (the state exists only for the dataset's items), not on fresh
            held-out batches; the trainer adds the critic's held-out InfoNCE at K beside it.
        check: ``check(params)`` with the defaults filled in, raising ``ValueError`` on values
            the objective cannot take (run when the config is built, before any training).
    """

    name: str
    data: str
    target: str
    build: ObjectiveBuilder
    defaults: Mapping[str, Any]
    required: tuple[str, ...] = ()
    is_bound: Callable[[int, Mapping[str, Any]], bool] = lambda k, params: True
    per_item: bool = False
    check: Callable[[Mapping[str, Any]], None] | None = None

    def check_params(self, params: Mapping[str, Any]) -> None:
        check_params(f"objective {self.name!r}", params, self.defaults, self.required)
        if "bound" in params and params["bound"] not in bounds.PAIRWISE:
            raise ValueError(
                f"objective {self.name!r}: bound must be one of {sorted(bounds.PAIRWISE)}, "
                f"got {params['bound']!r}"
            )
        if self.check is not None:
            try:
                self.check(self.params(params))
            except ValueError as err:
                raise ValueError(f"objective {self.name!r}: {err}") from None

    def params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """The defaults overridden by ``given``."""
        return {**self.defaults, **given}


OBJECTIVES: dict[str, ObjectiveSpec] = {}


def register_objective(spec: ObjectiveSpec) -> ObjectiveSpec:
    """Make ``RunConfig(objective=spec.name)`` train with ``spec``."""
    if spec.data not in ("pairs", "views"):
        raise ValueError(f"data must be 'pairs' or 'views', got {spec.data!r}")
    if spec.target not in ("pairwise", "one_vs_rest"):
        raise ValueError(f"target must be 'pairwise' or 'one_vs_rest', got {spec.target!r}")
    OBJECTIVES[spec.name] = spec
    return spec


def objective_spec(name: str) -> ObjectiveSpec:
    """``OBJECTIVES[name]``, or a ValueError that lists the known names."""
    if name not in OBJECTIVES:
        raise ValueError(
            f"unknown objective {name!r}{suggest(name, OBJECTIVES)}; "
            f"expected one of {sorted(OBJECTIVES)}"
        )
    return OBJECTIVES[name]


# --------------------------------------------------------------------------- pairwise


class PairwiseObjective:
    """``estimator(critic(x, y))``: a pairwise bound on the ``(R, ..., K, K)`` scores."""

    def __init__(self, estimator: Callable[..., Tensor]) -> None:
        self.estimator = estimator

    def __call__(self, critic: BatchedCritic, batch: Batch, *, validate_args: bool) -> Tensor:
        return self.estimator(critic(batch.x, batch.y), validate_args=validate_args)


class MineObjective(nn.Module):
    """MINE (``bounds.MINE``) with one moving-average partition per seed while training; the
    held-out estimate (``eval()``) is the DV value, which is MINE's value without the state."""

    def __init__(self, momentum: float, n_seeds: int) -> None:
        super().__init__()
        self.mine = bounds.MINE(momentum, batch_shape=(n_seeds,))

    def forward(self, critic: BatchedCritic, batch: Batch, *, validate_args: bool) -> Tensor:
        scores = critic(batch.x, batch.y)
        if self.training:
            return self.mine(scores, validate_args=validate_args)
        return bounds.dv(scores, validate_args=validate_args)


def _pairwise(
    name: str, defaults: Mapping[str, Any] | None = None, required: Sequence[str] = ()
) -> None:
    function = getattr(bounds, name)

    def build(params: Mapping[str, Any], n_seeds: int) -> Objective:
        return PairwiseObjective(functools.partial(function, **params) if params else function)

    register_objective(
        ObjectiveSpec(
            name,
            "pairs",
            "pairwise",
            build,
            dict(defaults or {}),
            tuple(required),
            lambda k, params: bounds.is_bound(name, k, **params),
        )
    )


for _name in ("infonce", "nwj", "dv", "js"):
    _pairwise(_name)
_pairwise("smile", {"clip": 5.0})
_pairwise("interpolated", {"alpha": 0.01})
_pairwise("eqco", required=("alpha",))
register_objective(
    ObjectiveSpec(
        "mine",
        "pairs",
        "pairwise",
        lambda params, n: MineObjective(params["momentum"], n),
        {"momentum": 0.99},
        is_bound=lambda k, params: False,
    )
)


class SogCLRObjective(nn.Module):
    """SogCLR's global contrastive estimate on pairwise scores, one partition ``u_i`` per dataset
    item and seed (``mibounds.sogclr.GlobalContrastive``, ``batch_shape=(R,)``; Yuan et al. 2022,
    ICML, arXiv 2202.12387, Algorithm 1; bounds.md §7).

    ``forward(critic, batch) -> (R,)`` on one batch per seed (``batch.x, batch.y: (R, K, d)``,
    ``batch.indices: (R, K)``), or ``(R, B)`` on B batches per seed (``(R, B, K, d)``, read one
    batch at a time). With ``s = critic(x, y)``, in nats:

        train(): u_i <- (1 - gamma) u_i + gamma mean_{j != i} exp(s_ij)   (gamma = 1 on a first
                 visit), value mean_i [s_ii - log u_i], gradient that of SogCLR's surrogate
                 mean_i [s_ii - mean_{j != i} stopgrad(exp(s_ij) / u_i) s_ij];
        eval():  mean_i [s_ii - log u_i] with the stored u, which it does not move.

    What the number means (derivation, not a paper's claim). ``u_i`` averages minibatch
    partitions whose negatives are a uniform sample of the other items, so it estimates the
    dataset partition ``Z_n(x_i) = mean_{j != i} exp f(x_i, y_j)``, itself an estimate of
    ``Z(x_i) = E_{y ~ p(y)} exp f(x_i, y)``. Then ``s_ii - log u_i`` estimates
    ``log q(y_i | x_i) / p(y_i)`` for the self-normalised ``q(y | x) = p(y) e^f / Z(x)``, and
    with the exact Z, ``E[f(x, y)] - E log Z(x)`` is a lower bound on I(X; Y) (Barber-Agakov,
    Poole et al. 2019's TUBA with baseline a(x) = Z(x)) with no log K ceiling. There is no
    ``+ log K`` or ``+ log(K - 1)`` term: InfoNCE's log K turns its sum over K candidates into
    a mean, and ``u_i`` is already a mean. The global estimate is the plug-in of that bound,
    **an estimate, not a bound** (``is_bound`` False): ``E log u_i <= log E u_i`` (Jensen)
    biases it upwards, most at gamma = 0.9 where ``u_i`` is mostly the last batch's K - 1
    negatives (at gamma = 1 it is the decoupled minibatch InfoNCE, which exceeds I even at the
    optimal critic, ``mibounds.sogclr.global_contrastive``); u lags a critic still training;
    and the trainer reads it on the training items themselves (``ObjectiveSpec.per_item``), the
    pairs the critic was fitted to. The trainer reports beside it the critic's InfoNCE bound on
    fresh held-out batches (<= log K), which is a bound.

    SogCLR's analysis assumes bounded scores (cosine similarity over a temperature); with an
    unbounded critic and gamma < 1 training can diverge (``global_contrastive``), so use e.g.
    ``critic = {name = "separable", similarity = "cosine", temperature = 0.1}``.
    """

    def __init__(self, n_items: int, gamma: float, n_seeds: int) -> None:
        super().__init__()
        self.partitions = GlobalContrastive(n_items, gamma, batch_shape=(n_seeds,))

    def forward(self, critic: BatchedCritic, batch: Batch, *, validate_args: bool) -> Tensor:
        if batch.indices is None:
            raise ValueError(
                "objective 'sogclr' needs batch.indices (the rows' dataset indices), got None: "
                "its data source must be a finite dataset"
            )
        scores = critic(batch.x, batch.y)
        if scores.dim() == 3:
            return self.partitions(scores, batch.indices, validate_args=validate_args)
        parts = [
            self.partitions(scores[:, b], batch.indices[:, b], validate_args=validate_args)
            for b in range(scores.shape[1])
        ]
        return torch.stack(parts, dim=1)


def _check_gamma(params: Mapping[str, Any]) -> None:
    GlobalContrastive(2, params["gamma"])  # the module's own check of gamma, at config time


register_objective(
    ObjectiveSpec(
        "sogclr",
        "pairs",
        "pairwise",
        lambda params, n_seeds, n_items: SogCLRObjective(n_items, params["gamma"], n_seeds),
        {"gamma": 0.9},
        is_bound=lambda k, params: False,
        per_item=True,
        check=_check_gamma,
    )
)


# ------------------------------------------------------------------------------ views


class ViewsObjective:
    """``estimator(critic(views))``: a poly-view bound on the ``(R, ..., K, M, K, M)`` scores."""

    def __init__(self, estimator: Callable[..., Tensor]) -> None:
        self.estimator = estimator

    def __call__(self, critic: BatchedCritic, batch: Batch, *, validate_args: bool) -> Tensor:
        return self.estimator(critic(batch.x), validate_args=validate_args)


class SufficientStatisticsObjective:
    """``polyview.sufficient_statistics`` on the raw views: the critic's pairwise form scores one
    view against the mean of the sample's other views, ``F[a,i,j] = f(x_ia, mean_{b!=a} x_jb)``.
    For equicorrelated Gaussians that mean is a sufficient statistic of the rest (bounds.md §4).
    """

    def __init__(self, normalize: bool, bound: Callable[..., Tensor]) -> None:
        self.normalize = normalize
        self.bound = bound

    def __call__(self, critic: BatchedCritic, batch: Batch, *, validate_args: bool) -> Tensor:
        return polyview.sufficient_statistics(
            batch.x,
            critic=critic,
            normalize=self.normalize,
            bound=self.bound,
            validate_args=validate_args,
        )


def _same_view(params: Mapping[str, Any]) -> bool:
    """Whether a poly-view objective reads same-view candidates (the bounds) rather than the
    all-view candidates of the paper's Algorithm 1 (estimates that can exceed the MI)."""
    return params.get("negatives", "same_view") == "same_view"


def _check_negatives(params: Mapping[str, Any]) -> None:
    if params["negatives"] not in ("same_view", "all_views"):
        raise ValueError(
            f"negatives must be 'same_view' (the bound) or 'all_views' (Algorithm 1's "
            f"candidates, an estimate), got {params['negatives']!r}"
        )


def _check_multicrop(params: Mapping[str, Any]) -> None:
    _check_negatives(params)
    if params["negatives"] == "all_views" and params["bound"] != "infonce":
        raise ValueError(
            "negatives = 'all_views' reads each view pair's NT-Xent and takes no pairwise bound; "
            f"got bound = {params['bound']!r}"
        )


register_objective(
    ObjectiveSpec(
        "multicrop",
        "views",
        "pairwise",
        lambda params, n: ViewsObjective(
            functools.partial(
                polyview.multicrop,
                bound=bounds.PAIRWISE[params["bound"]],
                negatives=params["negatives"],
            )
        ),
        {"bound": "infonce", "negatives": "same_view"},
        is_bound=lambda k, params: (
            _same_view(params) and bounds.is_bound(params.get("bound", "infonce"), k)
        ),
        check=_check_multicrop,
    )
)
for _name in ("arithmetic", "geometric"):
    register_objective(
        ObjectiveSpec(
            _name,
            "views",
            "one_vs_rest",
            functools.partial(
                lambda fn, params, n: ViewsObjective(
                    functools.partial(fn, negatives=params["negatives"])
                ),
                getattr(polyview, _name),
            ),
            {"negatives": "same_view"},
            is_bound=lambda k, params: _same_view(params),
            check=_check_negatives,
        )
    )
register_objective(
    ObjectiveSpec(
        "arithmetic_printed",
        "views",
        "one_vs_rest",
        lambda params, n: ViewsObjective(
            functools.partial(
                polyview.contrastive_estimate,
                aggregate="arithmetic_printed",
                negatives=params["negatives"],
            )
        ),
        {"negatives": "all_views"},
        is_bound=lambda k, params: False,
        check=_check_negatives,
    )
)
register_objective(
    ObjectiveSpec(
        "sufficient_statistics",
        "views",
        "one_vs_rest",
        lambda params, n: SufficientStatisticsObjective(
            params["normalize"], bounds.PAIRWISE[params["bound"]]
        ),
        {"normalize": False, "bound": "infonce"},
        is_bound=lambda k, params: bounds.is_bound(params.get("bound", "infonce"), k),
    )
)


# ---------------------------------------------------------------------------- critics


def critic_class(name: str, params: Mapping[str, Any]) -> type[nn.Module]:
    """The critic class ``CRITICS[name]``, after checking ``params`` against its signature
    (every argument but the data dimension)."""
    from mibounds.critics import CRITICS

    if name not in CRITICS:
        raise ValueError(
            f"unknown critic {name!r}{suggest(str(name), CRITICS)}; "
            f"expected one of {sorted(CRITICS)}"
        )
    cls = CRITICS[name]
    arguments = list(inspect.signature(cls).parameters.values())[1:]
    defaults = {p.name: p.default for p in arguments if p.default is not inspect.Parameter.empty}
    required = [p.name for p in arguments if p.default is inspect.Parameter.empty]
    check_params(f"critic {name!r}", params, defaults, required)
    return cls


def build_critic(name: str, params: Mapping[str, Any], d: int) -> nn.Module:
    """``CRITICS[name](d, **params)``."""
    return critic_class(name, params)(d, **params)
