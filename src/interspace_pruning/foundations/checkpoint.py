"""Saving and loading tensors safely: atomic writes, checksums, ``torch.load(weights_only=True)``.

Files are ordinary ``torch.save`` zip archives, so ``torch.load(path, weights_only=True)``
reads them anywhere. The zip's trailing comment holds ``IPSHA256`` and the SHA-256 of every
byte before the comment's length field; :func:`load_tensors` checks it before unpickling,
because ``torch.load`` does not verify the zip's CRCs and would accept a flipped bit silently.

A file without the checksum is refused, unless its reader says its content is of a version
that was written before checksums existed (``legacy``); those load with an
:class:`UncheckedFileWarning`.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from .io import CorruptFileError, atomic_write_bytes, read_file_bytes

MAGIC = b"IPSHA256"
_EOCD = b"PK\x05\x06"  # zip end-of-central-directory record: 22 bytes + comment
_COMMENT_LEN = len(MAGIC) + 64


class UncheckedFileWarning(UserWarning):
    """A file of a version written before checksums existed was read without one."""


def with_checksum(data: bytes) -> bytes:
    """``torch.save`` output with the checksum comment appended to its zip trailer."""
    if len(data) < 22 or data[-22:-18] != _EOCD or data[-2:] != b"\0\0":
        raise ValueError("not a torch.save zip archive without a comment")
    body = data[:-2]
    digest = hashlib.sha256(body).hexdigest().encode()
    return body + _COMMENT_LEN.to_bytes(2, "little") + MAGIC + digest


def verify_checksum(data: bytes) -> bool | None:
    """True if the checksum matches, False if the file is damaged, None for a file without
    one (plain ``torch.save``, an older version of this project, or not a zip at all).

    A flipped bit anywhere before the comment changes the digest; one inside the magic
    leaves the payload intact, and the file is read as an unchecked one.
    """
    n = _COMMENT_LEN
    if len(data) < 22 + n + 2 or data[-n:-64] != MAGIC:
        return None
    if data[-22 - n : -18 - n] != _EOCD or data[-n - 2 : -n] != n.to_bytes(2, "little"):
        return False
    return hashlib.sha256(data[: -n - 2]).hexdigest().encode() == data[-64:]


def save_tensors(path: str | Path, obj: dict, keep_previous: str | Path | None = None) -> int:
    """``torch.save`` a dict of tensors (and plain values) atomically, with a checksum.

    ``keep_previous``: rename an existing file there first (see ``atomic_write_bytes``).
    Returns the size in bytes.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    data = with_checksum(buf.getvalue())
    atomic_write_bytes(path, data, keep_previous)
    return len(data)


def _unreadable(data: bytes, error: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused ``data``, in our words: torch's own
    message can advise loading with ``weights_only=False``, which would run the file's code."""
    if not data.startswith(b"PK"):
        return "it is not a torch archive (a file of another kind, or one cut at its start)"
    if "weights_only" in str(error) or "pickl" in type(error).__name__.lower():
        return (
            "it holds objects other than tensors, numbers and strings (not a file this "
            "program wrote; such files are never unpickled)"
        )
    return "its archive is damaged or cut short"


def load_tensors(
    path: str | Path,
    what: str = "checkpoint",
    fix: str = "",
    legacy: Callable[[dict], bool] | None = None,
) -> dict:
    """Load a file written by :func:`save_tensors`; never unpickles code.

    The checksum is verified first: a damaged or truncated file raises a
    :class:`~.io.CorruptFileError` (a ``ValueError``) that names it, with ``fix`` appended.
    A file without a checksum is refused too, unless ``legacy(content)`` says its content is
    of a version written before checksums existed: that one loads, with an
    :class:`UncheckedFileWarning`.
    """
    path = Path(path)
    if not path.exists():
        raise ValueError(f"{what} {path} not found" + (f"; {fix}" if fix else ""))
    data = read_file_bytes(path, fix)
    checked = verify_checksum(data)
    if checked is False:
        raise CorruptFileError(
            path,
            "is damaged",
            fix,
            message=f"{what} {path} is damaged (its checksum does not match: the file was "
            "truncated or changed after it was written)" + (f"; {fix}" if fix else ""),
        )
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling errors of all kinds: corrupt or not a checkpoint
        msg = f"cannot read {what} {path}: {_unreadable(data, e)}" + (f"; {fix}" if fix else "")
        raise CorruptFileError(path, "cannot be read", fix, message=msg) from None
    if not isinstance(obj, dict):
        msg = f"{what} {path} holds a {type(obj).__name__}, not a state dict"
        raise CorruptFileError(path, "is not a dict", fix, message=msg)
    claimed = logical_bytes(obj)
    if claimed is None or claimed > 2 * len(data) + SLACK_BYTES:
        # expanded (stride 0) or repeated views of a small storage: an 11 KB file claiming
        # 180 million values took 2 GB when its tensors were used (measured)
        msg = (
            f"{what} {path} describes "
            + ("nesting deeper than a state dict" if claimed is None else f"{claimed:,} bytes")
            + f" of tensors from {len(data):,} bytes of file (expanded or repeated views: "
            "not a file this program wrote)"
        ) + (f"; {fix}" if fix else "")
        raise CorruptFileError(path, "describes more tensor data than it holds", fix, message=msg)
    if checked is None:
        if legacy is None or not legacy(obj):
            msg = (
                f"{what} {path} has no checksum (its trailer is missing: the file was cut or "
                "changed after it was written, or not written by interspace-pruning)"
            ) + (f"; {fix}" if fix else "")
            raise CorruptFileError(path, "has no checksum", fix, message=msg)
        warnings.warn(
            f"{what} {path} is of an old version written without a checksum: read unchecked",
            UncheckedFileWarning,
            stacklevel=2,
        )
    return obj


#: Tensor bytes a file may describe beyond twice its own size: views that share a storage
#: (a filter basis shared by every layer appears under each layer's name) are small.
SLACK_BYTES = 16 * 2**20
_MAX_DEPTH = 16


def logical_bytes(obj: object) -> int | None:
    """The bytes the tensors in ``obj`` (nested dicts, lists, tuples) describe, counting
    every view in full; None if ``obj`` nests deeper than :data:`_MAX_DEPTH` levels. A file
    we wrote describes about what it holds; each tensor of another may be an expanded view
    of one value."""
    total, todo = 0, [(obj, 0)]
    while todo:
        item, depth = todo.pop()
        if isinstance(item, torch.Tensor):
            total += item.numel() * item.element_size()
        elif isinstance(item, (dict, list, tuple)):
            if depth >= _MAX_DEPTH:
                return None
            values = item.values() if isinstance(item, dict) else item
            todo.extend((v, depth + 1) for v in values)
    return total


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
