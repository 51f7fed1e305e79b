"""MobileNetV2, architecturally identical to torchvision's, plus a CIFAR variant.

Module tree matches torchvision.models.mobilenet_v2 (features.N are ConvBNActivation /
InvertedResidual blocks, InvertedResidual.conv holds the pw / dw / pw-linear layers,
classifier = Dropout + Linear), so its state_dict loads as-is; 3,504,872 parameters with
width_mult=1.0 and 1000 classes.

"mobilenetv2_cifar" follows the common 32x32 adaptation: stem conv stride 1 and the first
24-channel stage stride 1 (overall downsampling 8x instead of 32x, final map 4x4), 10 classes.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .init import init_torchvision_style

# (expand ratio t, output channels c, repeats n, first stride s) -- the paper's Table 2
IMAGENET_SETTING = [
    [1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2],
    [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1],
]
CIFAR_SETTING = [row[:3] + [1] if row[1] == 24 else row for row in IMAGENET_SETTING]


def _make_divisible(v: float, divisor: int = 8) -> int:
    """Round channels to a multiple of `divisor` without dropping more than 10% (torchvision)."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNActivation(nn.Sequential):
    """Conv2d (no bias, 'same' padding) - BatchNorm2d - ReLU6, as children 0, 1, 2."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, stride: int = 1, groups: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU6(inplace=True),
        )
        self.out_channels = cout


class InvertedResidual(nn.Module):
    """Expand 1x1 -> depthwise 3x3 -> project 1x1 (linear); residual when shape is kept."""

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int):
        super().__init__()
        self.stride = stride
        hidden = int(round(inp * expand_ratio))
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNActivation(inp, hidden, kernel_size=1))
        layers += [
            ConvBNActivation(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class MobileNetV2(nn.Module):
    """torchvision-layout MobileNetV2 (features, classifier) with torchvision's init."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 setting: list | None = None, stem_stride: int = 2, round_nearest: int = 8):
        super().__init__()
        setting = IMAGENET_SETTING if setting is None else setting
        cin = _make_divisible(32 * width_mult, round_nearest)
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvBNActivation(3, cin, stride=stem_stride)]
        for t, c, n, s in setting:
            cout = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                features.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        features.append(ConvBNActivation(cin, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes))

        init_torchvision_style(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenetv2(num_classes: int = 1000, width_mult: float = 1.0, **kw) -> MobileNetV2:
    return MobileNetV2(num_classes, width_mult, **kw)


def mobilenetv2_cifar(num_classes: int = 10, width_mult: float = 1.0, **kw) -> MobileNetV2:
    return MobileNetV2(num_classes, width_mult, setting=CIFAR_SETTING, stem_stride=1, **kw)
