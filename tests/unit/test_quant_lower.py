"""engine.quant.lower_int8: a calibrated model on the int8 kernels, end to end, against fp32 and
against the simulation; what it fuses, what it keeps fp32 and why; what it refuses."""
import pytest
import torch
from torch import nn

from engine.errors import ConfigError
from engine.quant import calibrate, lower_int8, simulate
from engine.runtime.qmodules import Dequantize, QConv2d, QDepthwiseConv2d, QMaxPool2d, Quantize


class Net(nn.Module):
    """stem conv -> BN -> ReLU -> max pool -> residual block (conv-BN-ReLU, conv-BN, + identity,
    ReLU) -> a depthwise conv -> pool -> classifier (fp32)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, 16, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.pool(torch.relu(self.bn1(self.conv1(x))))
        y = torch.relu(self.bn2(self.c2(x)))
        x = torch.relu(self.bn3(self.c3(y)) + x)
        x = torch.relu(self.dw(x))
        return self.fc(x.mean((2, 3)))


def _model():
    torch.manual_seed(0)
    m = Net().eval()
    for bn in (m.bn1, m.bn2, m.bn3):
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 2.0)
    with torch.no_grad():                      # 60% of c2's weights pruned in (4, 4) blocks
        m.c2.weight[:8, :8] = 0
    return m


def _batches(n=4):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(2, 3, 32, 32, generator=g) for _ in range(n)]


def test_lowered_model_matches_fp32_and_the_simulation():
    model = _model()
    batches = _batches()
    cal = calibrate(model, batches)
    qm = lower_int8(model, cal)
    rep = qm.int8_report
    assert rep["conv1"] == "int8" and rep["c2"] == "int8"
    assert rep["c3"] == "int8 (residual add fused)"
    assert rep["dw"] == "int8" and rep["fc"] == "fp32: kept fp32 (fp32_layers: the classifier by default)"
    kinds = [type(m) for m in qm.modules()]
    assert kinds.count(QConv2d) == 3 and kinds.count(QDepthwiseConv2d) == 1 and QMaxPool2d in kinds
    assert kinds.count(Quantize) == 1 and kinds.count(Dequantize) == 1   # in once, out once
    x = torch.cat(batches)
    with torch.no_grad():
        ref, sim, got = model(x), simulate(model, cal)(x), qm(x)
    err = float((got - ref).norm() / ref.norm())
    assert err < 0.03, err
    assert float((got - sim).norm() / sim.norm()) < 0.03
    # the residual really is added: without it the output is far off
    with torch.no_grad():
        no_res = qm.get_submodule("c3_int8")
        fwd = no_res.forward
        no_res.forward = lambda a, r=None: fwd(a)
        broken = qm(x)
    assert float((broken - ref).norm() / ref.norm()) > 5 * err


def test_user_model_untouched_and_bad_input_refused():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cal = calibrate(model, _batches(2))
    qm = lower_int8(model, cal, fp32_layers=["fc", "c2"])
    # the report says why: asked for, not "the classifier by default"
    assert qm.int8_report["c2"] == qm.int8_report["fc"] == "fp32: kept fp32 (fp32_layers)"
    assert lower_int8(model, cal, fp32_layers=["c2"], fp32_reason="kept fp32 (the plan's choice)") \
        .int8_report["c2"] == "fp32: kept fp32 (the plan's choice)"
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ConfigError, match="fp32_layers names no layer"):
        lower_int8(model, cal, fp32_layers=["nope"])
    other = _model()
    with torch.no_grad():
        other.c2.weight.mul_(2)
    with pytest.raises(ConfigError, match="does not match"):
        lower_int8(other, cal)
    with pytest.raises(ConfigError, match="not finite"):
        x = _batches(1)[0]
        x[0, 0, 0, 0] = float("nan")
        qm(x)


class Odd(nn.Module):
    """A "same"-padded conv (stays fp32, said why) and a conv chain followed by a broadcast add
    of a bias tensor (not a residual: the add stays a float add)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding="same")
        self.b = nn.Conv2d(8, 8, 1)
        self.bn = nn.BatchNorm2d(8)
        self.offset = nn.Parameter(torch.randn(1, 8, 1, 1))
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.a(x))
        x = self.bn(self.b(x)) + self.offset
        return self.fc(x.mean((2, 3)))


def test_same_padding_and_broadcast_adds_stay_fp32():
    torch.manual_seed(0)
    model = Odd().eval()
    batches = _batches(2)
    cal = calibrate(model, batches)
    qm = lower_int8(model, cal)
    assert qm.int8_report["a"].startswith("fp32: padding 'same'")
    assert qm.int8_report["b"] == "int8"                 # int8, but the add is not fused
    x = torch.cat(batches)
    with torch.no_grad():
        ref, got = model(x), qm(x)
    assert float((got - ref).norm() / ref.norm()) < 0.05


def test_eager_calls_run_the_kernels_without_the_custom_ops(monkeypatch):
    """In eager mode the int8 modules call their kernels directly, as the fp32 native modules
    do (the custom op's dispatch is for torch.export only): the in-place measurement then
    charges int8 and fp32 layers the same per-call overhead."""
    from engine.runtime import ops
    model = _model()
    cal = calibrate(model, _batches(2))
    qm = lower_int8(model, cal)
    x = _batches(1)[0]
    with torch.no_grad():
        want = qm(x)

    def boom(*a, **k):
        raise AssertionError("an eager call went through the custom op")
    for name in ("spe_qconv2d", "spe_qdepthwise2d", "spe_quantize", "spe_dequantize",
                 "spe_max_pool2d_u8"):
        monkeypatch.setattr(ops, name, boom)
    with torch.no_grad():
        got = qm(x)
    assert torch.equal(got, want)
