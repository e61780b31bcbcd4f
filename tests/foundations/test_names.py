"""``safe_file_stem``: file name stems from free text (a model's ``module:function``)."""

import doctest
import hashlib

import pytest

from interspace_pruning.foundations import names
from interspace_pruning.foundations.names import MAX_STEM_LENGTH, safe_file_stem

SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@pytest.mark.parametrize(
    "text",
    [
        "digits_mynet:build",
        "cifar10_resnet20_bf16",
        "",
        "...",
        ".hidden",
        "-rf",
        "trailing.",
        'a b/c\\d:e*f?g"h<i>j|k',
        "ümlaut_модель_模型",
        "con",
        "NUL.png",
        "x" * 500,
        "lr=0.1,wd=5e-4",
        "a\nb\x00c",
    ],
)
def test_only_safe_characters_bounded_and_stable(text):
    stem = safe_file_stem(text)
    assert stem and set(stem) <= SAFE, stem
    assert not stem.startswith((".", "-")) and not stem.endswith(".")
    assert len(stem) <= MAX_STEM_LENGTH
    assert stem.split(".")[0].lower() not in ("con", "prn", "aux", "nul")
    assert safe_file_stem(text) == stem


def test_safe_text_is_kept_and_replaced_text_gets_a_hash():
    assert safe_file_stem("cifar10_resnet20") == "cifar10_resnet20"
    assert safe_file_stem("resnet20-v1.5") == "resnet20-v1.5"
    digest = hashlib.sha256(b"digits_mynet:build").hexdigest()[:6]
    assert safe_file_stem("digits_mynet:build") == f"digits_mynet-build-{digest}"  # fixed names
    # texts that differ only in replaced characters keep different stems
    stems = {safe_file_stem(t) for t in ("m:build", "m/build", "m build", "m-build")}
    assert len(stems) == 4
    assert safe_file_stem("a" * 81) != safe_file_stem("a" * 82)  # the cut ones too
    assert safe_file_stem("a" * 80) == "a" * 80


def test_docstring_examples():
    assert doctest.testmod(names).failed == 0
