"""Image-folder datasets (ImageNet, Imagewoof, Tiny-ImageNet layouts), decoded once per run.

Layouts under ``root``:

- ImageNet style: ``train/<class>/*.jpg`` and ``val/<class>/*.jpg`` (any of .jpeg .jpg .png
  .bmp .webp, case-insensitive), optionally with ``classes.txt`` (``wnid<TAB>name`` lines);
- an extracted release: ``root`` holds one folder with ``train/`` and ``val/`` (the official
  Imagewoof archives: ``imagewoof2-160/``, ``imagewoof2-320/``; other files beside them, such
  as ``noisy_imagewoof.csv``, are ignored);
- Tiny-ImageNet: ``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` with
  ``val/val_annotations.txt`` (``filename<TAB>wnid...``).

Labels follow the sorted class folder names (torchvision's ImageFolder order).

**Decoding.** Each image is decoded once per run, shrunk to a stored short side (default
``size / 0.875``, the evaluation resize; a smaller image is kept as it is), and kept in memory
as uint8; the cache file ``.interspace-cache/<split>-<side>px.npz`` beside the data keeps the
decoded split for the next run. The file holds plain arrays (read without pickle) and the
listing it was built from (names, sizes, modification times) with its settings: a cache that
does not match the folder is rebuilt, never trusted. ``INTERSPACE_IMAGE_CACHE`` chooses:
``file`` (the default), ``memory`` (no file), ``none`` (decode every epoch, as a plain
ImageFolder does) or a folder to keep the cache files in. A folder too large for a quarter of
the machine's memory is streamed from disk.

**Augmentation.** Training images get a random-resized crop (area ``crop_scale``: 0.08-1 as
torchvision, 0.35-1 for Imagewoof as fast.ai trains it; aspect 3/4-4/3) and a horizontal
flip; evaluation images are resized to ``size / 0.875`` on the short side and centre-cropped.
The order of an epoch and every image's augmentation come from the seeded generator of the
training loop, drawn up front, so batches are identical whatever the number of workers, and
identical with and without the cache wherever the images are no larger than the stored side.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import time
import warnings
import zipfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ..foundations.io import atomic_write_bytes
from .dataset import Batch, balanced_indices, batch_starts, normalise
from .errors import DataError
from .shapes import SHAPES

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: The ten Imagewoof classes (fast.ai's ImageNet subset of dog breeds), by ImageNet wnid.
IMAGEWOOF_CLASSES = {
    "n02086240": "Shih-Tzu",
    "n02087394": "Rhodesian ridgeback",
    "n02088364": "beagle",
    "n02089973": "English foxhound",
    "n02093754": "Border terrier",
    "n02096294": "Australian terrier",
    "n02099601": "golden retriever",
    "n02105641": "Old English sheepdog",
    "n02111889": "Samoyed",
    "n02115641": "dingo",
}
IMAGEWOOF_SOURCE = "https://github.com/fastai/imagenette"

#: Random-resized-crop area range: torchvision's ImageNet default, and fast.ai's for its
#: small ImageNet subsets (at 128 px a crop of 8% of the image keeps too little of a dog).
DEFAULT_CROP_SCALE = (0.08, 1.0)
CROP_SCALES = {"imagewoof": (0.35, 1.0)}

CACHE_ENV = "INTERSPACE_IMAGE_CACHE"
CACHE_MODES = ("file", "memory", "none")
CACHE_FOLDER = ".interspace-cache"
CACHE_FORMAT = "interspace-decoded-images"
CACHE_VERSION = 1
_CACHE_KEYS = ("pixels", "offsets", "shapes", "keys", "sizes", "mtimes", "meta")
#: Decoded images are kept in memory only while both splits take at most this share of it.
MEMORY_FRACTION = 0.25
#: A cache temp file older than this is the remains of a killed write (a write takes seconds).
_STALE_TEMP_SECONDS = 3600.0


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())


def find_root(root: Path) -> Path:
    """The folder with ``train/`` and ``val/``: ``root`` itself, or the one folder inside it
    that has them (an extracted release such as ``imagewoof2-160/``)."""
    root = Path(root)
    if (root / "train").is_dir() and (root / "val").is_dir():
        return root
    if root.is_dir():
        inner = sorted(
            d
            for d in root.iterdir()
            if not d.name.startswith(".") and (d / "train").is_dir() and (d / "val").is_dir()
        )
        if len(inner) > 1:
            names = ", ".join(d.name for d in inner[:4])
            raise DataError(f"{root} holds several image folders ({names}); pass --root with one")
        if inner:
            return inner[0]
    return root


def scan(root: Path) -> tuple[list[str], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """Classes, training samples and validation samples of an image folder (``root`` or the
    one release folder inside it, see :func:`find_root`)."""
    root = find_root(root)
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


def class_names(root: Path, classes: Sequence[str]) -> list[str]:
    """Readable names of ``classes`` (folder names, e.g. wnids) in label order: from the
    folder's ``classes.txt`` (``wnid<TAB>name`` lines) where present, else the built-in
    Imagewoof names, else the folder names themselves."""
    path = Path(root) / "classes.txt"
    listed: dict[str, str] = {}
    if path.is_file():
        fix = "fix the file or delete it (names then come from the folder names)"
        try:
            if path.stat().st_size > 1 << 20:
                raise DataError(f"{path} is over 1 MiB, too large for a list of classes; {fix}")
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"{path} cannot be read ({e}); {fix}") from None
        known = set(classes)
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            parts = line.split("\t", 1) if "\t" in line else line.split(None, 1)
            if len(parts) != 2 or parts[0].strip() not in known:
                raise DataError(
                    f"{path} line {n} ({line[:40]!r}) is not 'folder<TAB>name' for a class "
                    f"folder of train/; {fix}"
                )
            listed[parts[0].strip()] = parts[1].strip()
    return [listed.get(c) or IMAGEWOOF_CLASSES.get(c, c) for c in classes]


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


def cache_setting(root: Path | None) -> tuple[str, Path | None]:
    """The decode cache mode (:data:`CACHE_MODES`) and the folder of its files, from
    ``INTERSPACE_IMAGE_CACHE``: unset or ``file``: beside the data; a path: that folder (one
    subfolder per data folder)."""
    value = os.environ.get(CACHE_ENV, "").strip() or "file"
    if value in ("memory", "none"):
        return value, None
    if value != "file" and not value.startswith(("/", "~", ".")):
        raise DataError(
            f"{CACHE_ENV}={value!r}: use file, memory, none, or a folder path "
            "(absolute, ~/... or ./...)"
        )
    if root is None:
        return "memory", None
    if value == "file":
        return "file", Path(root) / CACHE_FOLDER
    tag = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return "file", Path(value).expanduser() / f"{Path(root).name}-{tag}"


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 8 << 30


def _listing(paths: Sequence[Path]) -> tuple[np.ndarray, np.ndarray]:
    sizes = np.full(len(paths), -1, dtype=np.int64)
    mtimes = np.full(len(paths), -1, dtype=np.int64)
    for i, p in enumerate(paths):
        try:
            st = p.stat()
        except OSError:
            continue  # gone since the scan: decoding it says so
        sizes[i], mtimes[i] = st.st_size, st.st_mtime_ns
    return sizes, mtimes


def _warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _check_arrays(a: dict[str, np.ndarray]) -> str:
    """What is wrong with a cache file's arrays ('' if nothing): a file is data, so every
    size and offset is checked before an image is sliced from it."""
    want = {
        "pixels": (np.uint8, 1),
        "offsets": (np.int64, 1),
        "shapes": (np.int64, 2),
        "sizes": (np.int64, 1),
        "mtimes": (np.int64, 1),
        "meta": (None, 0),
        "keys": (None, 1),
    }
    for k, (dtype, ndim) in want.items():
        if a[k].ndim != ndim or (dtype is not None and a[k].dtype != dtype):
            return f"array {k!r} has dtype {a[k].dtype} and {a[k].ndim} dimensions"
    if a["keys"].dtype.kind != "U" or a["meta"].dtype.kind != "U":
        return "its keys or settings are not text"
    n = len(a["keys"])
    if a["shapes"].shape != (n, 2) or len(a["offsets"]) != n + 1 or len(a["sizes"]) != n:
        return "its arrays disagree in length"
    if len(a["mtimes"]) != n or (n and int(a["shapes"].min()) < 1):
        return "its arrays disagree in length or hold an empty image"
    lengths = a["shapes"][:, 0] * a["shapes"][:, 1] * 3
    if int(a["offsets"][0]) != 0 or not np.array_equal(np.diff(a["offsets"]), lengths):
        return "its offsets do not match the image shapes"
    if int(a["offsets"][-1]) != len(a["pixels"]):
        return "its pixel buffer does not match the offsets"
    return ""


def read_cache(
    path: Path, keys: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray, meta: dict, whole: bool
) -> DecodedImages | None:
    """The decoded images of cache file ``path`` if it was built from exactly these files
    (``whole``: the cache lists no other) with these settings; ``None`` otherwise (a damaged
    file is named in one warning line)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _CACHE_KEYS if k not in z.files]
            if missing:
                raise ValueError(f"no array {missing[0]!r}")
            arrays = {k: z[k] for k in _CACHE_KEYS}
        problem = _check_arrays(arrays)
        stored_meta = json.loads(str(arrays["meta"])) if not problem else None
    except (OSError, ValueError, EOFError, MemoryError, zipfile.BadZipFile) as e:
        problem = f"{type(e).__name__}: {str(e)[:120]}"
    if problem:
        _warn(f"damaged decode cache {path} ({problem}); decoding the images again")
        return None
    if stored_meta != meta:
        return None  # other settings or an older format: rebuilt
    cached_keys = arrays["keys"].tolist()
    index = {k: i for i, k in enumerate(cached_keys)}
    if whole and len(index) != len(keys):
        return None  # images were added or removed
    pos = [index.get(k, -1) for k in keys]
    if min(pos, default=0) < 0:
        return None
    same_sizes = np.array_equal(arrays["sizes"][pos], sizes)
    if not same_sizes or not np.array_equal(arrays["mtimes"][pos], mtimes):
        return None  # an image changed
    return DecodedImages(arrays["pixels"], arrays["offsets"], arrays["shapes"], cached_keys)


