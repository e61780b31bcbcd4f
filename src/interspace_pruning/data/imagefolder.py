"""Image-folder datasets (ImageNet, Tiny-ImageNet layouts), decoded by PIL in DataLoader workers.

Layouts under ``root``:

- ImageNet style: ``train/<class>/*.jpg`` and ``val/<class>/*.jpg`` (any of .jpeg .jpg .png,
  case-insensitive);
- Tiny-ImageNet: ``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` with
  ``val/val_annotations.txt`` (``filename<TAB>wnid...``).

Training images get the standard augmentation (random-resized crop, scale 0.08-1, aspect
3/4-4/3, then horizontal flip); evaluation images are resized to ``size / 0.875`` on the
short side and centre-cropped. The order of an epoch and every image's augmentation come
from the seeded generator of the training loop, drawn up front, so batches are identical
whatever the number of workers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .dataset import Batch, balanced_indices, batch_starts, normalise
from .errors import DataError
from .shapes import SHAPES

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def scan(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Classes, training samples and validation samples of an image folder."""
    train_dir, val_dir = root / "train", root / "val"
    if not train_dir.is_dir() or not val_dir.is_dir():
        raise DataError(
            f"image folder not found: {root} needs train/<class>/... and val/ subfolders "
            "(ImageNet or Tiny-ImageNet layout); pass --root DIR"
        )
    classes = sorted(d.name for d in train_dir.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"no class folders in {train_dir}")
    index = {c: i for i, c in enumerate(classes)}
    train = [(p, index[c]) for c in classes for p in _images(train_dir / c)]
    annotations = val_dir / "val_annotations.txt"
    if annotations.is_file():  # Tiny-ImageNet
        val = []
        for line in annotations.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in index:
                raise DataError(f"corrupt {annotations}: unexpected line {line[:60]!r}")
            val.append((val_dir / "images" / parts[0], index[parts[1]]))
    else:
        unknown = sorted(d.name for d in val_dir.iterdir() if d.is_dir() and d.name not in index)
        if unknown:
            raise DataError(f"{val_dir} has classes missing from train/: {unknown[:3]}")
        val = [(p, index[c]) for c in classes for p in _images(val_dir / c)]
    if not train or not val:
        raise DataError(f"no images found under {root} (extensions {sorted(EXTENSIONS)})")
    return classes, train, val


def _load_rgb(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"corrupt image {path}: {e}") from None


def random_resized_crop(
    img, size: int, rng: random.Random, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)
):
    """Inception-style crop: random area and aspect ratio, resized to ``size``."""
    from PIL import Image

    w, h = img.size
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return img.resize((size, size), Image.BILINEAR, box=(x, y, x + cw, y + ch))
    side = min(w, h)  # fall back to a centre crop
    x, y = (w - side) // 2, (h - side) // 2
    return img.resize((size, size), Image.BILINEAR, box=(x, y, x + side, y + side))


def center_crop(img, size: int):
    from PIL import Image

    w, h = img.size
    short = round(size / 0.875)
    scale = short / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    x, y = (w - size) // 2, (h - size) // 2
    return img.crop((x, y, x + size, y + size))


def _to_tensor(img) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1)  # uint8 CHW


class _Images(Dataset):
    """Decodes ``samples[i]``; training items carry the seed of their augmentation."""

    def __init__(self, samples: list[tuple[Path, int]], size: int, train: bool) -> None:
        self.samples, self.size, self.train = samples, size, train

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item):
        i, seed = item if isinstance(item, tuple) else (item, None)
        path, label = self.samples[i]
        img = _load_rgb(path)
        if self.train and seed is not None:
            rng = random.Random(seed)
            img = random_resized_crop(img, self.size, rng)
            if rng.random() < 0.5:
                img = img.transpose(0)  # FLIP_LEFT_RIGHT
        else:
            img = center_crop(img, self.size)
        return _to_tensor(img), label


