"""The API reference shows plain defaults and a docstring for every name it lists (issue
32): docs/reference.md renders signatures from the source with Griffe (mkdocstrings), so a
field written ``hp("ip", "help", KINDS, key=...)`` showed that expression as its default.
Checked with Griffe itself (about a second), without building the site."""

from __future__ import annotations

import functools
import re

import pytest

from .examples import ROOT

griffe = pytest.importorskip("griffe")

#: What a default must not show: the internals of a field's definition.
INTERNAL = re.compile(r"\b(hp|field|_flag)\(|metadata")


@functools.cache
def documented() -> tuple:
    """Every class and function the reference renders: its ``:::`` targets, and the
    exports of the subpackages it renders whole."""
    pkg = griffe.load("interspace_pruning", search_paths=[str(ROOT / "src")])
    out = []
    for target in re.findall(r"^::: (\S+)", (ROOT / "docs" / "reference.md").read_text(), re.M):
        obj = pkg[target.removeprefix("interspace_pruning.")]
        obj = obj.final_target if obj.is_alias else obj
        members = [obj[n] for n in obj.exports or []] if obj.is_module else [obj]
        out += [m.final_target if m.is_alias else m for m in members]
    return tuple(o for o in out if o.is_class or o.is_function)


def test_the_reference_shows_plain_defaults():
    shown = documented()
    assert any(o.name == "Representation" for o in shown)
    bad = [
        f"{o.path}({p.name}={p.default})"
        for o in shown
        for p in o.parameters
        if p.default is not None and INTERNAL.search(str(p.default))
    ]
    assert not bad, bad


def test_representation_shows_its_defaults():
    (rep,) = [o for o in documented() if o.name == "Representation"]
    defaults = {p.name: str(p.default) for p in rep.parameters if p.name != "self"}
    assert defaults == {
        "kind": "'ip'",
        "basis": "'dct'",
        "share": "'layer'",
        "trainable_basis": "True",
        "normalize": "True",
    }
    assert "Attributes:" in rep.docstring.value  # each field said in words


@pytest.mark.parametrize(
    "name",
    [
        "method_names",
        "DynamicSparseTraining",
        "GradualMagnitudePruning",
        "snapshot_masks",
        "state_copy",
        "PrunerStateError",
        "check_pruner_state",
    ],
)
def test_these_names_have_a_docstring(name):
    found = [o for o in documented() if o.name == name]
    assert found and all(o.docstring and o.docstring.value.strip() for o in found), name
