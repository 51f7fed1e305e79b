"""QNet: a small CNN with every piece the int8 path handles: a stem conv + BN + ReLU, a max
pool, a bottleneck whose residual add follows its last conv's BN, a depthwise conv + BN +
ReLU6, global average pooling and a linear classifier."""
import torch
from torch import nn


class QNet(nn.Module):
    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.stem = nn.Conv2d(3, w, 3, padding=1, bias=False)
        self.bn0 = nn.BatchNorm2d(w)
        self.pool = nn.MaxPool2d(2)
        self.conv1 = nn.Conv2d(w, 2 * w, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(2 * w)
        self.conv2 = nn.Conv2d(2 * w, 2 * w, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(2 * w)
        self.conv3 = nn.Conv2d(2 * w, w, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(w)
        self.dw = nn.Conv2d(w, w, 3, padding=1, groups=w, bias=False)
        self.bn4 = nn.BatchNorm2d(w)
        self.fc = nn.Linear(w, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn0(self.stem(x))))
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        x = torch.relu(self.bn3(self.conv3(y)) + x)
        x = torch.nn.functional.relu6(self.bn4(self.dw(x)))
        return self.fc(x.mean((2, 3)))


def qnet(seed: int = 0, width: int = 32) -> QNet:
    """A QNet with non-trivial BN statistics (so folding matters), in eval mode."""
    torch.manual_seed(seed)
    m = QNet(width)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 1.5)
            bn.weight.data.uniform_(0.5, 1.5)
            bn.bias.data.uniform_(-0.1, 0.1)
    return m.eval()
