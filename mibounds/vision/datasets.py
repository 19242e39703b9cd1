"""Image datasets that yield ``(image, label, index)``, read from local files only.

- ``digits``: scikit-learn's bundled handwritten digits (1797 8x8 grayscale images, 10 classes;
  ``sklearn.datasets.load_digits``, shipped inside the package), upscaled bilinearly to the
  requested side; a fixed stratified 80/20 split (1437 train, 360 test).
- ``cifar10``: CIFAR-10 from the python version's pickled batches (``data_batch_1`` ...
  ``data_batch_5``, ``test_batch``) in ``root`` or ``root/cifar-10-batches-py``.
- ``folder``: an ImageFolder tree, ``root/train/<class>/<image>`` and ``root/val/<class>/<image>``
  (or ``root/test/...``), e.g. ImageNet.

Nothing is ever downloaded: a missing or malformed path raises ``ValueError`` naming the files
expected there. Bad files are found when the dataset is loaded, before any training: every
CIFAR batch is unpickled and checked (keys, dtype, shape, labels), and every image of an
ImageFolder is scanned (``scan_images``: its header parsed, PNG chunks checked, a JPEG's end
marker looked for), so that a corrupt file is one ``ValueError`` naming it rather than a PIL
traceback in the middle of an epoch.

The index is the item's position in its split, so per-item state (SogCLR's moving averages) can
be keyed by it. Augmentation is seeded per item from ``(seed, epoch, index)``, so the views do
not depend on the number of loader workers or processes, and a run resumed at an epoch boundary
sees exactly the views an uninterrupted run would.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pickle
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as nnf
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from mibounds._checks import check_at_least, check_choice

__all__ = ["DATASETS", "DatasetInfo", "ImageSet", "item_seed", "load_dataset", "scan_images"]

DATASETS = ("digits", "cifar10", "folder")
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = ("test_batch",)
# ImageNet statistics, the usual normalisation for photographs of unknown provenance
_IMAGENET_MEAN, _IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SCAN_CACHE_MIN = 5000
"""Folders of at least this many images show a progress bar while they are scanned, and a clean
scan is remembered (see ``scan_images``); smaller ones scan in well under a second."""
_SCAN_VERSION = 1  # part of the cache key: bump it when the checks change
_JPEG_TAIL = 4096  # bytes read from a JPEG's end to find its end-of-image marker


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

        path = self.images[index]
        try:
            with Image.open(path) as image:
                return image.convert("RGB")
        except (OSError, SyntaxError, ValueError) as error:  # what PIL raises on a bad file
            # the scan before training reads headers, not every pixel: a file damaged past its
            # checks (or changed since) fails here, still naming the file
            raise ValueError(
                f"image {path!r} cannot be decoded ({type(error).__name__}: {error}); remove or "
                "replace it"
            ) from error

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
    expected = "a pickled dict with keys b'data' (N x 3072 uint8) and b'labels' (N ints in 0..9)"
    try:
        with path.open("rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (EOFError, pickle.UnpicklingError) as error:
        raise ValueError(
            f"{str(path)!r} is not a CIFAR-10 python batch: it does not unpickle "
            f"({str(error).rstrip('.')}; a truncated or interrupted download?); expected {expected}"
        ) from None
    except Exception as error:  # unpickling runs arbitrary constructors: any error is the file's
        raise ValueError(
            f"{str(path)!r} is not a CIFAR-10 python batch ({type(error).__name__}: {error}); "
            f"expected {expected}"
        ) from None
    if not isinstance(batch, dict) or not {b"data", b"labels"} <= set(batch):
        found = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise ValueError(
            f"{str(path)!r} is not a CIFAR-10 python batch: got {found}; expected {expected}"
        )
    data = np.asarray(batch[b"data"])
    try:
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except (TypeError, ValueError):
        labels = np.asarray([])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise ValueError(
            f"{str(path)!r} is not a CIFAR-10 python batch: b'data' must be an N x 3072 uint8 "
            f"array, got shape {data.shape} and dtype {data.dtype}"
        )
    if labels.shape != (len(data),) or ((labels < 0) | (labels > 9)).any():
        raise ValueError(
            f"{str(path)!r} is not a CIFAR-10 python batch: b'labels' must be {len(data)} ints "
            f"in 0..9 (one per row of b'data'), got {labels.shape[0] if labels.ndim else 0} "
            f"values in {_span(labels)}"
        )
    return torch.from_numpy(data.reshape(-1, 3, 32, 32).copy()), torch.from_numpy(labels)


def _span(values: np.ndarray) -> str:
    return f"[{values.min()}, {values.max()}]" if values.size else "[]"


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


# ------------------------------------------------------------------------- image scans


def _jpeg_ends(path: str) -> bool:
    """Whether the JPEG at ``path`` has an end-of-image marker (FF D9) after its last
    start-of-scan (FF DA) within its last 4 KiB: a truncated file has none, since entropy-coded
    data never holds FF D9 (an FF there is followed by 00 or a restart marker)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - _JPEG_TAIL))
        tail = f.read()
    return tail.rfind(b"\xff\xd9") > tail.rfind(b"\xff\xda")


