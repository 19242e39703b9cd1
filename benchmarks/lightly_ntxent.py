"""A re-implementation of lightly's NT-Xent loss, the peer ``bench_polyview_loss.py`` times
``polyview_loss`` against at M = 2 (lightly is not a dependency of this project).

Written from the algorithm of ``lightly.loss.NTXentLoss.forward`` (lightly-ai/lightly,
``lightly/loss/ntx_ent_loss.py``, SimCLR's loss, Chen et al. 2020), in its single-process form
without a memory bank, step for step so that the time is that library's:

1. unit-normalise both views' embeddings ``out0, out1: (K, D)``;
2. four ``(K, K)`` similarity blocks, each an einsum divided by the temperature:
   ``00, 01, 10, 11``;
3. drop the diagonal of the same-view blocks ``00`` and ``11`` by boolean indexing, leaving
   ``(K, K - 1)`` each;
4. concatenate to ``(2K, 2K - 1)`` logits, rows ``[01 | 00]`` then ``[10 | 11]``;
5. ``torch.nn.CrossEntropyLoss`` (mean) with the positive's column, ``arange(K)`` twice.
"""

from __future__ import annotations

import torch
import torch.nn.functional as nnf
from torch import Tensor


def lightly_nt_xent(out0: Tensor, out1: Tensor, temperature: float) -> Tensor:
    """NT-Xent of two views ``(K, D)`` each, in nats, as lightly computes it (see the module)."""
    k = out0.shape[0]
    u0, u1 = nnf.normalize(out0, dim=1), nnf.normalize(out1, dim=1)
    same = torch.eye(k, dtype=torch.bool, device=out0.device)
    blocks = {
        name: torch.einsum("nc,mc->nm", x, y) / temperature
        for name, (x, y) in {"00": (u0, u0), "01": (u0, u1), "10": (u1, u0), "11": (u1, u1)}.items()
    }
    view0 = torch.cat([blocks["01"], blocks["00"][~same].view(k, -1)], dim=1)
    view1 = torch.cat([blocks["10"], blocks["11"][~same].view(k, -1)], dim=1)
    labels = torch.arange(k, device=out0.device).repeat(2)
    return nnf.cross_entropy(torch.cat([view0, view1], dim=0), labels)
