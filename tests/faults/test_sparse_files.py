"""Tampered sparse files: every malformed field gives a one-line ValueError naming it, never a
crash, a wrong error type or a huge allocation; options of the basis survive a round trip."""

from __future__ import annotations

import json

import pytest
import torch

import interspace_pruning as ip
from interspace_pruning.foundations.checkpoint import UncheckedFileWarning, save_tensors
from interspace_pruning.inference.sparse_format import export_sparse, load_sparse

from .conftest import flip_bit, one_line

SPEC = {"name": "convnet", "num_classes": 10, "in_channels": 1}


def _model(basis="dct", normalize=True, trainable=True):
    torch.manual_seed(0)
    m = ip.models.get("convnet", 10, 1)
    ip.to_interspace(m, basis, "layer", trainable, normalize)
    ip.prune(m, "random", 0.8)
    return m.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    path = tmp_path_factory.mktemp("sparse") / "m.isp"
    export_sparse(_model(), path, SPEC)
    return path


def _tampered(exported, tmp_path, change):
    payload = torch.load(exported, weights_only=True)
    original = payload["meta"]
    meta = json.loads(original)
    change(meta, payload["tensors"], payload)
    if payload["meta"] is original:  # the change edited the parsed header
        payload["meta"] = json.dumps(meta)
    path = tmp_path / "t.isp"
    # anyone can compute the checksum: the validation must catch what the checksum cannot
    save_tensors(path, payload)
    return path


def _state_key(tensors, leaf):
    return next(k for k in tensors if k.startswith("state/") and k.endswith(leaf))


def _set_state(leaf, value):
    def change(meta, tensors, payload):
        key = _state_key(tensors, leaf)
        t = tensors[key].clone()
        t.reshape(-1)[0] = value
        tensors[key] = t

    return change


def _first_layer(meta):
    return meta["layers"][0]["name"]


def _set_rowptr(values):
    def change(meta, tensors, payload):
        key = f"layer/{_first_layer(meta)}/rowptr"
        r = tensors[key].clone()
        values(r)
        tensors[key] = r

    return change


def _repeat_a_column(meta, tensors):
    key = f"layer/{_first_layer(meta)}/"
    r, col = tensors[key + "rowptr"].long(), tensors[key + "col"]
    row = int(torch.nonzero(r.diff() >= 2)[0])  # a row with two entries or more
    col[int(r[row]) + 1] = col[int(r[row])]


def _swap_rows(r):
    r[1], r[2] = r[2].clone() + 1, r[1].clone()


