"""A conv / linear module called more than once (weight sharing) lowers per call site: each call
fuses its own BN / activation / residual, and the optimized model matches the masked reference
in the host runtime and in the compiled module."""
import pytest
import torch
from torch import nn

import engine


class SharedConv(nn.Module):
    """c(relu(c(x))): the first call is followed by a ReLU, the second is not."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        y = self.c(torch.relu(self.c(x)))
        return self.fc(y.mean((2, 3)))


class SharedConvBN(nn.Module):
    """bn(c(x)) then relu(c(...) + x): one call has a BN to fold, the other a residual + ReLU."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(16, 16, 1)
        self.bn = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, 4)

    def forward(self, x):
        y = self.bn(self.c(x))
        y = torch.relu(self.c(y) + x)
        return self.fc(y.mean((2, 3)))


class SharedLinear(nn.Module):
    """fc(relu(fc(x))) on a square linear layer."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(32, 32)
        self.out = nn.Linear(32, 4)

    def forward(self, x):
        return self.out(self.fc(torch.relu(self.fc(x))))


def _randomized(m: nn.Module) -> nn.Module:
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):   # non-trivial statistics: folding must matter
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.5, 0.5)
    return m.eval()


CASES = [(SharedConv, (1, 16, 12, 12)), (SharedConvBN, (2, 16, 9, 7)), (SharedLinear, (3, 32))]


@pytest.mark.parametrize("cls,shape", CASES, ids=[c.__name__ for c, _ in CASES])
@pytest.mark.parametrize("backends", ["native", "tir"])
def test_shared_module_matches_reference(cls, shape, backends):
    model = _randomized(cls())
    x = torch.randn(shape)
    opt = engine.optimize(model, (x,), sparsity=0.5, measure=False, backends="native")
    if backends == "tir":        # replay the plan with every pruned layer on a generated kernel
        pytest.importorskip("tvm")
        plan = opt.plan
        for c in plan:
            if c.pruned:
                c.backend = "tir"
        opt = engine.optimize(model, (x,), plan=plan, measure=False, backends=("native", "tir"))
        assert all(c.kernel.startswith("tir_") for c in opt.plan if c.pruned)
    with torch.no_grad():
        ref = opt.pruned_model(x)
        assert torch.allclose(opt(x), ref, rtol=1e-4, atol=1e-5)
        # a second input: the check is not specific to the example input
        x2 = torch.randn(shape)
        assert torch.allclose(opt(x2), opt.pruned_model(x2), rtol=1e-4, atol=1e-5)
    assert any(c.pruned for c in opt.plan), "the shared layer should have been pruned"
    from engine.lowering import lower
    shared = next(n for n, _ in model.named_modules() if n in ("c", "fc"))
    assert lower(opt.pruned_model, {}).call_sites == {shared: 2}


def test_shared_module_measured():
    """With measurement, the shared layer is timed at its first call site and still verifies."""
    model = _randomized(SharedConv())
    x = torch.randn(1, 16, 12, 12)
    opt = engine.optimize(model, (x,), sparsity=0.5, backends="native")
    with torch.no_grad():
        assert torch.allclose(opt(x), opt.pruned_model(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cls,shape", CASES, ids=[c.__name__ for c, _ in CASES])
def test_shared_module_compiled(cls, shape):
    pytest.importorskip("tvm")
    model = _randomized(cls())
    x = torch.randn(shape)
    opt = engine.optimize(model, (x,), sparsity=0.5, measure=False, backends="native")
    cm = opt.compile()
    with torch.no_grad():
        ref = opt.pruned_model(x)
    got = torch.as_tensor(cm(x))
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)
