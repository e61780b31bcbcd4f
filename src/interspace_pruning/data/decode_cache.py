"""The decode cache file ``.interspace-cache/<split>-<side>px.npz``: where it lives, and
writing and reading it with its checks.

The file keeps a decoded split for the next run. It holds plain arrays (read without pickle)
and the listing it was built from (names, sizes, modification times) with its settings: a
cache that does not match the folder is rebuilt, never trusted. ``INTERSPACE_IMAGE_CACHE``
chooses: ``file`` (the default), ``memory`` (no file), ``none`` (decode every epoch, as a
plain ImageFolder does) or a folder to keep the cache files in.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import time
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..foundations.io import atomic_write_bytes
from .decoded_images import DecodedImages
from .errors import DataError

CACHE_ENV = "INTERSPACE_IMAGE_CACHE"
CACHE_MODES = ("file", "memory", "none")
CACHE_FOLDER = ".interspace-cache"
CACHE_FORMAT = "interspace-decoded-images"
CACHE_VERSION = 1
_CACHE_KEYS = ("pixels", "offsets", "shapes", "keys", "sizes", "mtimes", "meta")
#: The most an .npy header takes (format 1 allows 64 KiB).
_NPY_HEADER_MAX = 2**16 + 10
#: A cache temp file older than this is the remains of a killed write (a write takes seconds).
_STALE_TEMP_SECONDS = 3600.0


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
        folder = Path(root) / CACHE_FOLDER
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            # a received data folder may carry one: the cache must not write (or clean up)
            # wherever it leads
            _warn(
                f"{folder} is a symlink or not a folder: the decode cache keeps the images in "
                f"memory only (remove it, or set {CACHE_ENV} to a folder of yours)"
            )
            return "memory", None
        return "file", folder
    tag = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:16]
    return "file", Path(value).expanduser() / f"{Path(root).name}-{tag}"


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
    size and offset is checked before an image is sliced from it. Without ``pixels`` (read
    last, only for a cache that matches the folder), all but the pixel buffer."""
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
        if k in a and (a[k].ndim != ndim or (dtype is not None and a[k].dtype != dtype)):
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
    if "pixels" in a and int(a["offsets"][-1]) != len(a["pixels"]):
        return "its pixel buffer does not match the offsets"
    return ""


def read_cache(
    path: Path, keys: Sequence[str], sizes: np.ndarray, mtimes: np.ndarray, meta: dict, whole: bool
) -> DecodedImages | None:
    """The decoded images of cache file ``path`` if it was built from exactly these files
    (``whole``: the cache lists no other) with these settings; ``None`` otherwise (a damaged
    file is named in one warning line). The listing and settings are compared first; the
    pixel buffer is read only for a matching cache whose images' shapes account for every
    byte of it (:func:`_check_pixels`)."""
    try:
        info = path.lstat()
    except OSError:
        return None  # no cache yet
    try:
        if not stat.S_ISREG(info.st_mode):  # a symlink, FIFO or device: never read through
            raise ValueError("not a regular file")
        _check_stored(path, info.st_size)
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _CACHE_KEYS if k not in z.files]
            if missing:
                raise ValueError(f"no array {missing[0]!r}")
            arrays = {k: z[k] for k in _CACHE_KEYS if k != "pixels"}
            problem = _check_arrays(arrays)
            if problem:
                raise ValueError(problem)
            if json.loads(str(arrays["meta"])) != meta:
                return None  # other settings or an older format: rebuilt
            cached_keys = arrays["keys"].tolist()
            pos = _positions(cached_keys, keys, whole)
            if pos is None or not _same_listing(arrays, pos, sizes, mtimes):
                return None  # images were added, removed or changed
            _check_pixels(z, int(arrays["offsets"][-1]), arrays["shapes"], meta.get("side"))
            arrays["pixels"] = z["pixels"]
        problem = _check_arrays(arrays)
        if problem:
            raise ValueError(problem)
    # RecursionError: settings nested absurdly deep (json.loads)
    except (OSError, ValueError, EOFError, MemoryError, RecursionError, zipfile.BadZipFile) as e:
        problem = f"{type(e).__name__}: {str(e)[:120]}"
        _warn(f"damaged decode cache {path} ({problem}); decoding the images again")
        return None
    return DecodedImages(arrays["pixels"], arrays["offsets"], arrays["shapes"], cached_keys)


def _positions(cached: list[str], keys: Sequence[str], whole: bool) -> list[int] | None:
    """Where each of ``keys`` is in the cache (None: one is missing, or ``whole`` and the
    cache lists others too)."""
    index = {k: i for i, k in enumerate(cached)}
    if whole and len(index) != len(keys):
        return None
    pos = [index.get(k, -1) for k in keys]
    return None if min(pos, default=0) < 0 else pos


def _same_listing(a: dict, pos: list[int], sizes: np.ndarray, mtimes: np.ndarray) -> bool:
    return np.array_equal(a["sizes"][pos], sizes) and np.array_equal(a["mtimes"][pos], mtimes)


def _check_pixels(z: np.lib.npyio.NpzFile, need: int, shapes: np.ndarray, side: int | None) -> None:
    """Before the pixel buffer is read: refuse one larger than its images need (a sparse
    file of gigabytes beside a few small images took that much memory), or images whose
    short side exceeds the stored side (decoding never keeps one larger). What is left is
    what decoding the folder's own images could take."""
    stored = z.zip.getinfo("pixels.npy").file_size
    if stored > need + _NPY_HEADER_MAX:
        raise ValueError(f"its pixel buffer holds {stored:,} bytes; its images need {need:,}")
    if side is not None and len(shapes) and int(shapes.min(axis=1).max()) > side:
        raise ValueError(f"it holds an image of short side over the stored side {side}")


def _check_stored(path: Path, size: int) -> None:
    """Refuse a cache file whose arrays would inflate: :func:`write_cache` stores them
    uncompressed, so a compressed member (a deflate bomb of a few MB declaring GBs) or
    members larger than the file are not ours. (Its size needs no bound of its own: the
    images decoded again would take as much memory.)"""
    with zipfile.ZipFile(path) as z:
        members = z.infolist()
    if any(
        m.compress_type != zipfile.ZIP_STORED or m.file_size != m.compress_size for m in members
    ):
        raise ValueError("a compressed array (write_cache stores them uncompressed)")
    if sum(m.file_size for m in members) > size:
        raise ValueError("its arrays declare more bytes than the file holds")


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
    for p in folder.glob(".*.npz.*.tmp"):  # only the temp files of write_cache's names
        try:
            if p.is_file() and now - p.stat().st_mtime > _STALE_TEMP_SECONDS:
                p.unlink()
        except OSError:
            pass
