"""engine.quant.calibrate against the model itself: the ranges it records are those forward
hooks see on the same batches, BN folding reproduces conv -> BN, and the user's model is left
exactly as it was (weights, BatchNorm statistics, training flag)."""
import pytest
import torch
from torch import nn

from engine.errors import CaptureError, ConfigError
from engine.quant import ACT_U8, calibrate, choose_qparams


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.ReLU6()
        self.c2 = nn.Conv2d(8, 8, 1)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = self.act1(self.bn1(self.c1(x)))
        y = torch.relu(self.bn2(self.c2(y)) + y)          # residual add before the ReLU
        return self.fc(y.mean((2, 3)))


def _model():
    torch.manual_seed(0)
    m = Block()
    for bn in (m.bn1, m.bn2):                              # non-trivial statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-0.2, 0.2)
    return m


def _batches(n=4):
    g = torch.Generator().manual_seed(1)
    return [torch.randn(2, 3, 12, 12, generator=g) for _ in range(n)]


def _hook_ranges(model, batches, names):
    seen = {n: [float("inf"), float("-inf")] for n in names}
    mods = dict(model.named_modules())
    hs = []
    for n in names:
        def hook(_m, _i, out, n=n):
            seen[n][0] = min(seen[n][0], float(out.min()))
            seen[n][1] = max(seen[n][1], float(out.max()))
        hs.append(mods[n].register_forward_hook(hook))
    model.eval()
    with torch.no_grad():
        for b in batches:
            model(b)
    for h in hs:
        h.remove()
    return seen


def test_ranges_are_what_the_model_computes():
    model, batches = _model(), _batches()
    cal = calibrate(model, batches, observer="minmax")
    ref = _hook_ranges(_model(), batches, ["act1", "fc", "c2"])
    c1 = cal.layer("c1")
    assert c1.bn == "bn1" and c1.act == "relu6"                 # conv -> BN -> ReLU6 chain
    want = choose_qparams(torch.tensor(ref["act1"][0]), torch.tensor(ref["act1"][1]), ACT_U8)
    assert torch.equal(c1.output.scale, want.scale) and torch.equal(c1.output.zero_point,
                                                                    want.zero_point)
    assert cal.layer("c2").input is c1.output                   # the same tensor
    # c2's BN feeds the residual add: folded, no activation fused (the add comes first)
    c2 = cal.layer("c2")
    assert c2.bn == "bn2" and c2.act is None
    fc = cal.layer("fc")
    want = choose_qparams(torch.tensor(ref["fc"][0]), torch.tensor(ref["fc"][1]), ACT_U8)
    assert torch.equal(fc.output.scale, want.scale)
    assert cal.batches == 4 and set(cal.layers) == {"c1", "c2", "fc"}


def test_folded_weights_reproduce_conv_then_bn_and_set_the_weight_scale():
    model = _model().eval()
    cal = calibrate(model, _batches(1))
    x = torch.randn(1, 3, 9, 9)
    for conv, bn in (("c1", "bn1"), ("c2", "bn2")):
        q = cal.layer(conv)
        mods = dict(model.named_modules())
        inp = x if conv == "c1" else torch.randn(1, 8, 9, 9)
        ref = mods[bn](mods[conv](inp))
        got = nn.functional.conv2d(inp, q.weight, q.bias, mods[conv].stride, mods[conv].padding)
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
        amax = q.weight.abs().reshape(q.weight.shape[0], -1).max(1).values
        torch.testing.assert_close(q.weight_qparams.scale, (amax / 127).float(), rtol=1e-6, atol=0)


@pytest.mark.parametrize("training", [True, False])
def test_the_users_model_is_not_touched(training):
    model = _model()
    model.train(training)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    calibrate(model, _batches(3), observer="mse")
    assert model.training == training and all(m.training == training for m in model.modules())
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)   # BN running stats included


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="no calibration batches"):
        calibrate(_model(), [])
    with pytest.raises(ConfigError, match="unknown observer"):
        calibrate(_model(), _batches(1), observer="kl")
    cal = calibrate(_model(), _batches(1))
    with pytest.raises(ConfigError, match="no conv / linear layer 'bn1'.*c1"):
        cal.layer("bn1")

    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.sum() > 0 else x            # data-dependent control flow
    with pytest.raises(CaptureError, match="symbolic_trace failed on Branchy"):
        calibrate(Branchy(), _batches(1))


def test_a_batch_the_model_cannot_take_is_named():
    with pytest.raises(ConfigError, match=r"batch 1 \(inputs \[\(2, 5, 12, 12\)\]\) failed in Block"):
        calibrate(_model(), [torch.randn(2, 3, 12, 12), torch.randn(2, 5, 12, 12)])
