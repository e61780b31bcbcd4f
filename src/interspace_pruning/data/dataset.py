"""In-memory image datasets and a fast batch iterator.

The datasets here fit in memory, and on two CPU cores a Python ``DataLoader`` is the slow
path, so images are kept as one tensor (uint8 where the source is) and each batch is
normalised and augmented with a few vectorised tensor operations.

:meth:`ImageDataset.to` moves the images to a GPU (still uint8: CIFAR-10 takes 150 MB), so
batches are gathered, normalised and augmented there without host-device copies. The data
order and the augmentation parameters are still drawn from the seeded CPU generator, in the
same sequence, so a seed gives identical batches on every device.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch

Batch = tuple[torch.Tensor, torch.Tensor]

AUGMENTATIONS = ("none", "crop-flip")


def normalise(
    x: torch.Tensor, scale: float, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """``(x * scale - mean) / std`` per channel, as float32 on ``x``'s device."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float() * scale - m) / s


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Per-sample random crop (zero padding ``padding``) and horizontal flip of a batch.

    The offsets and flips are drawn from ``generator`` (wherever it lives) and the crop is
    gathered on ``x``'s device, so a CPU generator gives the same crops for data on any
    device.
    """
    n, _, h, w = x.shape
    dev = x.device
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    oy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(dev, non_blocking=True)
    ox = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(dev, non_blocking=True)
    flip = (torch.rand(n, generator=generator) < 0.5).to(dev, non_blocking=True)
    rows = (oy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (n, 1, h, 1)
    cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (n, 1, 1, w)
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    idx_n = torch.arange(n, device=dev)[:, None, None, None]
    idx_c = torch.arange(x.shape[1], device=dev)[None, :, None, None]
    return padded[idx_n, idx_c, rows, cols]


@dataclass
class ImageDataset:
    """Train and test images with labels, and how to normalise and augment them."""

    name: str
    train_x: torch.Tensor  # (N, C, H, W), raw values (uint8 or float)
    train_y: torch.Tensor  # (N,) int64
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    #: ``x_normalised = (x * scale - mean) / std`` per channel.
    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    augment: str = "none"
    classes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTATIONS:
            raise ValueError(
                f"unknown augmentation {self.augment!r}; choose one of {AUGMENTATIONS}"
            )

    @property
    def in_channels(self) -> int:
        return self.train_x.shape[1]

    @property
    def device(self) -> torch.device:
        return self.train_x.device

    def fingerprint(self) -> str:
        """SHA-256 of the images and labels as read (after any subset), both splits: two
        copies of a dataset (the official archive, a re-encoding, another file order) give
        other fingerprints, so a summary says which data a run actually trained on."""
        digest = hashlib.sha256()
        for t in (self.train_x, self.train_y, self.test_x, self.test_y):
            t = t.detach().cpu().contiguous()
            digest.update(f"{t.dtype}{tuple(t.shape)}".encode())
            digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return digest.hexdigest()

    def to(self, device: torch.device | str) -> ImageDataset:
        """This dataset with its images and labels on ``device`` (``self`` if already there).

        Images keep their dtype (uint8 stays uint8: 4x less memory than float32), and
        batches drawn with one generator are identical to the CPU path's.
        """
        device = torch.device(device)
        if self.train_x.device == device and self.test_x.device == device:
            return self
        return replace(
            self,
            train_x=self.train_x.to(device),
            train_y=self.train_y.to(device),
            test_x=self.test_x.to(device),
            test_y=self.test_y.to(device),
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # type: ignore[return-value]

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return normalise(x, self.scale, self.mean, self.std)

    def train_batches(
        self,
        batch_size: int,
        generator: torch.Generator,
        augment: bool = True,
        drop_last: bool = True,
    ) -> Iterator[Batch]:
        """One epoch of shuffled training batches (order and augmentation from ``generator``)."""
        order = torch.randperm(len(self.train_y), generator=generator)
        if self.device != order.device:  # one copy per epoch, not per batch
            order = order.to(self.device)
        for i in batch_starts(len(self.train_y), batch_size, drop_last):
            idx = order[i : i + batch_size]
            x = self.normalise(self.train_x[idx])
            if augment and self.augment == "crop-flip":
                x = random_crop_flip(x, generator)
            yield x, self.train_y[idx]

    def test_batches(self, batch_size: int = 1000) -> Iterator[Batch]:
        for i in range(0, len(self.test_y), batch_size):
            yield self.normalise(self.test_x[i : i + batch_size]), self.test_y[i : i + batch_size]

    def train_eval_batches(
        self, batch_size: int = 1000, limit: int | None = None
    ) -> Iterator[Batch]:
        """Training images without augmentation (at most ``limit``), for measuring the gap."""
        n = len(self.train_y) if limit is None else min(limit, len(self.train_y))
        for i in range(0, n, batch_size):
            j = min(i + batch_size, n)
            yield self.normalise(self.train_x[i:j]), self.train_y[i:j]

    def steps_per_epoch(self, batch_size: int, drop_last: bool = True) -> int:
        return len(batch_starts(len(self.train_y), batch_size, drop_last))

    def subset(
        self, train: int | None = None, test: int | None = None, seed: int = 0
    ) -> ImageDataset:
        """A class-balanced subset (fixed by ``seed``) of the training and/or test split."""
        out = self
        if train is not None:
            idx = balanced_indices(self.train_y.cpu(), train, self.num_classes, seed)
            idx = idx.to(self.device)
            out = replace(out, train_x=self.train_x[idx], train_y=self.train_y[idx])
        if test is not None:
            idx = balanced_indices(self.test_y.cpu(), test, self.num_classes, seed + 1)
            idx = idx.to(self.test_x.device)
            out = replace(out, test_x=self.test_x[idx], test_y=self.test_y[idx])
        return out


def batch_starts(n: int, batch_size: int, drop_last: bool = True) -> range:
    """Where each training batch of an epoch over ``n`` samples starts. With ``drop_last`` a
    short last batch is dropped, unless it is the only one."""
    stop = n - n % batch_size if drop_last and n >= batch_size else n
    return range(0, stop, batch_size)


def balanced_indices(labels: torch.Tensor, n: int, num_classes: int, seed: int) -> torch.Tensor:
    """``n`` indices, as equal per class as possible, in a fixed shuffled order."""
    if not 0 < n <= len(labels):
        raise ValueError(f"subset size must be in [1, {len(labels)}], got {n}")
    g = torch.Generator().manual_seed(seed)
    per_class = [torch.nonzero(labels == c).flatten() for c in range(num_classes)]
    per_class = [p[torch.randperm(len(p), generator=g)] for p in per_class]
    # round-robin over classes until n are taken
    taken: list[torch.Tensor] = []
    depth = 0
    while sum(len(t) for t in taken) < n:
        row = [p[depth : depth + 1] for p in per_class if len(p) > depth]
        taken.append(torch.cat(row)[: n - sum(len(t) for t in taken)])
        depth += 1
    idx = torch.cat(taken)
    return idx[torch.randperm(len(idx), generator=g)]


def stratified_split(
    labels: torch.Tensor, test_fraction: float, num_classes: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed stratified train/test index split."""
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        k = round(test_fraction * len(idx))
        test.append(idx[:k])
        train.append(idx[k:])
    return torch.sort(torch.cat(train)).values, torch.sort(torch.cat(test)).values
