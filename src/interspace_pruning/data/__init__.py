"""Datasets: ``data.get(name, root, download)`` returns an in-memory :class:`ImageDataset`.

``digits`` (the embedded default, from scikit-learn), ``mnist``, ``fashion-mnist``
(IDX files), ``cifar10``, ``cifar100`` (python pickles, read with a restricted unpickler);
image folders ``imagefolder``, ``tiny-imagenet`` and ``imagewoof`` (fast.ai's release,
default root ``data/imagewoof``), decoded once per run (:mod:`.imagefolder`).
"""

from __future__ import annotations

import os
from pathlib import Path

from .dataset import AUGMENTATIONS, Batch, ImageDataset, balanced_indices, random_crop_flip
from .digits import load_digits_dataset
from .download import user_cache_dir
from .errors import DataError
from .shapes import SHAPES, DatasetShape, image_shape

NAMES = tuple(SHAPES)
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def names() -> list[str]:
    return list(NAMES)


def default_root(name: str) -> Path:
    """Where ``name`` is looked for when no root is given."""
    if name == "fashion-mnist" and DEBIAN_FASHION_MNIST.is_dir():
        return DEBIAN_FASHION_MNIST
    if name == "imagewoof" and not os.environ.get("INTERSPACE_DATA"):
        return Path("data") / "imagewoof"  # beside the project, as its docs place it
    return user_cache_dir(name)


def get(
    name: str,
    root: str | Path | None = None,
    download: bool = False,
    train_subset: int | None = None,
    test_subset: int | None = None,
    augment: bool = True,
    image_size: int | None = None,
    workers: int = 4,
) -> ImageDataset:
    """Load dataset ``name`` into memory.

    Args:
        root: folder with the files (default: :func:`default_root`).
        download: fetch the official files into ``root`` if they are missing.
        train_subset / test_subset: keep a fixed class-balanced subset of that many images.
        augment: use the dataset's standard augmentation (random crop + flip for CIFAR,
            random-resized crop + flip for image folders).
        image_size / workers: image folders only: crop size (default 224, Tiny-ImageNet 64,
            Imagewoof 128) and DataLoader worker processes that crop the images.
    """
    from .cifar import load_cifar_dataset
    from .idx import load_idx_dataset
    from .imagefolder import load_image_folder

    if name not in NAMES:
        raise DataError(f"unknown dataset {name!r}; choose one of {list(NAMES)}")
    path = Path(root) if root is not None else default_root(name)
    if name == "digits":
        ds = load_digits_dataset()
    elif name in ("mnist", "fashion-mnist"):
        ds = load_idx_dataset(name, path, download)
    elif name in ("imagefolder", "tiny-imagenet", "imagewoof"):
        if root is None and name != "imagewoof":
            raise DataError(f"dataset {name!r} needs --root DIR with train/ and val/ folders")
        ds = load_image_folder(name, path, image_size, workers)
    else:
        ds = load_cifar_dataset(name, path, download)
    if not augment:
        ds.augment = "none"
    if train_subset is not None or test_subset is not None:
        ds = ds.subset(train_subset, test_subset)
    return ds


__all__ = [
    "AUGMENTATIONS",
    "Batch",
    "DataError",
    "DatasetShape",
    "ImageDataset",
    "SHAPES",
    "balanced_indices",
    "default_root",
    "get",
    "image_shape",
    "names",
    "random_crop_flip",
]
