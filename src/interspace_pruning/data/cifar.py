"""CIFAR-10 and CIFAR-100 from the standard python-pickle layout.

``root`` holds ``cifar-10-batches-py/`` (or ``cifar-100-python/``), or is that folder. The
pickles are read with a restricted unpickler: a pickle is code, and these files may come
from anywhere.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import torch

from .dataset import ImageDataset
from .download import fetch
from .errors import DataError
from .safe_pickle import safe_load

LAYOUT = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": ("batches.meta", b"label_names"),
        "labels": b"labels",
        "num_classes": 10,
        "url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "mean": (0.4914, 0.4822, 0.4465),
        "std": (0.2470, 0.2435, 0.2616),
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": ("meta", b"fine_label_names"),
        "labels": b"fine_labels",
        "num_classes": 100,
        "url": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "mean": (0.5071, 0.4865, 0.4409),
        "std": (0.2673, 0.2564, 0.2762),
    },
}
HOW_TO_GET = (
    "add --download to fetch it, or download the python version ({url}), extract it so that "
    "DIR/{folder}/ holds its files, and pass --root DIR"
)


def _read_batch(path: Path, labels_key: bytes) -> tuple[np.ndarray, np.ndarray]:
    try:
        obj = safe_load(path.read_bytes())
    except OSError as e:
        raise DataError(f"cannot read {path}: {e}") from None
    except DataError:
        raise
    except Exception as e:  # UnpicklingError, EOFError, ... from a damaged or hostile file
        raise DataError(f"corrupt or unsafe data file {path}: {e}") from None
    if not isinstance(obj, dict) or b"data" not in obj or labels_key not in obj:
        raise DataError(
            f"corrupt data file {path}: expected a dict with b'data' and {labels_key!r}"
        )
    data, labels = obj[b"data"], np.asarray(obj[labels_key])
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3072
        or len(labels) != len(data)
    ):
        raise DataError(f"corrupt data file {path}: expected uint8 images of 3x32x32 with labels")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _folder(name: str, root: Path) -> Path:
    folder = LAYOUT[name]["folder"]
    return root if root.name == folder else root / folder


def _download(name: str, root: Path) -> None:
    spec = LAYOUT[name]
    archive = fetch([spec["url"]], root / Path(spec["url"]).name)
    try:
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.name.startswith(spec["folder"] + "/")]
            if not members or any(not (m.isfile() or m.isdir()) for m in members):
                raise DataError(f"corrupt archive {archive}: no regular {spec['folder']}/ files")
            tar.extractall(root, members=members, filter="data")
    except (tarfile.TarError, OSError) as e:
        raise DataError(f"corrupt archive {archive}: {e}; delete it and download again") from None


def load_cifar_dataset(name: str, root: Path, download: bool = False) -> ImageDataset:
    spec = LAYOUT[name]
    folder = _folder(name, root)
    needed = spec["train"] + spec["test"]
    if download and not all((folder / f).is_file() for f in needed):
        _download(name, root)
    for f in needed:
        if not (folder / f).is_file():
            raise DataError(
                f"{name} not found: {folder / f} is missing; "
                + HOW_TO_GET.format(folder=spec["folder"], url=spec["url"])
            )
    parts = {
        split: [_read_batch(folder / f, spec["labels"]) for f in spec[split]]
        for split in ("train", "test")
    }
    xs = {s: np.concatenate([p[0] for p in parts[s]]) for s in parts}
    ys = {s: np.concatenate([p[1] for p in parts[s]]) for s in parts}
    for s in ys:
        if ys[s].min() < 0 or ys[s].max() >= spec["num_classes"]:
            raise DataError(f"corrupt {name} in {folder}: {s} labels out of range")
    classes: list[str] = []
    meta_file, meta_key = spec["meta"]
    if (folder / meta_file).is_file():
        try:
            meta = safe_load((folder / meta_file).read_bytes())
            classes = [c.decode() if isinstance(c, bytes) else str(c) for c in meta[meta_key]]
        except Exception:  # the label names are cosmetic; a damaged meta file is not fatal
            classes = []
    return ImageDataset(
        name,
        torch.from_numpy(xs["train"]),
        torch.from_numpy(ys["train"]),
        torch.from_numpy(xs["test"]),
        torch.from_numpy(ys["test"]),
        num_classes=spec["num_classes"],
        mean=spec["mean"],
        std=spec["std"],
        augment="crop-flip",
        classes=classes,
    )
