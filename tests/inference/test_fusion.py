import torch
from torch import nn

import interspace_pruning as ip
from interspace_pruning.inference.fusion import batchnorm_pairs, fuse_batchnorm

from ..conftest import MixedNet


def _randomise_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.randn(m.num_features, generator=g))
                m.bias.copy_(torch.randn(m.num_features, generator=g))


class Branchy(nn.Module):
    """conv_a feeds a BN only (fusible); conv_b feeds a BN and a skip (not fusible)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv_b, self.bn_b = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        x = torch.relu(self.bn_a(self.conv_a(x)))
        y = self.conv_b(x)
        return self.bn_b(y) + y


class Dynamic(nn.Module):
    """Control flow on values: torch.fx cannot trace it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)) if x.sum() > 0 else x


def test_fuses_only_sole_consumer_pairs_and_keeps_outputs():
    torch.manual_seed(0)
    model = Branchy().eval()
    _randomise_bn(model)
    x = torch.randn(2, 3, 8, 8)
    expected = model(x)
    assert batchnorm_pairs(model) == [("conv_a", "bn_a")]
    assert fuse_batchnorm(model) == [("conv_a", "bn_a")]
    assert isinstance(model.bn_a, nn.Identity) and isinstance(model.bn_b, nn.BatchNorm2d)
    assert torch.allclose(model(x), expected, rtol=1e-5, atol=1e-5)


def test_untraceable_model_is_left_alone():
    model = Dynamic().eval()
    assert fuse_batchnorm(model) == []
    assert isinstance(model.bn, nn.BatchNorm2d)


def test_sparse_engine_folds_batchnorm_into_sparse_layers(images):
    for representation in ("sp", "ip"):
        torch.manual_seed(0)
        model = MixedNet().eval()
        if representation == "ip":
            ip.to_interspace(model)
        _randomise_bn(model)
        ip.prune(model, "random", 0.8, allocation="uniform")
        fused = ip.sparse_inference(model, mode="sparse")
        kept = ip.sparse_inference(model, mode="sparse", fuse_bn=False)
        assert fused.fused_bn == [("stem", "bn")] and kept.fused_bn == []
        assert isinstance(fused.bn, nn.Identity) and isinstance(kept.bn, nn.BatchNorm2d)
        expected = model(images)
        for engine in (fused, kept):
            assert torch.allclose(engine(images), expected, rtol=1e-4, atol=1e-5)
