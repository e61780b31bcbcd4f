"""The built-in datasets' shapes, known without loading them: one table for every reader
(rebuilding a finished run's model, timing it on an input of the right size)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetShape:
    """Classes, image channels and image height = width of one dataset."""

    num_classes: int | None  # None: as many as the folder holds
    channels: int
    size: int  # image folders: the default crop (``image_size`` overrides it)
    cropped: bool = False  # an image folder: decoded and cropped to ``image_size``


#: By dataset name, in the order ``data.names()`` lists them.
SHAPES: dict[str, DatasetShape] = {
    "digits": DatasetShape(10, 1, 8),
    "mnist": DatasetShape(10, 1, 28),
    "fashion-mnist": DatasetShape(10, 1, 28),
    "cifar10": DatasetShape(10, 3, 32),
    "cifar100": DatasetShape(100, 3, 32),
    "imagefolder": DatasetShape(None, 3, 224, cropped=True),
    "tiny-imagenet": DatasetShape(200, 3, 64, cropped=True),
    "imagewoof": DatasetShape(10, 3, 128, cropped=True),
}


def image_shape(
    name: str, image_size: int | None = None, channels: int | None = None
) -> tuple[int, int, int]:
    """``(channels, height, width)`` of one image of dataset ``name``: image folders (and
    names not in :data:`SHAPES`) at ``image_size`` (default: their default crop) with
    ``channels`` (default 3); the other datasets at their own size."""
    s = SHAPES.get(name, SHAPES["imagefolder"])
    if not s.cropped:
        return (s.channels, s.size, s.size)
    size = image_size or s.size
    return (channels or s.channels, size, size)
