"""Calling an optimized model with an input that does not fit it is an InputError naming the
layer and both shapes; an empty batch gives an empty output, as the torch model does."""
import pytest
import torch
from torch import nn

import engine
from engine.errors import InputError


class Net(nn.Module):
    """A grouped conv, a depthwise conv and two linear layers: every native module kind."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(8, 16, 3, padding=1, groups=2)
        self.d = nn.Conv2d(16, 16, 3, groups=16, padding=1)
        self.p = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 32)
        self.out = nn.Linear(32, 4)

    def forward(self, x):
        y = self.p(self.d(self.c(x)))
        return self.out(torch.relu(self.fc(y.mean((2, 3)))))


@pytest.fixture(scope="module")
def opt():
    torch.manual_seed(0)
    return engine.optimize(Net().eval(), (torch.randn(2, 8, 6, 6),), sparsity=0.5, measure=False)


@pytest.mark.parametrize("shape,pattern", [
    ((1, 7, 6, 6), r"layer 'c': input must be \(N, 8, H, W\), got shape \(1, 7, 6, 6\)"),
    ((8, 6, 6), r"layer 'c': input must be \(N, 8, H, W\), got shape \(8, 6, 6\)"),
])
def test_wrong_input_names_the_layer(opt, shape, pattern):
    with pytest.raises(InputError, match=pattern):
        opt(torch.randn(shape))


@pytest.mark.parametrize("shape", [(0, 8, 6, 6), (1, 8, 1, 1), (3, 8, 9, 5)])
def test_other_batches_and_sizes_match_torch(opt, shape):
    x = torch.randn(shape)
    with torch.no_grad():
        ref = opt.pruned_model(x)
    got = opt(x)
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_linear_layer_wrong_features():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 8)).eval()
    opt = engine.optimize(mlp, (torch.randn(4, 32),), sparsity=0.5, measure=False)
    assert any(c.pruned for c in opt.plan)
    with pytest.raises(InputError, match=r"layer '0': input must be \(\.\.\., 32\), got shape \(4, 31\)"):
        opt(torch.randn(4, 31))
    assert opt(torch.randn(0, 32)).shape == (0, 8)
