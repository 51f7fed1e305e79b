"""engine.train.train_qat: quantization-aware training on real data (scikit-learn's digits)
that keeps the pruning masks exactly, exports a model whose structure calibrate / lower_int8
fuse as before, and whose simulation is the trained one."""
import copy

import torch
from torch import nn

from engine.bench.recovery import DigitsNet, digits
from engine.quant import calibrate, lower_int8, simulate
from engine.train import TrainConfig, train_qat


def _acc(m, val):
    with torch.no_grad():
        return sum(int((m(x).argmax(1) == y).sum()) for x, y in val) / sum(len(y) for _, y in val)


def test_qat_keeps_masks_exports_the_trained_model_and_runs_int8():
    torch.manual_seed(0)
    train, val = digits()
    net = DigitsNet(width=8)
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    for _ in range(3):
        for x, y in train:
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    net.eval()
    with torch.no_grad():                          # 75% of conv3 pruned in (4, 4) blocks
        w = net.conv3.weight
        keep = torch.rand(w.shape[0] // 4, w.shape[1] // 4) > 0.75
        mask = keep.repeat_interleave(4, 0).repeat_interleave(4, 1)[:, :, None, None].expand_as(w)
        w.mul_(mask)
    before = copy.deepcopy(net.state_dict())
    cal = calibrate(net, [x for x, _ in train[:8]])
    a_ptq = _acc(lower_int8(net, cal), val)       # pruned without retraining, int8: hurt
    qat = train_qat(net, cal, train, nn.functional.cross_entropy,
                    TrainConfig(epochs=2, lr=5e-4, lr_schedule="cosine"))
    # the user's model is untouched; the pruned weights are still exactly zero, the others moved
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    w2, folded = qat.conv3.weight, cal.layer("conv3").weight
    assert bool((w2[~mask] == 0).all()) and not torch.equal(w2[mask], folded[mask])
    # BN is the exact identity plus the trained bias: calibrating the export folds back to
    # exactly the trained weights
    assert qat.bn3.eps == 0.0 and bool((qat.bn3.running_var == 1).all())
    assert torch.equal(calibrate(qat, [t for t, _ in train[:2]]).layer("conv3").weight, w2)
    # it runs on the int8 kernels as accurately as its simulation (to a few samples), and the
    # training recovered much of what pruning + int8 lost
    cal2 = calibrate(qat, [t for t, _ in train[:8]])
    qm = lower_int8(qat, cal2)
    assert qm.int8_report["conv3"] == "int8"
    a_int8, a_sim = _acc(qm, val), _acc(simulate(qat, cal2), val)
    assert abs(a_int8 - a_sim) < 0.02, (a_int8, a_sim)
    assert a_int8 > a_ptq + 0.1, (a_int8, a_ptq)
