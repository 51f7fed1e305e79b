"""EfficientNet-B0 (Tan & Le 2019), architecturally identical to torchvision's.

Module tree matches torchvision.models.efficientnet_b0: features.0 the stem, features.1-7 the
seven MBConv stages (each a Sequential of MBConv blocks whose `block` holds [expand,] depthwise,
SqueezeExcitation (SiLU, sigmoid gate), project), features.8 the last 1x1 conv; classifier =
Dropout + Linear. Its state_dict loads as-is; 5,288,548 parameters with 1000 classes.
Stochastic depth (row mode, up to 0.2 on the last block) drops residual branches in training only;
in eval mode it is the identity.
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import nn

from .blocks import Conv2dNormActivation, SqueezeExcitation
from .init import init_torchvision_style
from .mobilenet import _make_divisible

# (expand ratio, kernel, first stride, input channels, output channels, layers) per stage, B0
B0_SETTING = [
    (1, 3, 1, 32, 16, 1), (6, 3, 2, 16, 24, 2), (6, 5, 2, 24, 40, 2), (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3), (6, 5, 2, 112, 192, 4), (6, 3, 1, 192, 320, 1),
]


class StochasticDepth(nn.Module):
    """Drops the whole residual branch of a sample with probability p (training only), scaling
    the survivors by 1 / (1 - p); identity in eval mode."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        noise = torch.empty((x.shape[0],) + (1,) * (x.dim() - 1), dtype=x.dtype, device=x.device)
        return x * noise.bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}, mode=row"


class MBConv(nn.Module):
    """[Expand 1x1 ->] depthwise kxk -> SE -> project 1x1 (linear); residual (with stochastic
    depth) when the shape is kept."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int,
                 drop: float):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        hidden = _make_divisible(cin * expand, 8)
        conv = partial(Conv2dNormActivation, activation=nn.SiLU)
        layers: list[nn.Module] = []
        if hidden != cin:
            layers.append(conv(cin, hidden, 1))
        layers += [conv(hidden, hidden, kernel, stride, groups=hidden),
                   SqueezeExcitation(hidden, max(1, cin // 4),
                                     activation=partial(nn.SiLU, inplace=True)),
                   Conv2dNormActivation(hidden, cout, 1, activation=None)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(drop)
        self.out_channels = cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return self.stochastic_depth(y) + x if self.use_res_connect else y


class EfficientNet(nn.Module):
    """torchvision-layout EfficientNet-B0 (features, avgpool, classifier), torchvision's init."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2,
                 stochastic_depth_prob: float = 0.2):
        super().__init__()
        features: list[nn.Module] = [Conv2dNormActivation(3, 32, 3, 2, activation=nn.SiLU)]
        total, index = sum(row[-1] for row in B0_SETTING), 0
        for expand, k, s, cin, cout, n in B0_SETTING:
            stage = []
            for i in range(n):
                drop = stochastic_depth_prob * index / total
                stage.append(MBConv(cin if i == 0 else cout, cout, expand, k, s if i == 0 else 1,
                                    drop))
                index += 1
            features.append(nn.Sequential(*stage))
        last = 4 * B0_SETTING[-1][4]
        features.append(Conv2dNormActivation(B0_SETTING[-1][4], last, 1, activation=nn.SiLU))
        self.features = nn.Sequential(*features)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True),
                                        nn.Linear(last, num_classes))
        _init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _init(model: nn.Module) -> None:
    """torchvision's EfficientNet init: as MobileNet's, but linears uniform in
    +-1/sqrt(out_features)."""
    init_torchvision_style(model)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            r = 1.0 / math.sqrt(m.out_features)
            nn.init.uniform_(m.weight, -r, r)


def efficientnet_b0(num_classes: int = 1000, **kw) -> EfficientNet:
    return EfficientNet(num_classes, **kw)
