"""File names made from free text (a model's ``module:function``, a setting like ``lr=0.1``).

A report names its figures after the dataset and model; ``digits_mynet:build_accuracy.png``
breaks in two ways: Markdown viewers read ``digits_mynet:`` as a URL scheme, and Windows
refuses ``:`` in file names. :func:`safe_file_stem` gives a stem that is safe everywhere.
"""

from __future__ import annotations

import hashlib
import re

#: Characters of the text kept before the hash (the whole stem is at most ``MAX_STEM_LENGTH``).
_KEPT = 80
_HASH = 6
MAX_STEM_LENGTH = _KEPT + 1 + _HASH

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+", re.ASCII)
#: Names Windows reserves for devices, with or without an extension (``con.png``).
_RESERVED = re.compile(r"^(con|prn|aux|nul|com[0-9]|lpt[0-9])(\.|$)", re.IGNORECASE)


def safe_file_stem(text: str) -> str:
    """A file name stem for ``text``: only ASCII letters, digits, ``.``, ``_`` and ``-``.

    Each run of other characters becomes one ``-``; leading ``.`` and ``-`` (a hidden file,
    an option to shell tools) and trailing ``.`` (dropped by Windows) go. The result is at
    most :data:`MAX_STEM_LENGTH` characters and never empty.

    A text that is already such a stem (up to 80 characters) is returned unchanged; any
    other gets ``-`` and 6 hex digits of its SHA-256 appended, so two texts that differ only
    in replaced characters (``m:build``, ``m/build``) keep different stems. The same text
    always gives the same stem, on every machine and Python version.

    >>> safe_file_stem("digits_mynet:build")
    'digits_mynet-build-c7354b'
    >>> safe_file_stem("cifar10_resnet20")
    'cifar10_resnet20'
    """
    stem = _UNSAFE.sub("-", text).lstrip(".-")[:_KEPT].rstrip(".")
    if not stem or _RESERVED.match(stem):
        stem = f"x-{stem}"[:_KEPT] if stem else "x"
    if stem != text:  # something was replaced: the hash keeps distinct texts apart
        stem += "-" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_HASH]
    return stem


__all__ = ["MAX_STEM_LENGTH", "safe_file_stem"]
