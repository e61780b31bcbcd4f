"""Image transforms: reading an image as RGB, the training and evaluation crops, the
decode-time shrink, and the uint8 tensor.

Training images get a random-resized crop (area ``crop_scale``: 0.08-1 as torchvision,
0.35-1 for Imagewoof as fast.ai trains it; aspect 3/4-4/3) and a horizontal flip; evaluation
images are resized to ``size / 0.875`` on the short side and centre-cropped.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import torch

from .errors import DataError

#: Random-resized-crop area range: torchvision's ImageNet default, and fast.ai's for its
#: small ImageNet subsets (at 128 px a crop of 8% of the image keeps too little of a dog).
DEFAULT_CROP_SCALE = (0.08, 1.0)
CROP_SCALES = {"imagewoof": (0.35, 1.0)}


def _load_rgb(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, UnidentifiedImageError) as e:
        raise DataError(f"corrupt image {path}: {e}") from None


def random_resized_crop(
    img, size: int, rng: random.Random, scale=DEFAULT_CROP_SCALE, ratio=(3 / 4, 4 / 3)
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


def eval_side(size: int) -> int:
    """Short side an evaluation image is resized to before its centre crop of ``size``."""
    return round(size / 0.875)


def center_crop(img, size: int):
    from PIL import Image

    w, h = img.size
    short = eval_side(size)
    scale = short / min(w, h)
    img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
    w, h = img.size
    x, y = (w - size) // 2, (h - size) // 2
    return img.crop((x, y, x + size, y + size))


def shrink(img, side: int):
    """``img`` with its short side reduced to ``side`` (the evaluation resize's arithmetic
    and filter, so a centre crop of the result equals one of the original); an image no
    larger is returned as it is."""
    from PIL import Image

    w, h = img.size
    if min(w, h) <= side:
        return img
    scale = side / min(w, h)
    return img.resize((max(side, round(w * scale)), max(side, round(h * scale))), Image.BILINEAR)


def _to_tensor(img) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.uint8).copy()
    return torch.from_numpy(arr).permute(2, 0, 1)  # uint8 CHW
