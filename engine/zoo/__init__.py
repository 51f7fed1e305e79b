"""The engine's own model zoo: torchvision-identical architectures without torchvision.

    model = zoo.get("resnet18_cifar")                  # randomly initialised, like torchvision
    x = torch.randn(zoo.input_shape("resnet18_cifar"))

ImageNet models ("resnet18", "resnet50", "vgg16", "mobilenetv2", "mobilenetv3_large",
"efficientnet_b0", "ghostnet") default to 1000 classes and
(1, 3, 224, 224) inputs; the "*_cifar" variants default to 10 classes and (1, 3, 32, 32).
No pretrained weights are ever downloaded; seed with torch.manual_seed for determinism.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..errors import ConfigError
from .efficientnet import efficientnet_b0
from .ghostnet import ghostnet
from .mobilenet import mobilenetv2, mobilenetv2_cifar
from .mobilenetv3 import mobilenetv3_large
from .resnet import resnet18, resnet18_cifar, resnet50, resnet50_cifar
from .vgg import vgg16, vgg16_cifar

_IMAGENET = (1, 3, 224, 224)
_CIFAR = (1, 3, 32, 32)

# name -> (builder taking num_classes as first argument, default input shape)
_MODELS: dict[str, tuple[Callable[..., nn.Module], tuple]] = {
    "resnet18": (resnet18, _IMAGENET),
    "resnet50": (resnet50, _IMAGENET),
    "vgg16": (vgg16, _IMAGENET),
    "mobilenetv2": (mobilenetv2, _IMAGENET),
    "mobilenetv3_large": (mobilenetv3_large, _IMAGENET),
    "efficientnet_b0": (efficientnet_b0, _IMAGENET),
    "ghostnet": (ghostnet, _IMAGENET),
    "resnet18_cifar": (resnet18_cifar, _CIFAR),
    "resnet50_cifar": (resnet50_cifar, _CIFAR),
    "vgg16_cifar": (vgg16_cifar, _CIFAR),
    "mobilenetv2_cifar": (mobilenetv2_cifar, _CIFAR),
}


def _entry(name: str) -> tuple[Callable[..., nn.Module], tuple]:
    try:
        return _MODELS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def list_models() -> list[str]:
    """Names accepted by `get`, in registration order."""
    return list(_MODELS)


def get(name: str, num_classes: int | None = None, **kw) -> nn.Module:
    """Build model `name` (train mode, fresh init). num_classes=None keeps the model's default
    (1000 for ImageNet models, 10 for CIFAR ones); extra keywords go to the builder
    (e.g. width_mult for MobileNetV2 / V3, width for GhostNet, zero_init_residual for ResNets)."""
    builder, _ = _entry(name)
    return builder(**kw) if num_classes is None else builder(num_classes, **kw)


def input_shape(name: str) -> tuple:
    """Default example input shape (batch 1) for model `name`."""
    return _entry(name)[1]


__all__ = ["get", "list_models", "input_shape"]