def _image_problem(path: str) -> str | None:
    """Why the image file at ``path`` cannot be trained on, or ``None``.

    Its header must parse (``PIL.Image.open``), a PNG's chunks and checksums must hold
    (``Image.verify``), and a JPEG must end with its end-of-image marker; one that does not (cut
    short, or with data appended after the image, as some cameras write) is decoded in full to
    decide. Decoding every image costs about 30 times as much (docs/reliability.md).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            jpeg = image.format == "JPEG"
            image.verify()
        if jpeg and not _jpeg_ends(path):
            with Image.open(path) as image:
                image.load()
    except UnidentifiedImageError:
        return "not an image file PIL can identify"
    except Exception as error:  # PIL raises OSError, SyntaxError, struct.error, ... per format
        return f"{type(error).__name__}: {error}"
    return None


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("MIBOUNDS_CACHE_DIR") or os.path.join(base, "mibounds"))


def _scan_key(paths: Sequence[str]) -> str | None:
    """A hash of the scan's version and every file's path, size and modification time (None if
    a file cannot be stat'ed: the scan then reports it)."""
    digest = hashlib.sha256(f"image scan v{_SCAN_VERSION}\n".encode())
    try:
        for path in sorted(os.path.abspath(p) for p in paths):
            st = os.stat(path)
            digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    except OSError:
        return None
    return digest.hexdigest()[:32]


def scan_images(paths: Sequence[str], root: str | Path, *, progress: bool = False) -> None:
    """Check that every image file in ``paths`` (under ``root``) can be read, before training.

    Each file's header is parsed, a PNG's chunk checksums checked and a JPEG's end marker found
    (``_image_problem``): 0.06-0.08 ms per photograph, against 2.3 ms to decode it (measured
    in docs/reliability.md). Folders of ``SCAN_CACHE_MIN`` images or more show a progress bar
    (if ``progress``) and, when clean, are remembered in ``$MIBOUNDS_CACHE_DIR`` (default
    ``~/.cache/mibounds``) under a hash of every file's path, size and modification time, so
    that a rerun on the same files skips the scan; any change to the files scans them again.

    Raises:
        ValueError: naming how many files are bad and the first three, with why.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> from mibounds.vision.datasets import scan_images
        >>> root = Path(tempfile.mkdtemp())
        >>> Image.new("RGB", (8, 8)).save(root / "good.png")
        >>> _ = (root / "bad.jpg").write_bytes(b"not an image")
        >>> scan_images([str(root / "good.png")], root)  # silent: every file reads
        >>> scan_images([str(root / "good.png"), str(root / "bad.jpg")], root)
        Traceback (most recent call last):
        ...
        ValueError: 1 of 2 image files under '...' cannot be read: bad.jpg (not an image ...
    """
    n = len(paths)
    key = _scan_key(paths) if n >= SCAN_CACHE_MIN else None
    marker = None if key is None else _cache_dir() / "image-scans" / f"{key}.json"
    if marker is not None and marker.is_file():
        return
    bar = tqdm(
        paths, desc=f"checking {n} images", unit="img", disable=not progress or n < SCAN_CACHE_MIN
    )
    bad = sorted((p, why) for p in bar if (why := _image_problem(p)) is not None)
    if bad:
        shown = "; ".join(f"{os.path.relpath(p, root)} ({why})" for p, why in bad[:3])
        more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ValueError(
            f"{len(bad)} of {n} image files under {str(root)!r} cannot be read: {shown}{more}; "
            "remove or replace them"
        )
    if marker is not None:
        try:
            marker.parent.mkdir(parents=True, exist_ok=True)
            tmp = marker.with_name(f"{marker.name}.{os.getpid()}.tmp")  # one per process
            tmp.write_text(json.dumps({"root": str(root), "images": n}))
            os.replace(tmp, marker)
        except OSError as error:  # a cache that cannot be written costs a rescan, nothing else
            warnings.warn(
                f"could not remember the scan of {str(root)!r} in {marker.parent} ({error}); the "
                "next run scans the images again",
                stacklevel=2,
            )


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


def _folder(root: Path, progress: bool) -> tuple[ImageSet, ImageSet, DatasetInfo]:
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
    scan_images(train_paths + test_paths, root, progress=progress)
    info = DatasetInfo("folder", 3, classes, None, _IMAGENET_MEAN, _IMAGENET_STD, center_crop=True)
    return (
        ImageSet(train_paths, train_labels),
        ImageSet(test_paths, test_labels),
        info,
    )


def load_dataset(
    name: str = "digits",
    root: str | Path | None = None,
    *,
    image_size: int = 16,
    progress: bool = False,
) -> tuple[ImageSet, ImageSet, DatasetInfo]:
    """Load a dataset's train and test splits, without transforms (set them with
    ``ImageSet.with_transform``); every file is checked first (the module docstring says how).

    Args:
        name: ``"digits"`` (built in), ``"cifar10"`` or ``"folder"`` (both need ``root``).
        root: local path of the data (see the module docstring for the layout).
        image_size: side the digits are upscaled to (other datasets are resized by the views).
        progress: a progress bar while a large ImageFolder is scanned (``scan_images``).
    Returns:
        ``(train, test, info)``.

    Example:
        >>> from mibounds.vision.datasets import load_dataset
        >>> train, test, info = load_dataset("digits", image_size=8)
        >>> len(train), len(test), info.num_classes, tuple(train[0][0].shape)
        (1437, 360, 10, (1, 8, 8))
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
    return _cifar10(root) if name == "cifar10" else _folder(root, progress)
