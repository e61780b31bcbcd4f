"""Image-folder layouts: finding the folder, scanning its classes and images, class names.

Layouts under ``root``:

- ImageNet style: ``train/<class>/*.jpg`` and ``val/<class>/*.jpg`` (any of .jpeg .jpg .png
  .bmp .webp, case-insensitive), optionally with ``classes.txt`` (``wnid<TAB>name`` lines);
- an extracted release: ``root`` holds one folder with ``train/`` and ``val/`` (the official
  Imagewoof archives: ``imagewoof2-160/``, ``imagewoof2-320/``; other files beside them, such
  as ``noisy_imagewoof.csv``, are ignored);
- Tiny-ImageNet: ``train/<wnid>/images/*.JPEG`` and ``val/images/*.JPEG`` with
  ``val/val_annotations.txt`` (``filename<TAB>wnid...``).

Labels follow the sorted class folder names (torchvision's ImageFolder order).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..foundations.io import CorruptFileError, read_text
from .errors import DataError

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}

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
        fix = "restore it from the Tiny-ImageNet release"
        for line in _small_text(annotations, 16 << 20, fix).splitlines():
            parts = line.split("\t")
            if len(parts) < 2 or parts[1] not in index:
                raise DataError(f"corrupt {annotations}: unexpected line {line[:60]!r}")
            image = val_dir / "images" / parts[0]
            # a name, not a path (an absolute one or ../ would read elsewhere), of a regular
            # file (a FIFO would block the loader forever), as train/'s images are
            if Path(parts[0]).name != parts[0] or parts[0] in (".", "..") or not image.is_file():
                raise DataError(
                    f"corrupt {annotations}: {parts[0][:60]!r} is not an image file in "
                    f"{val_dir / 'images'}; {fix}"
                )
            val.append((image, index[parts[1]]))
    else:
        unknown = sorted(d.name for d in val_dir.iterdir() if d.is_dir() and d.name not in index)
        if unknown:
            raise DataError(f"{val_dir} has classes missing from train/: {unknown[:3]}")
        val = [(p, index[c]) for c in classes for p in _images(val_dir / c)]
    if not train or not val:
        raise DataError(f"no images found under {root} (extensions {sorted(EXTENSIONS)})")
    return classes, train, val


def _small_text(path: Path, limit: int, fix: str) -> str:
    """The text of a folder's list file (a regular file of at most ``limit`` bytes, read
    bounded): a received folder's list linked to a FIFO or padded to gigabytes must not hang
    or exhaust memory."""
    try:
        return read_text(path, fix, limit)
    except CorruptFileError as e:
        raise DataError(str(e)) from None


def class_names(root: Path, classes: Sequence[str]) -> list[str]:
    """Readable names of ``classes`` (folder names, e.g. wnids) in label order: from the
    folder's ``classes.txt`` (``wnid<TAB>name`` lines) where present, else the built-in
    Imagewoof names, else the folder names themselves."""
    path = Path(root) / "classes.txt"
    listed: dict[str, str] = {}
    if path.is_file():
        fix = "fix the file or delete it (names then come from the folder names)"
        text = _small_text(path, 1 << 20, fix)
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
