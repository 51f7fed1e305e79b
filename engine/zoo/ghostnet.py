"""GhostNet 1.0x (Han et al., CVPR 2020) in the authors' reference layout.

A ghost module makes half its output channels with an ordinary 1x1 conv (`primary_conv`) and the
other half from those by a cheap depthwise 3x3 (`cheap_operation`), concatenates the two and
slices to the requested width. A ghost bottleneck is ghost1 (ReLU) -> [depthwise stride-2 conv_dw
+ bn_dw] -> [SqueezeExcite, hard-sigmoid gate] -> ghost2 (linear), plus an identity or a
depthwise + 1x1 shortcut. Module names (conv_stem, bn1, blocks.i.j.ghost1.primary_conv.0, se.
conv_reduce, conv_head, classifier, ...) and shapes follow the reference implementation, so its
state_dict loads as-is; 5,182,508 parameters with 1000 classes (the paper's "5.2M"). Like the
reference, it keeps PyTorch's default init.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from .mobilenet import _make_divisible

# Per stage, per block: (dw kernel, expanded, out, SE ratio, stride): the paper's Table 1
CFGS = [
    [(3, 16, 16, 0, 1)],
    [(3, 48, 24, 0, 2)], [(3, 72, 24, 0, 1)],
    [(5, 72, 40, 0.25, 2)], [(5, 120, 40, 0.25, 1)],
    [(3, 240, 80, 0, 2)],
    [(3, 200, 80, 0, 1), (3, 184, 80, 0, 1), (3, 184, 80, 0, 1), (3, 480, 112, 0.25, 1),
     (3, 672, 112, 0.25, 1)],
    [(5, 672, 160, 0.25, 2)],
    [(5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1), (5, 960, 160, 0, 1), (5, 960, 160, 0.25, 1)],
]


def _conv_bn(cin: int, cout: int, kernel: int, groups: int = 1, relu: bool = True) -> nn.Sequential:
    """conv (stride 1, 'same' padding) - BN - ReLU, children 0, 1, 2 (an empty Sequential at 2
    when linear, as in the reference, so indices and names stay put)."""
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, 1, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True) if relu else nn.Sequential())


class GhostModule(nn.Module):
    """cat(primary 1x1 conv, depthwise 3x3 of it)[:, :oup]."""

    def __init__(self, inp: int, oup: int, relu: bool = True, ratio: int = 2, dw_size: int = 3):
        super().__init__()
        self.oup = oup
        init_channels = math.ceil(oup / ratio)
        self.primary_conv = _conv_bn(inp, init_channels, 1, relu=relu)
        self.cheap_operation = _conv_bn(init_channels, init_channels * (ratio - 1), dw_size,
                                        groups=init_channels, relu=relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.primary_conv(x)
        out = torch.cat([x1, self.cheap_operation(x1)], dim=1)
        return out[:, :self.oup, :, :]


class SqueezeExcite(nn.Module):
    """x * hard_sigmoid(conv_expand(relu(conv_reduce(avg_pool(x)))))."""

    def __init__(self, channels: int, se_ratio: float = 0.25, divisor: int = 4):
        super().__init__()
        reduced = _make_divisible(channels * se_ratio, divisor)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv_expand(self.act1(self.conv_reduce(self.avg_pool(x))))
        return x * F.hardsigmoid(s)


class GhostBottleneck(nn.Module):
    """ghost1 -> [dw stride 2] -> [SE] -> ghost2, plus identity or dw + 1x1 shortcut."""

    def __init__(self, in_chs: int, mid_chs: int, out_chs: int, dw_kernel: int = 3,
                 stride: int = 1, se_ratio: float = 0.0):
        super().__init__()
        self.stride = stride
        pad = (dw_kernel - 1) // 2
        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True)
        if stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel, stride, pad, groups=mid_chs,
                                     bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.se = SqueezeExcite(mid_chs, se_ratio) if se_ratio else None
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False)
        if in_chs == out_chs and stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel, stride, pad, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, bias=False),
                nn.BatchNorm2d(out_chs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost1(x)
        if self.stride > 1:
            y = self.bn_dw(self.conv_dw(y))
        if self.se is not None:
            y = self.se(y)
        return self.ghost2(y) + self.shortcut(x)


class GhostNet(nn.Module):
    """The reference GhostNet: conv_stem, bn1, act1, blocks (9 stages + a 1x1 ConvBnAct),
    global_pool, conv_head (with bias), act2, dropout, classifier."""

    def __init__(self, num_classes: int = 1000, width: float = 1.0, dropout: float = 0.2):
        super().__init__()
        self.dropout = dropout
        cin = _make_divisible(16 * width, 4)
        self.conv_stem = nn.Conv2d(3, cin, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cin)
        self.act1 = nn.ReLU(inplace=True)
        stages = []
        for cfg in CFGS:
            blocks = []
            for k, exp, c, se, s in cfg:
                cout = _make_divisible(c * width, 4)
                blocks.append(GhostBottleneck(cin, _make_divisible(exp * width, 4), cout, k, s, se))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        last = _make_divisible(CFGS[-1][-1][1] * width, 4)
        stages.append(nn.Sequential(ConvBnAct(cin, last, 1)))
        self.blocks = nn.Sequential(*stages)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv_head = nn.Conv2d(last, 1280, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.act1(self.bn1(self.conv_stem(x))))
        x = self.act2(self.conv_head(self.global_pool(x)))
        x = x.flatten(1)
        if self.dropout > 0.0:
            x = F.dropout(x, p=self.dropout, training=self.training)
        return self.classifier(x)


class ConvBnAct(nn.Module):
    """conv - bn1 - act1 (ReLU): the reference's last 1x1 conv block."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, 1, kernel // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.act1 = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act1(self.bn1(self.conv(x)))


def ghostnet(num_classes: int = 1000, width: float = 1.0, **kw) -> GhostNet:
    return GhostNet(num_classes, width, **kw)
