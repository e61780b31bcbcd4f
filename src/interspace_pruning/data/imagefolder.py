"""Image-folder datasets (ImageNet, Imagewoof, Tiny-ImageNet layouts), decoded once per run:
:class:`FolderDataset` and :func:`load_image_folder`.

The pieces, each in its own module (their names are re-exported here):

- :mod:`.image_layouts`: the layouts under ``root`` (ImageNet, an extracted release such as
  ``imagewoof2-160/``, Tiny-ImageNet), scanning, ``classes.txt``, the Imagewoof wnids;
- :mod:`.image_transforms`: the random-resized training crop, the evaluation centre crop, the
  decode-time shrink, the uint8 tensor;
- :mod:`.decoded_images`: images decoded once into one buffer in memory;
- :mod:`.decode_cache`: the cache file ``.interspace-cache/<split>-<side>px.npz`` and its
  checks, and ``INTERSPACE_IMAGE_CACHE`` (``file``, ``memory``, ``none`` or a folder).

**Decoding.** Each image is decoded once per run, shrunk to a stored short side (default
``size / 0.875``, the evaluation resize; a smaller image is kept as it is), and kept in memory
as uint8; the cache file beside the data keeps the decoded split for the next run. A folder
too large for a quarter of the machine's memory is streamed from disk.

**Order.** The order of an epoch and every image's augmentation come from the seeded
generator of the training loop, drawn up front, so batches are identical whatever the number
of workers, and identical with and without the cache wherever the images are no larger than
the stored side.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from .dataset import Batch, balanced_indices, batch_starts, normalise
from .decode_cache import (
    CACHE_ENV,
    CACHE_FOLDER,
    CACHE_FORMAT,
    CACHE_MODES,
    CACHE_VERSION,
    _listing,
    cache_setting,
    read_cache,
    write_cache,
)
from .decoded_images import (
    MEMORY_FRACTION,
    DecodedImages,
    DecodeStore,
    _memory_bytes,
    decode_images,
)
from .errors import DataError
from .image_layouts import (
    EXTENSIONS,
    IMAGEWOOF_CLASSES,
    IMAGEWOOF_SOURCE,
    class_names,
    find_root,
    scan,
)
from .image_transforms import (
    CROP_SCALES,
    DEFAULT_CROP_SCALE,
    _load_rgb,
    _to_tensor,
    center_crop,
    eval_side,
    random_resized_crop,
    shrink,
)
from .shapes import SHAPES

#: Names of the pieces re-exported here, where callers have always imported them from.
__all__ = [
    "CACHE_ENV",
    "CACHE_FOLDER",
    "CACHE_FORMAT",
    "CACHE_MODES",
    "CACHE_VERSION",
    "CROP_SCALES",
    "DEFAULT_CROP_SCALE",
    "EXTENSIONS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "IMAGEWOOF_CLASSES",
    "IMAGEWOOF_SOURCE",
    "MEMORY_FRACTION",
    "DecodeStore",
    "DecodedImages",
    "FolderDataset",
    "cache_setting",
    "center_crop",
    "class_names",
    "decode_images",
    "eval_side",
    "find_root",
    "load_image_folder",
    "random_resized_crop",
    "read_cache",
    "scan",
    "shrink",
    "write_cache",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class _Images(Dataset):
    """Image ``i`` of ``samples`` (decoded from disk, or taken from ``decoded``), cropped;
    training items carry the seed of their augmentation."""

    def __init__(
        self,
        samples: list[tuple[Path, int]],
        size: int,
        train: bool,
        crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE,
        decoded: DecodedImages | None = None,
        positions: list[int] | None = None,
    ) -> None:
        self.samples, self.size, self.train = samples, size, train
        self.crop_scale, self.decoded, self.positions = crop_scale, decoded, positions

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, item):
        from PIL import Image

        i, seed = item if isinstance(item, tuple) else (item, None)
        path, label = self.samples[i]
        if self.decoded is not None and self.positions is not None:
            img = Image.fromarray(self.decoded.image(self.positions[i]))
        else:
            img = _load_rgb(path)
        if self.train and seed is not None:
            rng = random.Random(seed)
            img = random_resized_crop(img, self.size, rng, self.crop_scale)
            if rng.random() < 0.5:
                img = img.transpose(0)  # FLIP_LEFT_RIGHT
        else:
            img = center_crop(img, self.size)
        return _to_tensor(img), label


@dataclass
class FolderDataset:
    """The :class:`ImageDataset` interface over an image folder, each image decoded once per
    run and kept in memory (see :mod:`.decode_cache` for the cache and its file)."""

    name: str
    train_samples: list[tuple[Path, int]]
    test_samples: list[tuple[Path, int]]
    #: The class folder names (for ImageNet subsets the wnids), in label order.
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
    #: Readable class names in label order (``classes`` where none are known).
    class_names: list[str] = field(default_factory=list)
    #: Area range of the training crop (fractions of the image).
    crop_scale: tuple[float, float] = DEFAULT_CROP_SCALE
    #: ``file``: decode once, keep in memory and in a cache file in ``cache_dir``;
    #: ``memory``: no file; ``none``: decode every image every epoch.
    cache: str = "memory"
    cache_dir: Path | None = None
    #: Short side of the decoded images kept (default ``size / 0.875``; never enlarged).
    stored_side: int | None = None
    #: The folder with train/ and val/ (names the images in the cache).
    root: Path | None = None
    store: DecodeStore = field(default_factory=DecodeStore, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.cache not in CACHE_MODES:
            raise DataError(f"unknown image cache {self.cache!r}; choose one of {CACHE_MODES}")
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise DataError(f"crop scale must satisfy 0 < min <= max <= 1, got {self.crop_scale}")
        if not self.class_names:
            self.class_names = list(self.classes)

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
        """This dataset delivering its batches on ``device`` (the images stay on the host)."""
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

    @property
    def side(self) -> int:
        """Short side of the decoded images kept in memory."""
        return self.stored_side or eval_side(self.size)

    def _key(self, path: Path) -> str:
        if self.root is not None:
            try:
                return path.relative_to(self.root).as_posix()
            except ValueError:
                pass
        return str(path)

    def _fits_in_memory(self) -> bool:
        n = sum(self.store.whole.values()) or len(self.train_samples) + len(self.test_samples)
        need = n * 3 * self.side * self.side * 4 / 3  # allowing for a 4:3 aspect ratio
        return need <= MEMORY_FRACTION * _memory_bytes()

    def cache_file(self, split: str) -> Path | None:
        """The cache file of ``split`` ('train' or 'val'), where the cache keeps files."""
        if self.cache != "file" or self.cache_dir is None:
            return None
        return self.cache_dir / f"{split}-{self.side}px.npz"

    def decoded(self, split: str) -> DecodedImages | None:
        """The decoded images of ``split`` ('train' or 'val'), decoded (or read from the
        cache file) on first use; ``None`` where images are decoded every epoch."""
        if self.cache == "none" or not self._fits_in_memory():
            return None
        samples = self.train_samples if split == "train" else self.test_samples
        keys = [self._key(p) for p, _ in samples]
        have = self.store.splits.get((split, self.side))
        if have is not None and all(k in have.index for k in keys):
            return have
        whole = len(samples) == self.store.whole.get(split, -1)
        path = self.cache_file(split)
        sizes, mtimes = _listing([p for p, _ in samples])
        meta = {
            "format": CACHE_FORMAT,
            "version": CACHE_VERSION,
            "split": split,
            "side": self.side,
            "resample": "bilinear",
        }
        images = read_cache(path, keys, sizes, mtimes, meta, whole) if path else None
        if images is None:
            threads = max(1, min(self.workers, os.cpu_count() or 1))
            arrays = decode_images([p for p, _ in samples], self.side, threads)
            images = DecodedImages.from_arrays(arrays, keys)
            if path is not None and whole:  # a subset's images would replace the whole's
                write_cache(path, images, sizes, mtimes, meta)
        self.store.splits[(split, self.side)] = images
        return images

    def _images(self, split: str, train: bool) -> _Images:
        samples = self.train_samples if split == "train" else self.test_samples
        images = self.decoded(split)
        positions = None if images is None else [images.index[self._key(p)] for p, _ in samples]
        return _Images(samples, self.size, train, self.crop_scale, images, positions)

    def _loader(self, split: str, train: bool, batches: list) -> Iterator[Batch]:
        dataset = self._images(split, train)  # decodes on the first batch, not on the call
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
        return self._loader("train", True, batches)

    def test_batches(self, batch_size: int = 256) -> Iterator[Batch]:
        n = len(self.test_samples)
        batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
        return self._loader("val", False, batches)

    def train_eval_batches(
        self, batch_size: int = 256, limit: int | None = None
    ) -> Iterator[Batch]:
        n = len(self.train_samples) if limit is None else min(limit, len(self.train_samples))
        batches = [list(range(s, min(s + batch_size, n))) for s in range(0, n, batch_size)]
        return self._loader("train", False, batches)

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
    name: str,
    root: Path,
    size: int | None = None,
    workers: int = 4,
    cache: str | None = None,
    cache_dir: str | Path | None = None,
    crop_scale: tuple[float, float] | None = None,
    stored_side: int | None = None,
) -> FolderDataset:
    """The image folder at ``root`` (or the one release folder inside it) as dataset
    ``name``: ``imagewoof`` checks that its classes are the ten Imagewoof wnids.

    Args:
        size: crop size (default: the dataset's, :data:`~.shapes.SHAPES`).
        workers: DataLoader processes that crop the images (and threads that decode them).
        cache / cache_dir: decode cache mode and the folder of its files (default: from
            ``INTERSPACE_IMAGE_CACHE``, see :func:`cache_setting`).
        crop_scale: area range of the training crop (default: 0.35-1 for Imagewoof,
            0.08-1 otherwise).
        stored_side: short side of the decoded images kept (default ``size / 0.875``).
    """
    requested = Path(root)
    root = find_root(requested)
    if name == "imagewoof" and not ((root / "train").is_dir() and (root / "val").is_dir()):
        raise DataError(
            f"Imagewoof not found in {requested}: download imagewoof2-160.tgz (see "
            f"{IMAGEWOOF_SOURCE}) and extract it there (tar xzf imagewoof2-160.tgz -C "
            f"{requested}), or pass --root DIR"
        )
    classes, train, val = scan(root)
    if name == "imagewoof" and set(classes) != set(IMAGEWOOF_CLASSES):
        raise DataError(
            f"{root} is not Imagewoof: its train/ classes are {classes[:3]}... "
            f"({len(classes)}), not the 10 Imagewoof wnids; use --dataset imagefolder"
        )
    mode, folder = cache_setting(root)
    if cache is not None:
        mode = cache
    default = SHAPES.get(name, SHAPES["imagefolder"]).size
    return FolderDataset(
        name,
        train,
        val,
        classes,
        size=size or default,
        workers=workers,
        class_names=class_names(root, classes),
        crop_scale=crop_scale or CROP_SCALES.get(name, DEFAULT_CROP_SCALE),
        cache=mode,
        cache_dir=Path(cache_dir) if cache_dir is not None else folder,
        stored_side=stored_side,
        root=root,
        store=DecodeStore(whole={"train": len(train), "val": len(val)}),
    )
