"""VGG-16 with BatchNorm: torchvision's vgg16_bn for ImageNet, and a CIFAR variant.

"vgg16" matches torchvision.models.vgg16_bn module for module (features.N, avgpool,
classifier.N; 138,365,992 parameters with 1000 classes) and uses its init.

"vgg16_cifar" keeps the same `features` (on 32x32 input the five maxpools leave 512x1x1),
pools with AdaptiveAvgPool2d(1) and uses the two-layer classifier
Linear(512, 512) - ReLU - Linear(512, num_classes) (no dropout), so the model carries a
prunable hidden linear layer and a linear->linear dependency for the engine to handle.
"""
from __future__ import annotations

import torch
from torch import nn

from .init import init_torchvision_style

CFG_D = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def _make_features(cfg: list) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            cin = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """features -> avgpool -> flatten -> classifier, with torchvision's init."""

    def __init__(self, features: nn.Sequential, avgpool: nn.Module, classifier: nn.Sequential):
        super().__init__()
        self.features = features
        self.avgpool = avgpool
        self.classifier = classifier
        init_torchvision_style(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def vgg16(num_classes: int = 1000, dropout: float = 0.5) -> VGG:
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
        nn.Linear(4096, num_classes),
    )
    return VGG(_make_features(CFG_D), nn.AdaptiveAvgPool2d((7, 7)), classifier)


def vgg16_cifar(num_classes: int = 10) -> VGG:
    classifier = nn.Sequential(nn.Linear(512, 512), nn.ReLU(True), nn.Linear(512, num_classes))
    return VGG(_make_features(CFG_D), nn.AdaptiveAvgPool2d((1, 1)), classifier)
