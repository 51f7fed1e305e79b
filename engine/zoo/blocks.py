"""Building blocks shared by the mobile-class zoo models (MobileNetV3, EfficientNet).

Names and child indices follow torchvision's Conv2dNormActivation and SqueezeExcitation, so the
models built from them load torchvision state_dicts: a conv block is Sequential(conv, norm[, act])
as children 0, 1, 2; squeeze-excitation holds avgpool, fc1, fc2, activation, scale_activation.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import nn


class Conv2dNormActivation(nn.Sequential):
    """Conv2d (no bias, 'same' padding) - BatchNorm2d - activation (omitted when None)."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1,
                 groups: int = 1, activation: Optional[Callable[..., nn.Module]] = nn.ReLU,
                 bn_eps: float = 1e-5, bn_momentum: float = 0.1):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups,
                      bias=False),
            nn.BatchNorm2d(cout, eps=bn_eps, momentum=bn_momentum),
        ]
        if activation is not None:
            layers.append(activation(inplace=True))
        super().__init__(*layers)
        self.out_channels = cout


class SqueezeExcitation(nn.Module):
    """x * gate(fc2(act(fc1(avgpool(x))))): per-channel scales from a 1x1 bottleneck."""

    def __init__(self, channels: int, squeeze: int,
                 activation: Callable[..., nn.Module] = nn.ReLU,
                 scale_activation: Callable[..., nn.Module] = nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.fc2(self.activation(self.fc1(self.avgpool(x))))
        return self.scale_activation(s) * x
