"""Critics: batched score functions ``f(x, y)`` for the MI bounds, learned and analytic.

Every critic (docs/conventions.md#score-layouts) maps

- pairwise: ``x: (..., K, d), y: (..., K, d) -> scores: (..., K, K)``, ``scores[..., i, j] =
  f(x_i, y_j)``, positives on the diagonal; leading dimensions are batch dimensions;
- multi-view: ``x: (..., K, M, d) -> S: (..., K, M, K, M)``, ``S[..., i, a, j, b] =
  f(x_{i,a}, x_{j,b})``: the pairwise critic on the ``K M`` flattened views, one batched call.
  S is a non-contiguous view with the candidate sample j innermost in memory, the axis the
  poly-view bounds reduce over (``reshape`` it, or ``contiguous()`` before ``view``).

Critics of Poole et al. 2019 (arXiv 1905.06922, §5): separable ``g(x)^T h(y)``, bilinear
``x^T W y`` and concat ``MLP([x, y])``; plus the exact log density ratios of
``mibounds.gaussian`` as critics, to test estimators without training.

R critics of one architecture run as one model (``mibounds.harness.StackedCritic``): the
critics here are ``stackable``, their forward unchanged computes R copies at once when every
parameter carries a leading copy axis R and the inputs carry the same leading axis, in batched
matmuls (``Linear``). Any other critic with no data-dependent Python control flow stacks under
``torch.vmap`` instead, several times slower on small models. Nothing assumes a device:
parameters move with ``.to(device)`` and every tensor is made from the inputs.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable
from typing import ClassVar

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn

from mibounds._checks import (
    check_at_least,
    check_choice,
    check_correlation,
    check_layout,
    check_pairs,
    check_positive,
)
from mibounds._numerics import between_all_views
from mibounds.gaussian import one_vs_rest_log_ratio, pair_log_ratio

__all__ = [
    "CRITICS",
    "SIMILARITIES",
    "AnalyticOneVsRestCritic",
    "AnalyticPairCritic",
    "BilinearCritic",
    "ConcatCritic",
    "Critic",
    "Linear",
    "SeparableCritic",
    "mlp",
]

SIMILARITIES = ("dot", "cosine")


class Linear(nn.Linear):
    """``nn.Linear`` that also runs R stacked copies: with ``weight: (R, out, in)`` and ``bias:
    (R, out)`` it maps ``(R, ..., in) -> (R, ..., out)``, copy r on slice r.

    One ``baddbmm`` over the copies: ``torch.vmap`` of ``nn.Linear`` computes the same at about
    twice the cost per layer, and vmap's overhead on every other op of a small critic more.

    Example:
        >>> import torch
        >>> from mibounds.critics import Linear
        >>> layer = Linear(4, 2)
        >>> tuple(layer(torch.zeros(5, 4)).shape)
        (5, 2)
    """

    def forward(self, x: Tensor) -> Tensor:
        if self.weight.dim() == 2:
            return super().forward(x)
        r, out_dim, in_dim = self.weight.shape
        flat = x.reshape(r, -1, in_dim)
        if self.bias is None:
            out = flat @ self.weight.mT
        else:
            out = torch.baddbmm(self.bias.unsqueeze(-2), flat, self.weight.mT)
        return out.reshape(*x.shape[:-1], out_dim)


def mlp(
    in_dim: int,
    hidden_dim: int,
    n_hidden: int,
    out_dim: int,
    activation: Callable[[], nn.Module] = nn.ReLU,
) -> nn.Sequential:
    """``n_hidden`` layers ``Linear -> activation`` of width ``hidden_dim``, then a ``Linear`` to
    ``out_dim``: ``(..., in_dim) -> (..., out_dim)``. ``n_hidden = 0`` is one linear map.
    Stackable (see ``Linear``) for an elementwise ``activation``.

    Example:
        >>> import torch
        >>> from mibounds.critics import mlp
        >>> tuple(mlp(3, 16, 2, 8)(torch.zeros(10, 3)).shape)
        (10, 8)
    """
    check_at_least(in_dim, 1, "in_dim")
    check_at_least(hidden_dim, 1, "hidden_dim")
    check_at_least(n_hidden, 0, "n_hidden")
    check_at_least(out_dim, 1, "out_dim")
    layers: list[nn.Module] = []
    width = in_dim
    for _ in range(n_hidden):
        layers += [Linear(width, hidden_dim), activation()]
        width = hidden_dim
    layers.append(Linear(width, out_dim))
    return nn.Sequential(*layers)


class Critic(nn.Module, abc.ABC):
    """A pairwise critic ``f(x, y)``; subclasses implement :meth:`pairwise` on checked inputs.

    ``forward(x, y)``: ``(..., K, d), (..., K, d) -> (..., K, K)``;
    ``forward(x)``: ``(..., K, M, d) -> (..., K, M, K, M)``, ``S[i, a, j, b] = f(x_ia, x_jb)``.

    The inputs are cast to the dtype of the critic's parameters (float64 data into a float32
    critic gives float32 scores), so data and model need not be made in one dtype; a critic
    without parameters (the analytic ones) computes in the inputs' dtype.

    ``stackable``: a subclass that sets it promises that its forward, given parameters with a
    leading copy axis R (``torch.func.stack_module_state`` of R instances) and inputs with the
    same leading axis, computes copy r on slice r; ``StackedCritic`` then calls it directly
    instead of through ``torch.vmap``.

    Example:
        >>> import torch
        >>> from mibounds.critics import Critic
        >>> class Dot(Critic):  # a critic needs only its pairwise scores
        ...     def pairwise(self, x, y):
        ...         return x @ y.mT
        >>> tuple(Dot()(torch.randn(5, 3, 2)).shape)  # every view against every view
        (5, 3, 5, 3)
    """

    stackable: ClassVar[bool] = False

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = None if dim is None else check_at_least(dim, 1, "dim")

    @abc.abstractmethod
    def pairwise(self, x: Tensor, y: Tensor) -> Tensor:
        """``x, y: (..., K, d) -> (..., K, K)``, ``[..., i, j] = f(x_i, y_j)``; no checks."""

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Pairwise ``(..., K, K)`` scores of ``x, y: (..., K, d)``, or, without ``y``, the
        multi-view ``(..., K, M, K, M)`` scores of ``x: (..., K, M, d)``."""
        if y is None:
            check_layout(x, "x", ("K", "M", "d"))
        else:
            check_pairs(x, y)
        if self.dim is not None and x.shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__} was built for d = {self.dim}, got inputs of shape "
                f"{tuple(x.shape)} (d = {x.shape[-1]})"
            )
        weight = next(self.parameters(), None)  # the first parameter: ~3 us, not a full walk
        if weight is not None and weight.is_floating_point():  # .to of the same dtype: no copy
            x = x.to(weight.dtype)
            y = None if y is None else y.to(weight.dtype)
        if y is None:
            return between_all_views(self.pairwise, x)
        return self.pairwise(x, y)


