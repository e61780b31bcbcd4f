import io

import pytest
import torch

import interspace_pruning as ip
from interspace_pruning.foundations.checkpoint import save_tensors
from interspace_pruning.inference import export_sparse, load_sparse

from ..conftest import MixedNet


def _pruned(representation, share="layer", sparsity=0.9, seed=0):
    torch.manual_seed(seed)
    model = MixedNet().eval()
    if representation == "ip":
        ip.to_interspace(model, share=share)
        with torch.no_grad():
            for fb in ip.filter_bases(model):
                fb.weight.add_(0.05 * torch.randn_like(fb.weight))
    ip.prune(model, "random", sparsity, allocation="uniform")
    return model


@pytest.mark.parametrize(
    "representation,share", [("sp", "layer"), ("ip", "layer"), ("ip", "network")]
)
def test_exact_round_trip(representation, share, tmp_path, images):
    model = _pruned(representation, share)
    export_sparse(model, tmp_path / "m.isp")
    fresh = MixedNet()  # as the constructor makes it
    loaded = load_sparse(tmp_path / "m.isp", fresh).eval()
    assert torch.equal(loaded(images), model(images))
    for a, b in zip(ip.prunable(model), ip.prunable(loaded), strict=True):
        assert torch.equal(a.mask, b.mask) and torch.equal(a.param, b.param)
    sa, sb = model.state_dict(), loaded.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_zoo_models_rebuild_themselves_and_files_are_small(tmp_path):
    torch.manual_seed(0)
    model = ip.to_interspace(ip.models.get("resnet20"))
    ip.prune(model, "random", 0.95)
    size = export_sparse(
        model, tmp_path / "r.isp", {"name": "resnet20", "num_classes": 10, "in_channels": 3}
    )
    loaded = load_sparse(tmp_path / "r.isp").eval()
    x = torch.randn(2, 3, 32, 32)
    assert torch.equal(loaded(x), model.eval()(x))
    buf = io.BytesIO()
    torch.save(ip.fold(model).state_dict(), buf)
    assert size * 5 < len(buf.getvalue())
    assert (tmp_path / "r.isp").stat().st_size == size


def test_errors(tmp_path):
    model = _pruned("sp")
    export_sparse(model, tmp_path / "m.isp")
    with pytest.raises(ValueError, match="does not name its model"):
        load_sparse(tmp_path / "m.isp")
    with pytest.raises(ValueError, match="does not fit this model"):
        load_sparse(tmp_path / "m.isp", ip.models.get("convnet", 5, 3))
    (tmp_path / "junk.isp").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot read sparse file"):
        load_sparse(tmp_path / "junk.isp", MixedNet())
    save_tensors(tmp_path / "other.isp", {"meta": "{}", "tensors": {}})
    with pytest.raises(ValueError, match="is not an interspace-sparse v2 file"):
        load_sparse(tmp_path / "other.isp", MixedNet())
    ip_file = tmp_path / "ip.isp"
    export_sparse(_pruned("ip"), ip_file)
    payload = torch.load(ip_file, weights_only=True)
    payload["tensors"]["layer/stem/col"][0] = 30000  # out of range
    save_tensors(ip_file, payload)
    with pytest.raises(ValueError, match="column index outside"):
        load_sparse(ip_file, MixedNet())


def test_a_tag_names_the_run_a_file_belongs_to(tmp_path, images):
    model = _pruned("ip")
    export_sparse(model, tmp_path / "m.isp", tag="run-a")
    loaded = load_sparse(tmp_path / "m.isp", MixedNet(), tag="run-a").eval()
    assert torch.equal(loaded(images), model(images))
    assert load_sparse(tmp_path / "m.isp", MixedNet()) is not None  # no tag asked: any file
    with pytest.raises(ValueError, match="exported from another run"):
        load_sparse(tmp_path / "m.isp", MixedNet(), tag="run-b")
    export_sparse(model, tmp_path / "untagged.isp")
    with pytest.raises(ValueError, match="exported from another run"):
        load_sparse(tmp_path / "untagged.isp", MixedNet(), tag="run-a")
    payload = torch.load(tmp_path / "m.isp", weights_only=True)
    payload["meta"] = payload["meta"].replace('"tag": "run-a"', '"tag": 7')
    save_tensors(tmp_path / "m.isp", payload)
    with pytest.raises(ValueError, match="header field 'tag' must be a short string"):
        load_sparse(tmp_path / "m.isp", MixedNet())