def write_cache(
    path: Path, images: DecodedImages, sizes: np.ndarray, mtimes: np.ndarray, meta: dict
) -> None:
    """Write ``images`` and the listing they were decoded from to ``path`` atomically (a
    reader never sees half a file); a folder that cannot be written is named in a warning."""
    buf = io.BytesIO()
    np.savez(
        buf,
        pixels=images.pixels,
        offsets=images.offsets,
        shapes=images.shapes,
        keys=np.array(images.keys, dtype=str),
        sizes=sizes,
        mtimes=mtimes,
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    try:
        _remove_stale_temps(path.parent)
        with buf.getbuffer() as view:
            atomic_write_bytes(path, view)  # type: ignore[arg-type]
    except OSError as e:
        _warn(
            f"could not write the decode cache {path} ({e.strerror or e}); going on without "
            f"it (set {CACHE_ENV}=memory to skip it, or to a writable folder)"
        )


def _remove_stale_temps(folder: Path) -> None:
    if not folder.is_dir():
        return
    now = time.time()
    for p in folder.glob(".*.tmp"):
        try:
            if p.is_file() and now - p.stat().st_mtime > _STALE_TEMP_SECONDS:
                p.unlink()
        except OSError:
            pass


def decode_images(paths: Sequence[Path], side: int, threads: int = 1) -> list[np.ndarray]:
    """Decode ``paths`` as RGB uint8 arrays shrunk to short side ``side`` (:func:`shrink`),
    on ``threads`` threads (PIL releases the GIL while it decodes and resizes)."""

    def one(path: Path) -> np.ndarray:
        return np.asarray(shrink(_load_rgb(path), side), dtype=np.uint8)

    if threads <= 1:
        return [one(p) for p in paths]
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(one, paths))


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
    run and kept in memory (see the module docstring for the cache and its file)."""

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