@dataclass
class FolderDataset:
    """The :class:`ImageDataset` interface over an image folder (streamed, not in memory)."""

    name: str
    train_samples: list[tuple[Path, int]]
    test_samples: list[tuple[Path, int]]
    classes: list[str]
    size: int = 224
    workers: int = 4
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    augment: str = "crop-flip"
    scale: float = 1.0 / 255.0
    #: Where batches are delivered; on CUDA the loader pins host memory and copies the
    #: uint8 images asynchronously (4x fewer bytes than float32), normalising on the GPU.
    target: torch.device = torch.device("cpu")

    @property
    def device(self) -> torch.device:
        return self.target

    def fingerprint(self) -> str:
        """SHA-256 of the folder's listing as read: each split's files (names relative to
        their class folder), their sizes and labels, and the class names. Cheaper than
        hashing every image, and it tells two copies apart unless a file changed in place
        with its size."""
        digest = hashlib.sha256(json.dumps(self.classes).encode())
        for split, samples in (("train", self.train_samples), ("val", self.test_samples)):
            for path, label in samples:
                try:
                    size = path.stat().st_size
                except OSError:
                    size = -1
                digest.update(f"{split}/{path.parent.name}/{path.name}:{size}:{label}\n".encode())
        return digest.hexdigest()

    def to(self, device: torch.device | str) -> FolderDataset:
        """This dataset delivering its batches on ``device`` (the images stay on disk)."""
        device = torch.device(device)
        return self if device == self.target else replace(self, target=device)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.size, self.size)

    @property
    def train_y(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.train_samples])

    @property
    def test_y(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.test_samples])

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return normalise(x, self.scale, self.mean, self.std)

    def _loader(self, dataset: Dataset, batches: list) -> Iterator[Batch]:
        workers = min(self.workers, os.cpu_count() or 1)
        pin = self.target.type == "cuda"
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers, pin_memory=pin)
        for x, y in loader:
            if x.device != self.target:
                x = x.to(self.target, non_blocking=pin)
                y = y.to(self.target, non_blocking=pin)
            yield self.normalise(x), y

    def train_batches(
        self,
        batch_size: int,
        generator: torch.Generator,
        augment: bool = True,
        drop_last: bool = True,
    ) -> Iterator[Batch]:
        n = len(self.train_samples)
        order = torch.randperm(n, generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
        use_aug = augment and self.augment == "crop-flip"
        batches = [
            [(i, seeds[i] if use_aug else None) for i in order[s : s + batch_size]]
            for s in batch_starts(n, batch_size, drop_last)
        ]
        return self._loader(_Images(self.train_samples, self.size, True), batches)

    def test_batches(self, batch_size: int = 256) -> Iterator[Batch]:
        n = len(self.test_samples)
        batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
        return self._loader(_Images(self.test_samples, self.size, False), batches)

    def train_eval_batches(
        self, batch_size: int = 256, limit: int | None = None
    ) -> Iterator[Batch]:
        n = len(self.train_samples) if limit is None else min(limit, len(self.train_samples))
        batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
        return self._loader(_Images(self.train_samples, self.size, False), batches)

    def steps_per_epoch(self, batch_size: int, drop_last: bool = True) -> int:
        return len(batch_starts(len(self.train_samples), batch_size, drop_last))

    def subset(self, train: int | None = None, test: int | None = None, seed: int = 0):
        out = self
        if train is not None:
            idx = balanced_indices(self.train_y, train, self.num_classes, seed).tolist()
            out = replace(out, train_samples=[self.train_samples[i] for i in idx])
        if test is not None:
            idx = balanced_indices(self.test_y, test, self.num_classes, seed + 1).tolist()
            out = replace(out, test_samples=[self.test_samples[i] for i in idx])
        return out


def load_image_folder(
    name: str, root: Path, size: int | None = None, workers: int = 4
) -> FolderDataset:
    classes, train, val = scan(root)
    default = SHAPES.get(name, SHAPES["imagefolder"]).size
    return FolderDataset(name, train, val, classes, size=size or default, workers=workers)