class SeparableCritic(Critic):
    """Separable critic ``f(x, y) = sim(g(x), h(y)) / temperature``; Poole et al. 2019, §5.

    ``sim`` is the dot product or the cosine similarity (then ``|f| <= 1 / temperature``, the
    SimCLR form); ``g`` and ``h`` are MLPs ``d -> embed_dim`` (one shared MLP if ``shared``).
    Costs two encoder passes over K rows and one ``(K, D) @ (D, K)`` product.

    Example:
        >>> import torch
        >>> from mibounds.critics import SeparableCritic
        >>> critic = SeparableCritic(2, embed_dim=8, hidden_dim=16)
        >>> x = torch.randn(5, 2)
        >>> tuple(critic(x, x).shape), tuple(critic(torch.randn(5, 3, 2)).shape)  # pairs; 3 views
        ((5, 5), (5, 3, 5, 3))
    """

    stackable = True

    def __init__(
        self,
        dim: int,
        embed_dim: int = 32,
        hidden_dim: int = 256,
        n_hidden: int = 2,
        shared: bool = False,
        similarity: str = "dot",
        temperature: float = 1.0,
    ) -> None:
        super().__init__(dim)
        self.similarity = check_choice(similarity, SIMILARITIES, "similarity")
        self.temperature = check_positive(temperature, "temperature")
        self.shared = bool(shared)
        self.g = mlp(dim, hidden_dim, n_hidden, embed_dim)
        self.h = None if self.shared else mlp(dim, hidden_dim, n_hidden, embed_dim)

    def embed_x(self, x: Tensor) -> Tensor:
        """``(..., d) -> (..., D)``: the encoder ``g`` of the anchors (not normalised)."""
        return self.g(x)

    def embed_y(self, y: Tensor) -> Tensor:
        """``(..., d) -> (..., D)``: the encoder ``h`` of the candidates (``g`` if shared)."""
        return (self.g if self.h is None else self.h)(y)

    def pairwise(self, x: Tensor, y: Tensor) -> Tensor:
        gx, hy = self.embed_x(x), self.embed_y(y)
        if self.similarity == "cosine":
            gx, hy = nnf.normalize(gx, dim=-1), nnf.normalize(hy, dim=-1)
        # scaling the K x D embeddings costs 1/K of scaling the K x K scores, forward and back
        return (gx / self.temperature) @ hy.mT

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, shared={self.shared}, similarity={self.similarity!r}, "
            f"temperature={self.temperature}"
        )


