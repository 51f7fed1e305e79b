"""MobileNetV3-Large (Howard et al. 2019), architecturally identical to torchvision's.

Module tree matches torchvision.models.mobilenet_v3_large: features.0 is the stem
Conv2dNormActivation, features.1-15 are InvertedResidual blocks whose `block` holds
[expand,] depthwise, [SqueezeExcitation,] project, features.16 the last 1x1 conv; classifier =
Linear, Hardswish, Dropout, Linear. Its state_dict loads as-is; 5,483,032 parameters with 1000
classes. BatchNorm uses eps 0.001, momentum 0.01 as in torchvision.
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .blocks import Conv2dNormActivation, SqueezeExcitation
from .init import init_torchvision_style
from .mobilenet import _make_divisible

# (kernel, expanded, out, squeeze-excitation, activation "RE"/"HS", stride): the paper's Table 1
LARGE_SETTING = [
    (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1),
]


class InvertedResidual(nn.Module):
    """[Expand 1x1 ->] depthwise kxk -> [SE ->] project 1x1 (linear); residual when shape is
    kept."""

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, use_se: bool,
                 act: str, stride: int):
        super().__init__()
        activation = nn.Hardswish if act == "HS" else nn.ReLU
        conv = partial(Conv2dNormActivation, bn_eps=0.001, bn_momentum=0.01)
        self.use_res_connect = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv(cin, expanded, 1, activation=activation))
        layers.append(conv(expanded, expanded, kernel, stride, groups=expanded,
                           activation=activation))
        if use_se:
            layers.append(SqueezeExcitation(expanded, _make_divisible(expanded // 4, 8),
                                            scale_activation=nn.Hardsigmoid))
        layers.append(conv(expanded, cout, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return y + x if self.use_res_connect else y


class MobileNetV3(nn.Module):
    """torchvision-layout MobileNetV3-Large (features, avgpool, classifier), torchvision's init."""

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2):
        super().__init__()
        div = partial(_make_divisible, divisor=8)
        cin = div(16 * width_mult)
        features: list[nn.Module] = [Conv2dNormActivation(
            3, cin, 3, 2, activation=nn.Hardswish, bn_eps=0.001, bn_momentum=0.01)]
        for k, exp, out, se, act, s in LARGE_SETTING:
            cout = div(out * width_mult)
            features.append(InvertedResidual(cin, k, div(exp * width_mult), cout, se, act, s))
            cin = cout
        last_conv = 6 * cin
        features.append(Conv2dNormActivation(cin, last_conv, 1, activation=nn.Hardswish,
                                             bn_eps=0.001, bn_momentum=0.01))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        last_channel = div(1280 * width_mult)
        self.classifier = nn.Sequential(
            nn.Linear(last_conv, last_channel), nn.Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True), nn.Linear(last_channel, num_classes))
        init_torchvision_style(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def mobilenetv3_large(num_classes: int = 1000, width_mult: float = 1.0, **kw) -> MobileNetV3:
    return MobileNetV3(num_classes, width_mult, **kw)
