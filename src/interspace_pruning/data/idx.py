"""MNIST and Fashion-MNIST from their standard IDX files (gzipped or not)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset
from .download import fetch
from .errors import DataError

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
SOURCES = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    "fashion-mnist": ["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
}
CLASSES = {
    "mnist": [str(i) for i in range(10)],
    "fashion-mnist": [
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
}
HOW_TO_GET = {
    "mnist": "pass --root DIR holding the four IDX files, or add --download",
    "fashion-mnist": (
        "install it with `apt-get install dataset-fashion-mnist` (into "
        "/usr/share/datasets/fashion-mnist), pass --root DIR holding the four IDX files, "
        "or add --download"
    ),
}


def read_idx(path: Path) -> np.ndarray:
    """Parse one IDX file (``.gz`` or raw) into a numpy array, validating its header."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise DataError(f"corrupt data file {path}: {e}; delete it and fetch it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DataError(f"corrupt data file {path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    body = raw[4 + 4 * ndim :]
    if len(body) != int(np.prod(dims)):
        raise DataError(
            f"corrupt data file {path}: header says {dims} ({int(np.prod(dims))} bytes) but it "
            f"holds {len(body)} bytes; delete it and fetch it again"
        )
    return np.frombuffer(body, dtype=np.uint8).reshape(dims)


def _locate(root: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    return None


def load_idx_dataset(name: str, root: Path, download: bool = False) -> ImageDataset:
    """Load ``mnist`` or ``fashion-mnist`` from ``root``."""
    arrays = {}
    for key, stem in FILES.items():
        path = _locate(root, stem)
        if path is None and download:
            path = fetch([base + stem + ".gz" for base in SOURCES[name]], root / (stem + ".gz"))
        if path is None:
            raise DataError(
                f"{name} not found: {root / (stem + '.gz')} is missing; {HOW_TO_GET[name]}"
            )
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"corrupt {name} in {root}: {split} images {x.shape} do not match labels {y.shape}"
            )
        if y.max() >= len(CLASSES[name]):
            raise DataError(f"corrupt {name} in {root}: label {int(y.max())} out of range")
    train_x = torch.from_numpy(arrays["train_x"].copy())[:, None]
    mean = float(train_x.float().mean() / 255.0)
    std = float((train_x.float() / 255.0).std())
    return ImageDataset(
        name,
        train_x,
        torch.from_numpy(arrays["train_y"].astype(np.int64)),
        torch.from_numpy(arrays["test_x"].copy())[:, None],
        torch.from_numpy(arrays["test_y"].astype(np.int64)),
        num_classes=10,
        mean=(mean,),
        std=(std,),
        classes=CLASSES[name],
    )
