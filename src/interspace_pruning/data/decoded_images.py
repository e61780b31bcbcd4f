"""Images decoded once into memory: the packed buffer, what copies of a dataset share,
the threaded decode, and the machine's memory that decides whether they are kept."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .image_transforms import _load_rgb, shrink

#: Decoded images are kept in memory only while both splits take at most this share of it.
MEMORY_FRACTION = 0.25


class DecodedImages:
    """Decoded RGB images (uint8, height x width x 3) in one flat buffer, found by key."""

    def __init__(
        self, pixels: np.ndarray, offsets: np.ndarray, shapes: np.ndarray, keys: list[str]
    ) -> None:
        self.pixels, self.offsets, self.shapes, self.keys = pixels, offsets, shapes, keys
        self.index = {k: i for i, k in enumerate(keys)}

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], keys: list[str]) -> DecodedImages:
        """Pack ``arrays`` (freed one by one as they are copied: the peak stays near one
        copy of the images)."""
        shapes = np.array([a.shape[:2] for a in arrays], dtype=np.int64).reshape(-1, 2)
        offsets = np.zeros(len(arrays) + 1, dtype=np.int64)
        np.cumsum(shapes[:, 0] * shapes[:, 1] * 3, out=offsets[1:])
        pixels = np.empty(int(offsets[-1]), dtype=np.uint8)
        for i in range(len(arrays)):
            pixels[offsets[i] : offsets[i + 1]] = arrays[i].reshape(-1)
            arrays[i] = None  # type: ignore[call-overload]
        return cls(pixels, offsets, shapes, keys)

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def nbytes(self) -> int:
        return int(self.pixels.nbytes)

    def image(self, i: int) -> np.ndarray:
        h, w = (int(v) for v in self.shapes[i])
        return self.pixels[self.offsets[i] : self.offsets[i + 1]].reshape(h, w, 3)


@dataclass
class DecodeStore:
    """What the copies of one loaded folder (``subset``, ``to``) share: the decoded splits
    (by split and stored side) and the size of each whole split."""

    splits: dict[tuple[str, int], DecodedImages] = field(default_factory=dict)
    whole: dict[str, int] = field(default_factory=dict)


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 8 << 30


def decode_images(paths: Sequence[Path], side: int, threads: int = 1) -> list[np.ndarray]:
    """Decode ``paths`` as RGB uint8 arrays shrunk to short side ``side`` (:func:`shrink`),
    on ``threads`` threads (PIL releases the GIL while it decodes and resizes)."""

    def one(path: Path) -> np.ndarray:
        return np.asarray(shrink(_load_rgb(path), side), dtype=np.uint8)

    if threads <= 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, paths))
