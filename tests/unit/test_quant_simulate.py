"""engine.quant.simulate against a hand-written QDQ reference of one layer, and the whole
model's simulated output against fp32: close with a calibration that covers the data, far with
one that does not (the simulation really quantizes)."""
import torch
import torch.nn.functional as F

from engine.quant import calibrate, fake_quant, simulate, weight_qparams
from test_quant_calibrate import Block, _batches, _model


def test_one_layer_is_the_hand_written_qdq():
    model = _model().eval()
    batches = _batches()
    cal = calibrate(model, batches, observer="minmax")
    sim = simulate(model, cal)
    x = batches[0]
    q = cal.layer("c1")
    ref = fake_quant(F.relu6(F.conv2d(fake_quant(x, q.input),
                                      fake_quant(q.weight, q.weight_qparams), q.bias, 1, 1)),
                     q.output)
    got = sim.c1_int8(x)
    assert torch.equal(got, ref)
    # the BN and activation nodes of the chain are gone; the residual add stays in fp32
    names = {n.target for n in sim.graph.nodes if n.op == "call_module"}
    assert names == {"c1_int8", "c2_int8", "fc_int8"}


def test_whole_model_close_to_fp32_and_far_when_calibration_misses():
    model = _model().eval()
    batches = _batches(6)
    with torch.no_grad():
        ref = torch.cat([model(b) for b in batches])
    sim = simulate(model, calibrate(model, batches))            # the default observer
    with torch.no_grad():
        got = torch.cat([sim(b) for b in batches])
    rel = float((got - ref).norm() / ref.norm())
    assert rel < 0.03, rel
    tiny = [b * 0.05 for b in batches]                          # a range 20x too small: clips
    bad = simulate(model, calibrate(model, tiny, observer="minmax"))
    with torch.no_grad():
        worse = torch.cat([bad(b) for b in batches])
    assert float((worse - ref).norm() / ref.norm()) > 5 * rel


def test_the_users_model_is_not_touched():
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    simulate(model, calibrate(model, _batches(2)))
    assert isinstance(model, Block) and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_qat_trains_through_fake_quant_and_keeps_the_pruning_mask():
    torch.manual_seed(7)
    model = _model().eval()
    with torch.no_grad():                                       # a pruned layer: 60% zeros
        model.c2.weight[torch.rand(model.c2.weight.shape) < 0.6] = 0.0
    batches = _batches(4)
    qat = simulate(model, calibrate(model, batches), trainable=True)
    assert qat.training and qat.c2_int8.weight.requires_grad
    pruned = qat.c2_int8.mask == 0
    assert 0.5 < float(pruned.float().mean()) < 0.7
    with torch.no_grad():
        target = [model(x) for x in batches]                     # the fp32 model's outputs
        for p in qat.parameters():                               # a perturbed start to recover
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())) * 0.1)
    opt = torch.optim.SGD(qat.parameters(), lr=0.05)
    losses = []
    for _ in range(30):
        total = 0.0
        for x, t in zip(batches, target):
            loss = F.mse_loss(qat(x), t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss)
        losses.append(total)
    assert losses[-1] < 0.5 * losses[0], losses                # it learns through the STE
    assert qat.c2_int8.weight.grad is not None
    w = qat.c2_int8.quantized_weight().detach()
    assert torch.all(w[pruned] == 0)                             # the mask holds exactly
    steps = w / weight_qparams(w).scale.reshape(-1, 1, 1, 1)     # on the int8 grid per channel
    assert torch.allclose(steps, steps.round(), atol=1e-3)


def test_a_layer_the_int8_path_cannot_pad_is_named():
    import pytest
    from torch import nn
    from engine.errors import CaptureError
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), nn.ReLU())
    cal = calibrate(model, [torch.randn(1, 3, 8, 8)])
    with pytest.raises(CaptureError, match="layer '0' pads with 'reflect'"):
        simulate(model, cal)


def test_a_calibration_of_another_model_is_refused():
    import pytest
    from engine.errors import ConfigError
    model, other = _model(), _model()
    with torch.no_grad():
        other.c2.weight.mul_(2)                                  # same names, other weights
    cal = calibrate(other, _batches(1))
    with pytest.raises(ConfigError, match="calibration of layer 'c2'.*does not match"):
        simulate(model, cal)
    from torch import nn
    with pytest.raises(ConfigError, match="layers this model does not call: c1, c2, fc"):
        simulate(nn.Sequential(nn.Conv2d(3, 8, 3)), cal)
