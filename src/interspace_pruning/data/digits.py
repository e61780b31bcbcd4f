"""scikit-learn's bundled 8x8 digits: the embedded default, no download needed."""

from __future__ import annotations

import torch

from .dataset import ImageDataset, stratified_split
from .errors import DataError

TEST_FRACTION = 0.2


def load_digits_dataset() -> ImageDataset:
    """1,797 8x8 grey digits (values 0-16), fixed stratified 80/20 split (seed 0)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:  # pragma: no cover - sklearn is a dependency
        raise DataError("dataset 'digits' needs scikit-learn: pip install scikit-learn") from e
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32)[:, None]  # (1797, 1, 8, 8)
    y = torch.tensor(bunch.target, dtype=torch.int64)
    train, test = stratified_split(y, TEST_FRACTION, 10, seed=0)
    scale = 1.0 / 16.0
    mean = float((x[train] * scale).mean())
    std = float((x[train] * scale).std())
    return ImageDataset(
        "digits",
        x[train],
        y[train],
        x[test],
        y[test],
        num_classes=10,
        scale=scale,
        mean=(mean,),
        std=(std,),
        classes=[str(i) for i in range(10)],
    )
