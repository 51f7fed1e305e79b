"""engine.accuracy: held-out accuracy after BN recalibration, on scikit-learn's bundled digits."""
import pytest
import torch
from torch import nn

from engine.accuracy import DataProxy, accuracy, recalibrate_bn
from engine.errors import ConfigError
from mapping import DENSE, Candidate

sklearn = pytest.importorskip("sklearn.datasets")


def _digits():
    d = sklearn.load_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    return x[perm], y[perm]


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    x, y = _digits()
    xtr, ytr, xte, yte = x[:1200], y[:1200], x[1200:], y[1200:]
    net = _Net()
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(15):
        for i in range(0, 1200, 100):
            opt.zero_grad()
            nn.functional.cross_entropy(net(xtr[i:i + 100]), ytr[i:i + 100]).backward()
            opt.step()
    return net.eval(), (xte, yte)


def test_dense_assignment_scores_the_model_itself(trained):
    net, (x, y) = trained
    proxy = DataProxy(net, (x, y))
    half = x.shape[0] // 2
    base = accuracy(net, [(x[half:], y[half:])])
    assert base > 0.9
    # recalibrating BN on held-in data of the same distribution barely moves a dense model
    assert abs(proxy.score({"conv2": DENSE}) - base) < 0.05


def test_heavier_pruning_scores_lower_and_is_cached(trained):
    net, data = trained
    proxy = DataProxy(net, data)
    light = {"conv2": Candidate("block", (1, 1), 0.5)}
    heavy = {"conv2": Candidate("block", (1, 1), 0.99), "conv1": Candidate("block", (1, 1), 0.9)}
    a, b = proxy.score(light), proxy.score(heavy)
    assert a > b
    assert proxy.score(dict(light)) == a and proxy.evaluations == 2


def test_the_users_model_is_untouched(trained):
    net, data = trained
    before = {k: v.clone() for k, v in net.state_dict().items()}
    DataProxy(net, data).score({"conv2": Candidate("block", (4, 1), 0.9)})
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_recalibration_restores_shifted_statistics():
    torch.manual_seed(1)
    bn = nn.Sequential(nn.BatchNorm2d(3))
    x = torch.randn(64, 3, 4, 4) * 3 + 5
    assert recalibrate_bn(bn, [x[:32], x[32:]]) == 2
    assert torch.allclose(bn[0].running_mean, x.mean((0, 2, 3)), atol=1e-4)
    assert bn[0].momentum == 0.1 and not bn.training


def test_callable_metric_and_bad_data(trained):
    net, _ = trained
    proxy = DataProxy(net, lambda m: float(m.fc.weight.abs().sum()))
    dense = proxy.score({})
    assert proxy.score({"fc": Candidate("block", (1, 1), 0.5)}) < dense
    with pytest.raises(ConfigError, match="data must be"):
        DataProxy(net, 3)
    with pytest.raises(ConfigError, match="same number"):
        DataProxy(net, (torch.zeros(4, 1, 8, 8), torch.zeros(3)))
