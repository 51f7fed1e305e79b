"""A small U-Net (down convs with BN + ReLU, max pool, ConvTranspose2d 2x2 stride-2 up-sampling,
skip concats, 1x1 head) as segmentation models write it; weights He-scaled and BN statistics
of unit order so nothing vanishes."""
import torch
from torch import nn

from engine.zoo.init import he_init


def _block(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                         nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, cin: int = 3, classes: int = 2, widths=(64, 128, 256), up_kernel: int = 2):
        super().__init__()
        self.downs = nn.ModuleList()
        c = cin
        for w in widths:
            self.downs.append(_block(c, w))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.ups, self.dec = nn.ModuleList(), nn.ModuleList()
        pad = (up_kernel - 2) // 2
        for w in reversed(widths[:-1]):
            self.ups.append(nn.ConvTranspose2d(c, w, up_kernel, stride=2, padding=pad))
            self.dec.append(_block(2 * w, w))
            c = w
        self.head = nn.Conv2d(c, classes, 1)
        he_init(self)

    def forward(self, x):
        skips = []
        for i, down in enumerate(self.downs):
            x = down(x)
            if i < len(self.downs) - 1:
                skips.append(x)
                x = self.pool(x)
        for up, dec in zip(self.ups, self.dec):
            x = dec(torch.cat([up(x), skips.pop()], 1))
        return self.head(x)
