"""Image datasets that yield ``(image, label, index)``, read from local files only.

- ``digits``: scikit-learn's bundled handwritten digits (1797 8x8 grayscale images, 10 classes;
  ``sklearn.datasets.load_digits``, shipped inside the package), upscaled bilinearly to the
  requested side; a fixed stratified 80/20 split (1437 train, 360 test).
- ``cifar10``: CIFAR-10 from the python version's pickled batches (``data_batch_1`` ...
  ``data_batch_5``, ``test_batch``) in ``root`` or ``root/cifar-10-batches-py``.
- ``folder``: an ImageFolder tree, ``root/train/<class>/<image>`` and ``root/val/<class>/<image>``
  (or ``root/test/...``), e.g. ImageNet.

Nothing is ever downloaded: a missing or malformed path raises ``ValueError`` naming the files
expected there. The index is the item's position in its split, so per-item state (SogCLR's
moving averages) can be keyed by it. Augmentation is seeded per item from ``(seed, epoch,
index)``, so the views do not depend on the number of loader workers or processes, and a run
resumed at an epoch boundary sees exactly the views an uninterrupted run would.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor
from torch.utils.data import Dataset

from mibounds._checks import check_at_least, check_choice

__all__ = ["DATASETS", "DatasetInfo", "ImageSet", "item_seed", "load_dataset"]

DATASETS = ("digits", "cifar10", "folder")
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)
# ImageNet statistics, the usual normalisation for photographs of unknown provenance
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DatasetInfo:
    """What the encoder and the transforms need to know about a dataset.

    Attributes:
        name: ``"digits"``, ``"cifar10"`` or ``"folder"``.
        channels: image channels C.
        classes: class names.
        native_size: side of the stored images in pixels, ``None`` when it varies (folder).
        mean, std: per-channel normalisation (of the train split for tensor datasets).
        center_crop: whether evaluation centre-crops (large photographs) or only resizes.
    """

    name: str
    channels: int
    classes: tuple[str, ...]
    native_size: int | None
    mean: tuple[float, ...]
    std: tuple[float, ...]
    center_crop: bool

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def item_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one item's augmentation in one epoch (distinct for distinct triples)."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


class ImageSet(Dataset):
    """A split of images with labels; ``dataset[i] -> (transform(image_i), label_i, i)``.

    Images are a uint8 tensor ``(N, C, H, W)`` (digits, CIFAR) or a list of file paths read with
    PIL as RGB (folder). ``transform`` maps one image to a tensor (``views.MultiView`` gives
    ``(M, C, H, W)``). With ``seed`` set, item ``i`` in epoch ``e`` is transformed under
    ``torch.manual_seed(item_seed(seed, e, i))`` (torch's global generator is restored after).
    """

    def __init__(
        self,
        images: Tensor | list[str],
        labels: Tensor,
        transform: Callable | None = None,
        *,
        seed: int | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"got {len(images)} images but {len(labels)} labels")
        self.images = images
        self.labels = labels
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.labels)

    def _load(self, index: int) -> Tensor:
        if isinstance(self.images, Tensor):
            return self.images[index]
        from PIL import Image

        with Image.open(self.images[index]) as image:
            return image.convert("RGB")

    def __getitem__(self, index: int) -> tuple[Tensor, int, int]:
        image = self._load(index)
        if self.transform is not None:
            if self.seed is None:
                image = self.transform(image)
            else:
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(item_seed(self.seed, self.epoch, index))
                    image = self.transform(image)
        return image, int(self.labels[index]), index

    def with_transform(self, transform: Callable | None, *, seed: int | None = None) -> ImageSet:
        """The same images and labels with another transform (and augmentation seed)."""
        return ImageSet(self.images, self.labels, transform, seed=seed)

    def take(self, n: int) -> ImageSet:
        """The first ``n`` items (the splits are already in a fixed shuffled order)."""
        check_at_least(n, 1, "subset size")
        if n > len(self):
            raise ValueError(f"subset of {n} items requested from a split of {len(self)}")
        return ImageSet(self.images[:n], self.labels[:n], self.transform, seed=self.seed)


def _stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 images ``(N, C, H, W)``, on the [0, 1] scale."""
    x = images.transpose(0, 1).flatten(1).double() / 255.0
    return tuple(x.mean(1).tolist()), tuple(x.std(1).tolist())


@functools.lru_cache(maxsize=4)
def _digits_tensors(image_size: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(images uint8 (1797, 1, S, S), labels, train_idx, test_idx)``, cached: reading and
    upscaling the digits costs more than the runs that use a subset of them."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = torch.as_tensor(data.images, dtype=torch.float32)[:, None] / 16.0  # values 0..16
    if image_size != x.shape[-1]:
        x = nnf.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    y = torch.as_tensor(data.target, dtype=torch.long)
    train_idx, test_idx = train_test_split(
        np.arange(len(y)), test_size=0.2, random_state=0, stratify=data.target
    )
    return x, y, torch.as_tensor(train_idx), torch.as_tensor(test_idx)


def _digits(image_size: int) -> tuple[ImageSet, ImageSet, DatasetInfo]:
    x, y, train_idx, test_idx = _digits_tensors(image_size)
    mean, std = _stats(x[train_idx])
    info = DatasetInfo("digits", 1, tuple(map(str, range(10))), 8, mean, std, center_crop=False)
    return ImageSet(x[train_idx], y[train_idx]), ImageSet(x[test_idx], y[test_idx]), info


def _cifar_dir(root: Path) -> Path:
    expected = CIFAR_TRAIN + CIFAR_TEST
    for candidate in (root, root / "cifar-10-batches-py"):
        if all((candidate / name).is_file() for name in expected):
            return candidate
    missing = [name for name in expected if not (root / name).is_file()]
    raise ValueError(
        f"CIFAR-10 not found at {str(root)!r}: expected the python version's batch files "
        f"{', '.join(expected)} (cifar-10-python.tar.gz, extracted) in that directory or in its "
        f"cifar-10-batches-py/; missing there: {', '.join(missing)}. Nothing is downloaded."
    )


def _cifar_batch(path: Path) -> tuple[Tensor, Tensor]:
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as error:
        raise ValueError(
            f"{str(path)!r} is not a CIFAR-10 python batch: expected a pickled dict with keys "
            f"b'data' (N x 3072 uint8) and b'labels' (N ints) ({type(error).__name__}: {error})"
        ) from error
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise ValueError(
            f"{str(path)!r} is not a CIFAR-10 python batch: b'data' must be N x 3072 with N "
            f"labels, got data of shape {data.shape} and {len(labels)} labels"
        )
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def _cifar10(root: Path) -> tuple[ImageSet, ImageSet, DatasetInfo]:
    directory = _cifar_dir(root)
    splits = []
    for names in (CIFAR_TRAIN, CIFAR_TEST):
        images, labels = zip(*(_cifar_batch(directory / name) for name in names), strict=True)
        splits.append((torch.cat(images), torch.cat(labels)))
    (x_train, y_train), (x_test, y_test) = splits
    # the batches come shuffled, so `take(n)` is a class mix as it is
    mean, std = _stats(x_train)
    classes = "airplane automobile bird cat deer dog frog horse ship truck".split()
    info = DatasetInfo("cifar10", 3, tuple(classes), 32, mean, std, center_crop=False)
    return ImageSet(x_train, y_train), ImageSet(x_test, y_test), info


def _folder_split(path: Path, root: Path) -> tuple[list[str], Tensor, tuple[str, ...]]:
    from torchvision.datasets import ImageFolder

    try:
        folder = ImageFolder(str(path))
    except (FileNotFoundError, OSError) as error:
        raise ValueError(
            f"{str(path)!r} is not an ImageFolder split: expected {root}/train/<class>/<image> "
            f"and {root}/val/<class>/<image> (or test/) with image files (.jpg, .png, ...) "
            f"({error})"
        ) from error
    # a fixed shuffle so that `take(n)` gives a class mix rather than the first classes
    order = np.random.default_rng(0).permutation(len(folder.samples))
    paths = [folder.samples[i][0] for i in order]
    labels = torch.as_tensor([folder.samples[i][1] for i in order], dtype=torch.long)
    return paths, labels, tuple(folder.classes)


def _folder(root: Path) -> tuple[ImageSet, ImageSet, DatasetInfo]:
    test_dir = next((root / name for name in ("val", "test") if (root / name).is_dir()), None)
    if not (root / "train").is_dir() or test_dir is None:
        raise ValueError(
            f"ImageFolder root {str(root)!r} needs the subdirectories train/ and val/ (or test/), "
            f"each holding <class>/<image> files; found "
            f"{sorted(p.name for p in root.iterdir()) if root.is_dir() else 'no such directory'}"
        )
    train_paths, train_labels, classes = _folder_split(root / "train", root)
    test_paths, test_labels, test_classes = _folder_split(test_dir, root)
    if test_classes != classes:
        raise ValueError(
            f"{test_dir} has classes {list(test_classes)[:5]}... but {root / 'train'} has "
            f"{list(classes)[:5]}...: both splits need the same class subdirectories"
        )
    info = DatasetInfo("folder", 3, classes, None, _IMAGENET_MEAN, _IMAGENET_STD, center_crop=True)
    return (
        ImageSet(train_paths, train_labels),
        ImageSet(test_paths, test_labels),
        info,
    )


def load_dataset(
    name: str = "digits", root: str | Path | None = None, *, image_size: int = 16
) -> tuple[ImageSet, ImageSet, DatasetInfo]:
    """Load a dataset's train and test splits, without transforms (set them with
    ``ImageSet.with_transform``).

    Args:
        name: ``"digits"`` (built in), ``"cifar10"`` or ``"folder"`` (both need ``root``).
        root: local path of the data (see the module docstring for the layout).
        image_size: side the digits are upscaled to (other datasets are resized by the views).
    Returns:
        ``(train, test, info)``.
    """
    check_choice(name, DATASETS, "dataset")
    check_at_least(image_size, 1, "image_size")
    if name == "digits":
        if root is not None:
            raise ValueError("the digits ship with scikit-learn: pass no root for them")
        return _digits(image_size)
    if root is None:
        raise ValueError(f"dataset {name!r} needs a local root path (nothing is downloaded)")
    root = Path(root).expanduser()
    return _cifar10(root) if name == "cifar10" else _folder(root)
