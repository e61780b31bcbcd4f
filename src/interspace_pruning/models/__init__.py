"""Model zoo: ``models.get(name, num_classes, in_channels)``."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from .cifar_resnet import CifarResNet
from .convnet import ConvNet
from .imagenet_resnet import ImageNetResNet, resnet18, resnet50
from .vgg import VGG

_MODELS: dict[str, Callable[..., nn.Module]] = {
    "resnet20": partial(CifarResNet, 20),
    "resnet32": partial(CifarResNet, 32),
    "resnet56": partial(CifarResNet, 56),
    "vgg16": VGG,
    "resnet18": resnet18,
    "resnet50": resnet50,
    "convnet": ConvNet,
}


def names() -> list[str]:
    """The model names ``get`` accepts."""
    return sorted(_MODELS)


def register(name: str, factory: Callable[..., nn.Module]) -> None:
    """Add ``factory(num_classes=..., in_channels=..., **kwargs)`` as model ``name``."""
    _MODELS[name] = factory


def get(name: str, num_classes: int = 10, in_channels: int = 3, **kwargs) -> nn.Module:
    """Build model ``name`` (freshly initialised)."""
    if name not in _MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {names()}")
    if num_classes < 1 or in_channels < 1:
        raise ValueError(
            f"num_classes and in_channels must be >= 1, got {num_classes}, {in_channels}"
        )
    return _MODELS[name](num_classes=num_classes, in_channels=in_channels, **kwargs)


__all__ = ["CifarResNet", "ConvNet", "ImageNetResNet", "VGG", "get", "names", "register"]
