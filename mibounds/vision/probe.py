"""Scoring a representation: a linear probe and a kNN classifier on frozen backbone features.

Features come from ``Encoder.features`` (the backbone, before the projector) in eval mode under
``torch.no_grad``: the backbone is frozen, its parameters and BatchNorm statistics untouched,
and its train/eval mode restored afterwards. Accuracies are top-1 on the held-out split, as
fractions in [0, 1].
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as nnf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from mibounds._checks import check_at_least, check_positive

__all__ = ["evaluate", "extract_features", "knn_accuracy", "linear_probe"]


@torch.no_grad()
def extract_features(
    encoder: nn.Module,
    dataset: Dataset,
    *,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """Backbone features of every item of ``dataset`` (items ``(image, label, index)``).

    Args:
        encoder: an ``Encoder`` (anything with ``features(x: (N, C, H, W)) -> (N, F)``).
    Returns:
        ``features: (N, F)`` float32 and ``labels: (N,)``, on ``device``.
    """
    was_training = encoder.training
    encoder.eval()
    try:
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers)
        feats, labels = [], []
        for images, y, _ in loader:
            feats.append(encoder.features(images.to(device)).float())
            labels.append(y.to(device))
    finally:
        encoder.train(was_training)
    return torch.cat(feats), torch.cat(labels)


def _check_split(x: Tensor, y: Tensor, name: str) -> None:
    if x.dim() != 2 or y.shape != (x.shape[0],):
        raise ValueError(
            f"{name} features must be (N, F) with labels (N,), got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )


@torch.no_grad()
def knn_accuracy(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    k: int = 200,
    temperature: float = 0.1,
    chunk: int = 1024,
) -> float:
    """Weighted kNN top-1 accuracy (Wu et al. 2018, "Unsupervised Feature Learning via
    Non-Parametric Instance Discrimination", arXiv 1805.01978): each of the k nearest training
    features by cosine similarity s votes for its class with weight ``exp(s / T)``.

    Args:
        train_x: ``(N, F)``, train_y: ``(N,)``; test_x: ``(Q, F)``, test_y: ``(Q,)``.
        k: neighbours (clipped to N). temperature: T.
        chunk: test rows per similarity block (bounds memory at ``chunk x N``).
    Returns:
        the fraction of test items whose weighted vote is their label.
    """
    _check_split(train_x, train_y, "train")
    _check_split(test_x, test_y, "test")
    check_at_least(k, 1, "k")
    t = check_positive(temperature, "temperature")
    classes = int(max(train_y.max(), test_y.max())) + 1
    bank = nnf.normalize(train_x.float(), dim=-1)
    k = min(k, bank.shape[0])
    correct = 0
    for start in range(0, test_x.shape[0], chunk):
        q = nnf.normalize(test_x[start : start + chunk].float(), dim=-1)
        sim, idx = (q @ bank.T).topk(k, dim=-1)
        votes = torch.zeros(q.shape[0], classes, device=q.device)
        votes.scatter_add_(1, train_y[idx], (sim / t).exp())
        correct += int((votes.argmax(-1) == test_y[start : start + chunk]).sum())
    return correct / test_x.shape[0]


def linear_probe(
    train_x: Tensor,
    train_y: Tensor,
    test_x: Tensor,
    test_y: Tensor,
    *,
    epochs: int = 100,
    lr: float = 0.01,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """Top-1 accuracy of a linear classifier trained on frozen features.

    Features are standardised with the train split's mean and std, then a ``Linear(F, C)`` is
    trained with softmax cross-entropy, AdamW and a cosine learning-rate schedule.

    Args:
        train_x: ``(N, F)``, train_y: ``(N,)``; test_x: ``(Q, F)``, test_y: ``(Q,)``.
    Returns:
        the fraction of test items classified correctly.
    """
    _check_split(train_x, train_y, "train")
    _check_split(test_x, test_y, "test")
    check_at_least(epochs, 1, "epochs")
    check_at_least(batch_size, 1, "batch_size")
    device = train_x.device
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    x, q = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(train_y.max(), test_y.max())) + 1
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = nn.Linear(x.shape[1], classes).to(device)
    steps = epochs * math.ceil(x.shape[0] / batch_size)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(epochs):
        order = torch.randperm(x.shape[0], generator=g).to(device)
        for batch in order.split(batch_size):
            loss = nnf.cross_entropy(head(x[batch]), train_y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    with torch.no_grad():
        return float((head(q).argmax(-1) == test_y).float().mean())


def evaluate(
    encoder: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    *,
    device: torch.device | str = "cpu",
    knn_k: int = 200,
    knn_temperature: float = 0.1,
    probe_epochs: int = 100,
    batch_size: int = 256,
    workers: int = 0,
    seed: int = 0,
) -> dict[str, float]:
    """kNN and linear-probe top-1 accuracy of ``encoder``'s frozen backbone features.

    ``train_set`` and ``test_set`` yield ``(image, label, index)`` with deterministic
    (evaluation) transforms. Returns ``{"knn_top1", "linear_top1", "feature_dim"}``.
    """
    kwargs = {"batch_size": batch_size, "device": device, "workers": workers}
    train_x, train_y = extract_features(encoder, train_set, **kwargs)
    test_x, test_y = extract_features(encoder, test_set, **kwargs)
    return {
        "knn_top1": knn_accuracy(
            train_x, train_y, test_x, test_y, k=knn_k, temperature=knn_temperature
        ),
        "linear_top1": linear_probe(
            train_x, train_y, test_x, test_y, epochs=probe_epochs, seed=seed
        ),
        "feature_dim": int(train_x.shape[1]),
    }
