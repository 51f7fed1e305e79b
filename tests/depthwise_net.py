"""DwNet: the small depthwise / grouped conv model the codegen and runtime depthwise tests share."""
import torch
import torch.nn.functional as F
from torch import nn


class DwNet(nn.Module):
    """Depthwise convs in the three fused forms (BN + ReLU6; bias + residual add + ReLU; plain
    with dilation and asymmetric stride), a grouped non-depthwise conv and a channel-multiplier
    conv (groups = in, out = 2 in), which must keep the SpMM pack."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.dw1 = nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.dw2 = nn.Conv2d(16, 16, 5, padding=2, groups=16, bias=True)
        self.dw3 = nn.Conv2d(16, 16, 3, stride=(1, 2), padding=2, dilation=2, groups=16)
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=4)
        self.multiplier = nn.Conv2d(16, 32, 3, padding=1, groups=16)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu6(self.bn1(self.dw1(x)))
        x = torch.relu(self.dw2(x) + x)
        x = self.dw3(x)
        x = self.grouped(x)
        return self.multiplier(x)
