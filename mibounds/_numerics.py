"""Small numerics every module shares (a leaf: it imports only ``_checks``).

``logsumexp`` and ``cross_entropy`` for the estimators: ``torch.logsumexp``'s values and
gradients, cheaper on trained critics.

On CPU, ``exp`` of an argument below float32's underflow point (about -87) leaves the vectorised
kernel for a slow path, 10-30x slower per element. A trained critic's score rows span hundreds
of nats, so most entries of a large score tensor sit there, in ``torch.logsumexp``'s forward and
again in its backward's ``exp(x - lse)``. Here ``x - max`` (and ``x - lse``) is clamped at
``4 log(eps)`` (-64 in float32), where ``exp`` is still fast: a clamped entry adds at most
``eps^4`` relative to the row's largest term (which contributes 1), far below rounding, so the
value is unchanged, and its gradient is off by less than ``eps^4``. The saved tensors are
torch's (the input and the result), and higher derivatives work.

Also: ``straight_through`` (report one value, back-propagate another's gradient),
``standard_normal`` (seed-determined Gaussian draws) and ``between_all_views`` (a pairwise
function between every two views of every two samples, the poly-view score layout).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from mibounds._checks import check_float_dtype


def _floor(dtype: torch.dtype) -> float:
    """``4 log(eps)``: entries this far below the row maximum do not move the sum."""
    return 4.0 * math.log(torch.finfo(dtype).eps)


class _LogSumExp(torch.autograd.Function):
    """``log sum exp x`` over ``dim`` (kept), minus ``x`` at ``index`` along ``dim`` if given."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, dim: int, index: Tensor | None) -> Tensor:
        top = x.amax(dim, keepdim=True)
        # rows of -inf (every candidate masked) or with a +inf entry: shift by 0, as torch does
        m = torch.where(top.isfinite(), top, torch.zeros((), dtype=top.dtype, device=top.device))
        s = (x - m).clamp_min_(_floor(x.dtype)).exp_().sum(dim, keepdim=True)
        # a row of -inf is -inf, not the clamp's log(K) + 4 log(eps)
        out = (m + s.log()).masked_fill(top == -math.inf, -math.inf)
        return out if index is None else out - x.gather(dim, index)

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, dim, index = inputs
        ctx.dim = dim
        ctx.save_for_backward(x, output, index)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        x, out, index = ctx.saved_tensors
        lse = out if index is None else out + x.gather(ctx.dim, index)
        if torch.is_grad_enabled():
            # create_graph: out-of-place differentiable ops, so higher derivatives are right
            dx = (x - lse).exp() * grad
            return (dx if index is None else dx.scatter_add(ctx.dim, index, -grad)), None, None
        dx = (x - lse).clamp_min_(_floor(x.dtype)).exp_().mul_(grad)
        # the subtracted entry's gradient lands in the same buffer: no x-sized zeros to add
        return (dx if index is None else dx.scatter_add_(ctx.dim, index, -grad)), None, None


def logsumexp(x: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """``log sum_j exp(x[..., j, ...])`` over ``dim``, in x's dtype; ``torch.logsumexp``'s value
    (to rounding) and gradient ``softmax(x, dim)``, see the module note for the cost."""
    dim = dim % x.dim() if x.dim() else 0
    out = _LogSumExp.apply(x, dim, None)
    return out if keepdim else out.squeeze(dim)


def cross_entropy(x: Tensor, target: Tensor) -> Tensor:
    """``x: (..., C), target: (...) -> (...)``: ``logsumexp_c x[..., c] - x[..., target]``, in
    nats; gradient ``softmax(x) - onehot(target)``, in one x-sized buffer (indexing x for the
    subtracted term would cost an x-sized zero fill and an add in the backward)."""
    index = target.unsqueeze(-1).expand(*x.shape[:-1], 1)
    return _LogSumExp.apply(x, x.dim() - 1, index).squeeze(-1)


def standard_normal(
    shape: tuple[int, ...], generator: torch.Generator | None, device, dtype: torch.dtype
) -> Tensor:
    """Draw on the generator's device in float32 at least, so the numbers depend on the seed
    only; then the caller moves them to ``device`` (default: where they were drawn)."""
    work = torch.promote_types(check_float_dtype(dtype), torch.float32)
    source = generator.device if generator is not None else device
    return torch.randn(shape, generator=generator, device=source, dtype=work)


def between_all_views(pairwise: Callable[[Tensor, Tensor], Tensor], z: Tensor) -> Tensor:
    """``(..., K, M, d) -> (..., K, M, K, M)``: a pairwise critic between every two views of
    every two samples, as one ``(KM, MK)`` call on the flattened views.

    The candidates go in view-major order, so the result is a view whose innermost axis in
    memory is the candidate sample j: the axis every poly-view bound reduces over, which then
    needs no transposing copy (``polyview._candidates_last``).
    """
    k, m = z.shape[-3], z.shape[-2]
    anchors, candidates = z.flatten(-3, -2), z.transpose(-3, -2).flatten(-3, -2)
    scores = pairwise(anchors, candidates)  # [..., (i, a), (b, j)]
    return scores.unflatten(-1, (m, k)).transpose(-1, -2).unflatten(-3, (k, m))


def straight_through(value: Tensor, gradient_surrogate: Tensor) -> Tensor:
    """Report ``value`` while back-propagating the gradient of ``gradient_surrogate``.

    Written as ``value + (g - g.detach())`` rather than ``g + (value - g).detach()``: the
    forward result is then ``value`` to the last bit, whatever the scale of ``g``.
    """
    return value.detach() + (gradient_surrogate - gradient_surrogate.detach())