CASES = {
    "non-monotonic rowptr": (_set_rowptr(_swap_rows), "rowptr"),
    "negative rowptr": (_set_rowptr(lambda r: r.__setitem__(1, -5)), "rowptr"),
    "rowptr not starting at 0": (_set_rowptr(lambda r: r.__setitem__(0, 1)), "rowptr"),
    "rowptr count": (_set_rowptr(lambda r: r.__setitem__(-1, r[-1] + 1)), "rowptr"),
    "missing tensor": (
        lambda m, t, p: t.pop(f"layer/{_first_layer(m)}/values"),
        "values' is missing",
    ),
    "missing basis": (lambda m, t, p: t.pop("basis/0"), "'basis/0' is missing"),
    "basis wrong shape": (lambda m, t, p: t.__setitem__("basis/0", torch.zeros(9, 8)), "basis/0"),
    "column out of range": (
        lambda m, t, p: t[f"layer/{_first_layer(m)}/col"].__setitem__(0, 30000),
        "column index outside",
    ),
    "repeated column": (lambda m, t, p: _repeat_a_column(m, t), "increase strictly"),
    "NaN values": (
        lambda m, t, p: t[f"layer/{_first_layer(m)}/values"].__setitem__(0, float("nan")),
        "NaN",
    ),
    "values of int type": (
        lambda m, t, p: t.__setitem__(
            f"layer/{_first_layer(m)}/values", t[f"layer/{_first_layer(m)}/values"].long()
        ),
        "dtype",
    ),
    "shape as text": (lambda m, t, p: m["layers"][0].__setitem__("shape", "3x3"), "shape"),
    "shape with a huge size": (
        lambda m, t, p: m["layers"][0]["shape"].__setitem__(0, 2**40),
        "shape",
    ),
    "kind unknown": (lambda m, t, p: m["layers"][0].__setitem__("kind", 5), "kind"),
    "layers not a list": (lambda m, t, p: m.__setitem__("layers", {"a": 1}), "'layers'"),
    "layer not a mapping": (lambda m, t, p: m["layers"].__setitem__(0, 7), "layers[0]"),
    "basis index out of range": (lambda m, t, p: m["layers"][0].__setitem__("basis", 99), "basis"),
    "normalize as text": (
        lambda m, t, p: m["bases"][0].__setitem__("normalize", "yes"),
        "normalize",
    ),
    "kernel huge": (lambda m, t, p: m["bases"][0].__setitem__("kernel", [2**20, 3]), "kernel"),
    "share unknown": (lambda m, t, p: m.__setitem__("share", "galaxy"), "share"),
    "num_classes 2**40": (
        lambda m, t, p: m["model"].__setitem__("num_classes", 2**40),
        "num_classes",
    ),
    "num_classes as text": (
        lambda m, t, p: m["model"].__setitem__("num_classes", "10"),
        "num_classes",
    ),
    "in_channels huge": (
        lambda m, t, p: m["model"].__setitem__("in_channels", 10**7),
        "in_channels",
    ),
    "model name missing": (lambda m, t, p: m["model"].pop("name"), "model.name"),
    "tensors not a dict": (lambda m, t, p: p.__setitem__("tensors", [1, 2]), "'tensors'"),
    "a tensor that is not one": (lambda m, t, p: t.__setitem__("state/x", 3), "state/x"),
    "header not JSON": (lambda m, t, p: p.__setitem__("meta", "{nope"), "not JSON"),
    "header a list": (lambda m, t, p: p.__setitem__("meta", "[1]"), "not a mapping"),
    "wrong version": (lambda m, t, p: m.__setitem__("version", 99), "is not an interspace-sparse"),
    "NaN running_var": (_set_state("running_var", float("nan")), "running_var' holds NaN"),
    "negative running_var": (_set_state("running_var", -1.0), "negative variance"),
    "inf bias": (_set_state(".bias", float("inf")), "infinite"),
    "inf running_mean": (_set_state("running_mean", float("-inf")), "infinite"),
    "negative num_batches_tracked": (_set_state("num_batches_tracked", -3), "non-negative"),
    "bias of the wrong size": (
        lambda m, t, p: t.__setitem__(f"state/{_first_layer(m)}.bias", torch.zeros(3)),
        "the layer's",
    ),
    "BN statistics of two sizes": (
        lambda m, t, p: t.__setitem__(_state_key(t, "running_mean"), torch.zeros(2)),
        "running_mean",
    ),
    "a tensor outside the format": (
        lambda m, t, p: t.__setitem__("extra/payload", torch.zeros(1)),
        "not part of the format",
    ),
    "model name os:abort": (lambda m, t, p: m["model"].__setitem__("name", "os:abort"), "os:abort"),
    "model name os:system": (
        lambda m, t, p: m["model"].__setitem__("name", "os:system"),
        "never imported",
    ),
    "model name builtins:exec": (
        lambda m, t, p: m["model"].__setitem__("name", "builtins:exec"),
        "model.name",
    ),
    "model name this:x": (lambda m, t, p: m["model"].__setitem__("name", "this:x"), "model.name"),
    "model name unknown": (lambda m, t, p: m["model"].__setitem__("name", "nonet"), "model.name"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_tampered_sparse_file(exported, tmp_path, case):
    change, match = CASES[case]
    path = _tampered(exported, tmp_path, change)
    with pytest.raises(ValueError) as e:
        load_sparse(path)
    msg = one_line(str(e.value))
    assert match in msg, msg
    assert str(path) in msg


def test_a_bit_flip_in_a_sparse_file_is_caught_by_its_checksum(exported, tmp_path):
    path = tmp_path / "flipped.isp"
    path.write_bytes(exported.read_bytes())
    flip_bit(path, 0.5)
    with pytest.raises(ValueError, match="is damaged") as e:
        load_sparse(path)
    assert str(path) in one_line(str(e.value))


@pytest.mark.parametrize(
    "basis,normalize,trainable", [("random", False, False), ("standard", True, True)]
)
def test_basis_init_and_options_survive_the_round_trip(tmp_path, basis, normalize, trainable):
    model = _model(basis, normalize, trainable)
    export_sparse(model, tmp_path / "m.isp", SPEC)
    back = load_sparse(tmp_path / "m.isp").eval()
    for a, b in zip(ip.filter_bases(model), ip.filter_bases(back), strict=True):
        assert b.init == basis and b.normalize == normalize
        assert b.weight.requires_grad == trainable
        assert torch.equal(a.weight, b.weight)
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(model(x), back(x), atol=1e-6)


def test_version_1_files_still_load(exported, tmp_path):
    def to_v1(meta, tensors, payload):
        meta["version"] = 1
        meta.pop("representation")
        for b in meta["bases"]:
            b.pop("init")

    path = _tampered(exported, tmp_path, to_v1)
    model = load_sparse(path).eval()
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(model(x), load_sparse(exported).eval()(x))


def _without_trailer(path, out):
    payload = torch.load(path, weights_only=True)
    torch.save(payload, out)  # a plain torch.save: the checksum trailer is gone
    return out


def test_a_file_without_its_checksum_is_refused(exported, tmp_path):
    path = _without_trailer(exported, tmp_path / "bare.isp")
    with pytest.raises(ValueError) as e:
        load_sparse(path)
    assert "has no checksum" in one_line(str(e.value))


def test_a_version_1_file_never_had_a_checksum_and_still_loads(exported, tmp_path):
    payload = torch.load(exported, weights_only=True)
    meta = json.loads(payload["meta"])
    meta["version"] = 1
    payload["meta"] = json.dumps(meta)
    torch.save(payload, tmp_path / "v1.isp")
    with pytest.warns(UncheckedFileWarning, match="old version"):
        model = load_sparse(tmp_path / "v1.isp")
    assert ip.sparsity_report(model).sparsity > 0.5


def test_a_trusted_import_path_is_rebuilt_and_an_untrusted_one_never_imported(
    exported, tmp_path, monkeypatch
):
    """The header names a builder by import path: the marker module is imported only when
    the caller vouches for that name."""
    (tmp_path / "marker_builder.py").write_text(
        "import pathlib\n"
        f"pathlib.Path({str(tmp_path / 'imported')!r}).write_text('yes')\n"
        "from interspace_pruning import models\n"
        "def build(num_classes=10, in_channels=1):\n"
        "    return models.get('convnet', num_classes, in_channels)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _tampered(
        exported, tmp_path, lambda m, t, p: m["model"].__setitem__("name", "marker_builder:build")
    )
    with pytest.raises(ip.models.UntrustedModelError, match="model.name"):
        load_sparse(path)
    assert not (tmp_path / "imported").exists()
    with pytest.raises(ip.models.UntrustedModelError):
        load_sparse(path, trust_model_imports={"other:name"})
    assert not (tmp_path / "imported").exists()
    model = load_sparse(path, trust_model_imports={"marker_builder:build"})
    assert (tmp_path / "imported").exists()
    torch.manual_seed(0)
    given = load_sparse(path, model=ip.models.get("convnet", 10, 1))  # the caller's model
    x = torch.randn(2, 1, 8, 8)
    assert torch.equal(model(x), given(x))
