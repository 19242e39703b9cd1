"""Multi-view Barlow Twins with an orthogonality constraint: a non-MI baseline objective.

Ghosh, Agrawal et al. 2024, "Harnessing small projectors and multiple views for efficient vision
pretraining" (NeurIPS, arXiv 2312.10725), which extends Barlow Twins (Zbontar et al. 2021,
arXiv 2103.03230) to M views and argues for a strong orthogonality weight ``beta`` with a small
projector. Embeddings ``z: (..., K, M, D)``: K samples, M views, D projector dimensions.

What is implemented, for views ``a = 1..M``:

    zhat_a   = z_a standardised per dimension over the K samples of the batch
    zbar_-a  = mean_{b != a} zhat_b                      (the mean embedding of the other views)
    C^a      = zhat_a^T zbar_-a / K                      (D x D cross-correlation)
    invariance   = mean_a sum_i (1 - C^a_ii)^2
    redundancy   = mean_a sum_{i != j} (C^a_ij)^2        (the orthogonality penalty)
    loss         = invariance + beta * redundancy

At M = 2, ``C^2 = (C^1)^T``, so both views give the same terms and the loss is exactly Barlow
Twins, ``sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2`` with ``C = zhat_1^T zhat_2 / K`` and
**lambda = beta** (Zbontar et al.'s lambda = 0.0051 at D = 8192 is the default here).

Where it may differ from the paper: its equation could not be read here; this follows the text
("each view matched to the mean of the other views, orthogonality on the mean embedding's
cross-correlation") and the authors' public code (fastssl, ``BarlowTwinLoss``). That code
special-cases M = 2 to the form above, and for M > 2 matches each view to the mean of *all*
views (itself included), puts the penalty on the auto-correlation of that mean, and standardises
over all views jointly with the unbiased std. Here one form serves every M (and so reduces to
Barlow Twins exactly at M = 2), and each view is standardised on its own with the biased
variance, as Barlow Twins' affine-free batch norm does, so identical views give C_ii = 1 and a
zero invariance term. Barlow Twins' optional overall loss scale (e.g. 1/32) is not applied.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mibounds._checks import check_positive, check_views

__all__ = ["MultiViewBarlowLoss", "multiview_barlow", "multiview_barlow_terms"]


def _check_beta(beta: float) -> float:
    if not (isinstance(beta, (int, float)) and 0.0 <= beta < float("inf")):
        raise ValueError(f"beta must be a finite number >= 0, got {beta!r}")
    return float(beta)


def multiview_barlow_terms(
    z: Tensor, *, eps: float = 1e-5, validate_args: bool = True
) -> tuple[Tensor, Tensor]:
    """The invariance and orthogonality (redundancy) terms of multi-view Barlow Twins.

    ``invariance = mean_a sum_i (1 - C^a_ii)^2``, ``redundancy = mean_a sum_{i!=j} (C^a_ij)^2``,
    ``C^a = zhat_a^T mean_{b!=a} zhat_b / K`` (Ghosh, Agrawal et al. 2024; Zbontar et al. 2021).

    Args:
        z: ``(..., K, M, D)`` embeddings, K >= 2 samples, M >= 2 views.
        eps: floor on a dimension's batch variance, so a constant dimension divides by
            ``sqrt(eps)`` rather than zero; every other dimension is standardised exactly.
    Returns:
        ``(invariance, redundancy)``, each ``(...)``, dimensionless. Memory ``O(M D^2)``.

    Example:
        >>> import torch
        >>> from mibounds.barlow import multiview_barlow_terms
        >>> z = torch.randn(32, 3, 8, generator=torch.Generator().manual_seed(0))
        >>> invariance, redundancy = multiview_barlow_terms(z)
        >>> bool(invariance > 0), bool(redundancy > 0)
        (True, True)
    """
    eps = check_positive(eps, "eps")
    x = check_views(z, validate_args)
    k, m = x.shape[-3], x.shape[-2]
    centred = x - x.mean(-3, keepdim=True)
    zhat = centred * centred.pow(2).mean(-3, keepdim=True).clamp_min(eps).rsqrt()
    others = (zhat.sum(-2, keepdim=True) - zhat) / (m - 1)
    C = torch.einsum("...kai,...kaj->...aij", zhat, others) / k
    diagonal = C.diagonal(dim1=-2, dim2=-1)
    invariance = (1.0 - diagonal).pow(2).sum(-1).mean(-1)
    eye = torch.eye(C.shape[-1], dtype=torch.bool, device=C.device)
    redundancy = C.masked_fill(eye, 0.0).pow(2).sum((-2, -1)).mean(-1)
    return invariance, redundancy


def multiview_barlow(
    z: Tensor, beta: float = 0.0051, *, eps: float = 1e-5, validate_args: bool = True
) -> Tensor:
    """Multi-view Barlow Twins loss, ``invariance + beta * redundancy`` (to minimise).

    ``L = mean_a [ sum_i (1 - C^a_ii)^2 + beta sum_{i!=j} (C^a_ij)^2 ]``,
    ``C^a = zhat_a^T mean_{b!=a} zhat_b / K``: Ghosh, Agrawal et al. 2024's multi-view Barlow
    Twins; at M = 2 exactly Zbontar et al. 2021's L_BT with lambda = beta. Not an MI estimate.

    Args:
        z: ``(..., K, M, D)`` embeddings (projector outputs, not normalised).
        beta: orthogonality weight >= 0.
        eps: variance floor of the standardisation (see ``multiview_barlow_terms``).
    Returns:
        ``(...)``.

    Example:
        >>> import torch
        >>> from mibounds.barlow import multiview_barlow
        >>> z = torch.randn(32, 1, 8, generator=torch.Generator().manual_seed(0)).expand(32, 3, 8)
        >>> float(multiview_barlow(z, beta=0.0)) < 1e-6  # identical views: no invariance term
        True
    """
    beta = _check_beta(beta)
    invariance, redundancy = multiview_barlow_terms(z, eps=eps, validate_args=validate_args)
    return invariance + beta * redundancy


class MultiViewBarlowLoss(nn.Module):
    """Multi-view Barlow Twins loss as a module (``multiview_barlow``).

    ``forward(z: (..., K, M, D)) -> (...)``. ``beta`` is the orthogonality weight (Barlow Twins'
    lambda at M = 2); Ghosh, Agrawal et al. find the best beta grows as the projector narrows.

    Example:
        >>> import torch
        >>> from mibounds.barlow import MultiViewBarlowLoss, multiview_barlow
        >>> z = torch.randn(32, 3, 8, generator=torch.Generator().manual_seed(0))
        >>> bool(torch.isclose(MultiViewBarlowLoss(0.01)(z), multiview_barlow(z, 0.01)))
        True
    """

    def __init__(self, beta: float = 0.0051, eps: float = 1e-5) -> None:
        super().__init__()
        self.beta = _check_beta(beta)
        self.eps = check_positive(eps, "eps")

    def forward(self, z: Tensor, *, validate_args: bool = True) -> Tensor:
        return multiview_barlow(z, self.beta, eps=self.eps, validate_args=validate_args)

    def extra_repr(self) -> str:
        return f"beta={self.beta}, eps={self.eps}"
