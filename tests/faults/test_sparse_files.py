"""Tampered sparse files: every malformed field gives a one-line ValueError naming it, never a
crash, a wrong error type or a huge allocation; options of the basis survive a round trip."""

from __future__ import annotations

import json

import pytest
import torch

import interspace_pruning as ip
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
    torch.save(payload, path)  # plain torch.save: no checksum, so validation must catch it
    return path


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
