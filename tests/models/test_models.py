import pytest
import torch

import interspace_pruning as ip


@pytest.mark.parametrize(
    "name,params",
    [("resnet20", 0.27e6), ("resnet32", 0.46e6), ("resnet56", 0.85e6), ("vgg16", 14.7e6)],
)
def test_cifar_models(name, params):
    model = ip.models.get(name, num_classes=10, in_channels=3)
    n = sum(p.numel() for p in model.parameters())
    assert abs(n - params) / params < 0.03, n  # the published sizes
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


@pytest.mark.parametrize("size", [8, 28])
def test_convnet_on_small_inputs(size):
    model = ip.models.get("convnet", num_classes=10, in_channels=1)
    assert model(torch.randn(2, 1, size, size)).shape == (2, 10)


def test_other_channel_and_class_counts_and_errors():
    assert ip.models.get("resnet20", 100, 1)(torch.randn(1, 1, 28, 28)).shape == (1, 100)
    assert ip.models.get("resnet20", shortcut="B")(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        ip.models.get("resnet19")
    with pytest.raises(ValueError, match="num_classes"):
        ip.models.get("convnet", num_classes=0)


@pytest.mark.parametrize("name,params", [("resnet18", 11_689_512), ("resnet50", 25_557_032)])
def test_imagenet_resnets_have_the_published_sizes(name, params):
    model = ip.models.get(name, num_classes=1000, in_channels=3)
    assert sum(p.numel() for p in model.parameters()) == params
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 1000)
