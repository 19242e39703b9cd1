"""Multi-view augmentation: one image in, M independently augmented views out, ``(M, C, H, W)``.

SimCLR's augmentations (Chen et al. 2020, arXiv 2002.05709, appendix A) with torchvision
``transforms.v2``: random resized crop, horizontal flip, colour jitter (p = 0.8), grayscale
(p = 0.2) and, for large images only, Gaussian blur (p = 0.5, kernel about a tenth of the side,
as SimCLR uses on ImageNet and omits on CIFAR). A DataLoader stacks the items to
``(K, M, C, H, W)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor
from torchvision.transforms import v2

from mibounds._checks import check_at_least

__all__ = [
    "MIN_CROP_SIDE",
    "MultiView",
    "ViewConfig",
    "check_crop",
    "eval_transform",
    "view_transform",
]

#: a crop must keep at least this many source pixels per side, or it is a blur of one pixel
MIN_CROP_SIDE = 2


@dataclass(frozen=True)
class ViewConfig:
    """Strengths of the view augmentations.

    Attributes:
        image_size: side of every view in pixels (square).
        crop_scale: range of the crop's area as a fraction of the image's (RandomResizedCrop).
        jitter: colour-jitter strength s: brightness, contrast, saturation 0.8 s, hue 0.2 s
            (SimCLR uses s = 1 on ImageNet, 0.5 on CIFAR); 0 turns jitter off.
        jitter_p: probability of applying colour jitter.
        grayscale_p: probability of converting a view to grayscale.
        flip_p: probability of a horizontal flip (SimCLR: 0.5).
        blur: Gaussian blur with p = 0.5; ``None`` turns it on for images of side >= 96.
    """

    image_size: int = 32
    crop_scale: tuple[float, float] = (0.2, 1.0)
    jitter: float = 0.5
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    flip_p: float = 0.5
    blur: bool | None = None

    def __post_init__(self) -> None:
        check_at_least(self.image_size, 1, "image_size")
        low, high = self.crop_scale
        if not (0.0 < low <= high <= 1.0):
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        for name in ("jitter_p", "grayscale_p", "flip_p"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {p!r}")
        if not (math.isfinite(self.jitter) and self.jitter >= 0):
            raise ValueError(f"jitter must be a finite number >= 0, got {self.jitter!r}")

    @property
    def use_blur(self) -> bool:
        return self.image_size >= 96 if self.blur is None else self.blur


def check_crop(source_size: int, config: ViewConfig) -> None:
    """Raise if the smallest crop of a ``source_size`` image keeps under ``MIN_CROP_SIDE`` pixels
    a side: such views are single pixels blown up, with nothing left to learn from."""
    side = math.sqrt(config.crop_scale[0]) * source_size
    if side < MIN_CROP_SIDE:
        need = math.ceil(MIN_CROP_SIDE / math.sqrt(config.crop_scale[0]))
        raise ValueError(
            f"images of side {source_size} are too small for crop_scale {config.crop_scale}: the "
            f"smallest crop would be {side:.2f} pixels a side, under {MIN_CROP_SIDE}; use images "
            f"of side >= {need} or a larger minimum crop scale (>= "
            f"{(MIN_CROP_SIDE / source_size) ** 2:.3g})"
        )


def _normalize(mean: tuple[float, ...], std: tuple[float, ...]) -> list[v2.Transform]:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def view_transform(
    config: ViewConfig, mean: tuple[float, ...], std: tuple[float, ...]
) -> v2.Compose:
    """One random view: uint8 ``(C, h, w)`` tensor or PIL image -> float ``(C, S, S)``,
    ``S = config.image_size``, normalised with the dataset's channel ``mean`` and ``std``."""
    s = config.jitter
    steps: list[v2.Transform] = [
        v2.ToImage(),
        v2.RandomResizedCrop(config.image_size, scale=config.crop_scale, antialias=True),
        v2.RandomHorizontalFlip(config.flip_p),
    ]
    if s > 0 and config.jitter_p > 0:
        jitter = v2.ColorJitter(0.8 * s, 0.8 * s, 0.8 * s, min(0.2 * s, 0.5))
        steps.append(v2.RandomApply([jitter], p=config.jitter_p))
    if config.grayscale_p > 0:
        steps.append(v2.RandomGrayscale(config.grayscale_p))
    if config.use_blur:
        kernel = 2 * (config.image_size // 20) + 1  # odd, about a tenth of the side
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))], p=0.5))
    return v2.Compose(steps + _normalize(mean, std))


def eval_transform(
    image_size: int, mean: tuple[float, ...], std: tuple[float, ...], *, center_crop: bool
) -> v2.Compose:
    """The deterministic view a probe scores: resize (and centre-crop 7/8 of the side for large
    images, as ImageNet evaluation does) to ``(C, image_size, image_size)``, normalised."""
    if center_crop:
        resize = [v2.Resize(round(image_size * 8 / 7), antialias=True), v2.CenterCrop(image_size)]
    else:
        resize = [v2.Resize((image_size, image_size), antialias=True)]
    return v2.Compose([v2.ToImage(), *resize, *_normalize(mean, std)])


class MultiView:
    """``M`` independent draws of a view transform, stacked: image -> ``(M, C, S, S)``.

    The M views of one image are drawn one after another from torch's random generator, so
    seeding that generator per item (as ``datasets.ImageSet`` does) fixes all M.
    """

    def __init__(self, transform: v2.Transform, views: int) -> None:
        self.transform = transform
        self.views = check_at_least(views, 1, "views (M)")

    def __call__(self, image: Tensor) -> Tensor:
        # a loop over M: each view needs its own random parameters, which a batched v2
        # transform would share across the batch
        return torch.stack([self.transform(image) for _ in range(self.views)])

    def __repr__(self) -> str:
        return f"MultiView(views={self.views}, transform={self.transform})"