class BilinearCritic(Critic):
    """Bilinear critic ``f(x, y) = x^T W y`` with a learned ``W: (d, d)``; Poole et al. 2019, §5.

    ``W`` starts uniform in ``[-1/sqrt(d), 1/sqrt(d)]`` (``nn.Linear``'s range).

    Example:
        >>> import torch
        >>> from mibounds.critics import BilinearCritic
        >>> tuple(BilinearCritic(3)(torch.randn(4, 3), torch.randn(4, 3)).shape)
        (4, 4)
    """

    stackable = True

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        bound = 1.0 / math.sqrt(dim)
        self.weight = nn.Parameter(torch.empty(dim, dim).uniform_(-bound, bound))

    def pairwise(self, x: Tensor, y: Tensor) -> Tensor:
        w = self.weight
        if w.dim() == 3:  # R stacked copies against (R, ..., K, d): align R, broadcast the rest
            w = w.view(w.shape[0], *[1] * (x.dim() - 3), *w.shape[1:])
        return (x @ w) @ y.mT

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class ConcatCritic(Critic):
    """Concat critic ``f(x, y) = MLP([x, y])`` evaluated on all K^2 pairs; Poole et al. 2019, §5.

    The pairs are a broadcast ``(..., K, K, 2d)`` tensor, so the cost is ``K^2`` MLP passes
    (``(K M)^2`` in multi-view mode): the most expressive and the most expensive critic.

    Example:
        >>> import torch
        >>> from mibounds.critics import ConcatCritic
        >>> tuple(ConcatCritic(2, hidden_dim=8)(torch.randn(4, 2), torch.randn(4, 2)).shape)
        (4, 4)
    """

    stackable = True

    def __init__(self, dim: int, hidden_dim: int = 256, n_hidden: int = 2) -> None:
        super().__init__(dim)
        self.net = mlp(2 * dim, hidden_dim, n_hidden, 1)

    def pairwise(self, x: Tensor, y: Tensor) -> Tensor:
        rows, cols = torch.broadcast_tensors(x.unsqueeze(-2), y.unsqueeze(-3))
        return self.net(torch.cat([rows, cols], dim=-1)).squeeze(-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class AnalyticPairCritic(Critic):
    """The optimal critic on Gaussian pairs or equicorrelated views with correlation ``rho``:
    ``f*(x, y) = log p(y | x) / p(y)`` (``mibounds.gaussian.pair_log_ratio``; docs/gaussian.md).

    No parameters; works for any d. Multi-view mode gives ``multiview_log_ratio``.

    Example:
        >>> import torch
        >>> from mibounds import bounds, gaussian
        >>> from mibounds.critics import AnalyticPairCritic
        >>> x, y = gaussian.sample_pairs(512, 1, 0.9, generator=torch.Generator().manual_seed(0))
        >>> estimate = bounds.infonce(AnalyticPairCritic(0.9)(x, y))
        >>> bool(abs(estimate - gaussian.mi_from_rho(0.9, 1)) < 0.1)
        True
    """

    stackable = True

    def __init__(self, rho: float) -> None:
        super().__init__()
        self.rho = check_correlation(rho)

    def pairwise(self, x: Tensor, y: Tensor) -> Tensor:
        return pair_log_ratio(x, y, self.rho)

    def extra_repr(self) -> str:
        return f"rho={self.rho}"


class AnalyticOneVsRestCritic(nn.Module):
    """The optimal set critic on M equicorrelated views: ``forward(z: (..., K, M, d)) ->
    F: (..., M, K, K)``, ``F[a, i, j] = log p(x_{i,a} | X_{j,\\a}) / p(x_{i,a})``
    (``mibounds.gaussian.one_vs_rest_log_ratio``; docs/gaussian.md#analytic-critics).

    Example:
        >>> import torch
        >>> from mibounds import gaussian
        >>> from mibounds.critics import AnalyticOneVsRestCritic
        >>> z = gaussian.sample_views(16, 4, 1, 0.9, generator=torch.Generator().manual_seed(0))
        >>> tuple(AnalyticOneVsRestCritic(0.9)(z).shape)  # (M, K, K)
        (4, 16, 16)
    """

    def __init__(self, rho: float) -> None:
        super().__init__()
        self.rho = check_correlation(rho, allow_negative=False)

    def forward(self, z: Tensor) -> Tensor:
        return one_vs_rest_log_ratio(z, self.rho)

    def extra_repr(self) -> str:
        return f"rho={self.rho}"


CRITICS: dict[str, type[Critic]] = {
    "separable": SeparableCritic,
    "bilinear": BilinearCritic,
    "concat": ConcatCritic,
}
