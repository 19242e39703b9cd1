"""ResNet encoders with a SimCLR projector; all M views of a batch go through one forward pass.

A backbone maps images ``(N, C, H, W)`` to features ``(N, F)`` (the representation a probe
scores); the projector maps features to the embeddings ``(N, D)`` an objective sees (Chen et al.
2020, "A Simple Framework for Contrastive Learning of Visual Representations", arXiv 2002.05709).

Small images (the default: side <= 64 pixels) get the CIFAR stem (3x3 convolution, stride 1,
padding 1, no max-pool) in place of ImageNet's 7x7 stride-2 convolution and max-pool, which would
shrink a 32x32 image to 8x8 before the first residual block.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

from mibounds._checks import check_at_least, check_choice

__all__ = [
    "ARCHS",
    "STEMS",
    "Encoder",
    "backbone",
    "min_image_size",
    "projector",
]

#: name -> (torchvision block, layers); "tiny" is ResNet(BasicBlock, [1, 1, 1, 1]), sized for
#: CPU runs (names, so that listing them does not import torchvision)
ARCHS: dict[str, tuple[str, list[int]]] = {
    "tiny": ("BasicBlock", [1, 1, 1, 1]),
    "resnet18": ("BasicBlock", [2, 2, 2, 2]),
    "resnet34": ("BasicBlock", [3, 4, 6, 3]),
    "resnet50": ("Bottleneck", [3, 4, 6, 3]),
}
STEMS = ("auto", "cifar", "imagenet")
_STRIDE = {"cifar": 8, "imagenet": 32}  # total downsampling of the backbone before pooling


def _resolve_stem(stem: str, image_size: int) -> str:
    check_choice(stem, STEMS, "stem")
    if stem == "auto":
        return "cifar" if image_size <= 64 else "imagenet"
    return stem


def min_image_size(stem: str, image_size: int) -> int:
    """Smallest input side the stem accepts: one pixel left after all its stride-2 stages."""
    return _STRIDE[_resolve_stem(stem, image_size)]


def backbone(
    arch: str = "resnet18", *, in_channels: int = 3, image_size: int = 32, stem: str = "auto"
) -> tuple[nn.Module, int]:
    """A torchvision ResNet without its classifier: ``(N, C, H, W) -> (N, F)``.

    Args:
        arch: ``"tiny"``, ``"resnet18"``, ``"resnet34"`` or ``"resnet50"``.
        in_channels: image channels (1 for digits, 3 for colour).
        image_size: side of the (square) input; picks the stem when ``stem="auto"`` and is
            checked against the stem's total stride.
        stem: ``"cifar"`` (3x3 stride 1, no max-pool), ``"imagenet"`` or ``"auto"``.
    Returns:
        the module and its feature width F (512, or 2048 for ResNet-50).
    """
    check_choice(arch, tuple(ARCHS), "arch")
    check_at_least(in_channels, 1, "in_channels")
    stem = _resolve_stem(stem, image_size)
    if image_size < _STRIDE[stem]:
        raise ValueError(
            f"image_size {image_size} is too small for the {stem} stem: its stride-2 stages "
            f"downsample by {_STRIDE[stem]}, so images need a side >= {_STRIDE[stem]}"
        )
    from torchvision.models import resnet

    block, layers = ARCHS[arch]
    net = resnet.ResNet(getattr(resnet, block), layers)
    if stem == "cifar":
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    elif in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    features = net.fc.in_features
    net.fc = nn.Identity()
    return net, features


def projector(in_dim: int, hidden_dim: int = 2048, out_dim: int = 128) -> nn.Sequential:
    """SimCLR's projection head, ``(N, in_dim) -> (N, out_dim)``: Linear, BatchNorm, ReLU, Linear.

    The first linear layer has no bias: the BatchNorm after it would cancel one.
    """
    for value, name in ((in_dim, "in_dim"), (hidden_dim, "hidden_dim"), (out_dim, "out_dim")):
        check_at_least(value, 1, name)
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


class Encoder(nn.Module):
    """Backbone plus projector, applied to a batch of multi-view images in one pass.

    ``forward(x: (..., C, H, W)) -> (..., D)``; the leading dims (``K, M`` for views) are
    flattened into one batch of ``K * M`` images. One pass matters with BatchNorm: every view is
    normalised with the same batch statistics. With one pass per view, each view's statistics
    would differ slightly, and the network could tell a positive from a negative by them rather
    than by content (the leak SimCLR's global BatchNorm closes); one pass is also faster.

    ``features(x: (..., C, H, W)) -> (..., F)``: the backbone's representation, no projector.

    Args:
        arch, in_channels, image_size, stem: as ``backbone``.
        proj_hidden, proj_dim: widths of the projector (``proj_dim`` is D).
    """

    def __init__(
        self,
        arch: str = "resnet18",
        *,
        in_channels: int = 3,
        image_size: int = 32,
        stem: str = "auto",
        proj_hidden: int = 2048,
        proj_dim: int = 128,
    ) -> None:
        super().__init__()
        self.backbone, self.feature_dim = backbone(
            arch, in_channels=in_channels, image_size=image_size, stem=stem
        )
        self.projector = projector(self.feature_dim, proj_hidden, proj_dim)

    def _flat(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        if not isinstance(x, Tensor) or x.dim() < 4:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"images must have shape (..., C, H, W), got {got}")
        lead = tuple(x.shape[:-3])
        return x.reshape(math.prod(lead), *x.shape[-3:]), lead

    def features(self, x: Tensor) -> Tensor:
        flat, lead = self._flat(x)
        return self.backbone(flat).reshape(*lead, -1)

    def forward(self, x: Tensor) -> Tensor:
        flat, lead = self._flat(x)
        return self.projector(self.backbone(flat)).reshape(*lead, -1)
