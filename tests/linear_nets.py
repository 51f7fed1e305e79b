"""Small models of linear layers for the int8 linear tests (unit, artifact)."""
import torch
from torch import nn


class MLP(nn.Module):
    """flatten -> fc1 -> ReLU -> fc2 (4x4 blocks pruned) -> GELU -> fc3 (the classifier)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(64, 96), nn.Linear(96, 48), nn.Linear(48, 10)
        with torch.no_grad():
            self.fc2.weight[8:24, 16:48] = 0

    def forward(self, x):
        x = torch.relu(self.fc1(x.flatten(1)))
        return self.fc3(nn.functional.gelu(self.fc2(x)))


class Block(nn.Module):
    """A transformer FFN over (batch, tokens, features): layer norm -> up -> ReLU6 -> down ->
    + the residual stream -> head."""

    def __init__(self, d=32):
        super().__init__()
        self.ln, self.up, self.down = nn.LayerNorm(d), nn.Linear(d, 4 * d), nn.Linear(4 * d, d)
        self.head = nn.Linear(d, 5)

    def forward(self, x):
        x = x + self.down(nn.functional.relu6(self.up(self.ln(x))))
        return self.head(x)


class Branchy(nn.Module):
    """Data-dependent control flow (torch.fx cannot trace it) around linear layers."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(24, 40), nn.Linear(40, 40), nn.Linear(40, 6)

    def forward(self, x):
        h = torch.relu(self.a(x))
        if float(h.mean()) > -1.0:          # always taken; a Proxy cannot be converted
            h = h + self.b(h)
        return self.c(h)
