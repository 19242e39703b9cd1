"""``logsumexp`` for the estimators: the same values as ``torch.logsumexp``, cheaper on trained
critics.

Two costs of ``torch.logsumexp`` on CPU grow as a critic sharpens. Its backward recomputes
``exp(x - lse)`` over the whole input, where the forward's exponentials could be kept; and
``exp`` of an argument below float32's underflow point (about -87) leaves the vectorised kernel
for a slow path, 10-30x slower per element. A trained critic's score rows span hundreds of nats,
so most entries of a large score tensor sit there. Here the forward keeps ``exp(x - max)``
for a one-pass backward, and clamps ``x - max`` at ``4 log(eps)`` (-64 in float32), where
``exp`` is still fast: a clamped entry adds at most ``eps^4`` relative to the row's largest
term (which contributes 1), far below rounding, so the value is unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _floor(dtype: torch.dtype) -> float:
    """``4 log(eps)``: entries this far below the row maximum do not move the sum."""
    return 4.0 * math.log(torch.finfo(dtype).eps)


class _LogSumExp(torch.autograd.Function):
    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, dim: int) -> tuple[Tensor, Tensor, Tensor]:
        top = x.amax(dim, keepdim=True)
        # rows of -inf (every candidate masked) or with a +inf entry: shift by 0, as torch does
        m = torch.where(top.isfinite(), top, torch.zeros((), dtype=top.dtype, device=top.device))
        e = (x - m).clamp_min(_floor(x.dtype)).exp_()
        s = e.sum(dim, keepdim=True)
        # a row of -inf is -inf, not the clamp's log(K) + 4 log(eps)
        out = (m + s.log()).masked_fill(top == -math.inf, -math.inf)
        return out, e, s

    @staticmethod
    def setup_context(ctx, inputs, output) -> None:
        x, dim = inputs
        _, e, s = output
        ctx.dim = dim
        ctx.save_for_backward(x, e, s)
        ctx.mark_non_differentiable(e, s)

    @staticmethod
    def backward(ctx, grad: Tensor, _e: Tensor, _s: Tensor) -> tuple[Tensor, None]:
        x, e, s = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph: the softmax as differentiable ops, so higher derivatives are right
            return grad * torch.softmax(x, ctx.dim), None
        return e * (grad / s), None


def logsumexp(x: Tensor, dim: int, keepdim: bool = False) -> Tensor:
    """``log sum_j exp(x[..., j, ...])`` over ``dim``, in x's dtype; ``torch.logsumexp``'s value
    (to rounding) and gradient ``softmax(x, dim)``, see the module note for the cost."""
    dim = dim % x.dim() if x.dim() else 0
    out = _LogSumExp.apply(x, dim)[0]
    return out if keepdim else out.squeeze(dim)
