"""engine.quant against independent references: torch's fake_quantize_* (forward values and
straight-through gradients) and torch.ao's MinMax observers (scale / zero point), plus the
behaviour each observer promises (what clips, what it minimises) measured on the raw data."""
import pytest
import torch

from engine.errors import ConfigError
from engine.quant import (ACT_U8, WEIGHT_S8, choose_qparams, dequantize, fake_quant, observer,
                          quantize, weight_qparams)
from torch.ao.quantization import MinMaxObserver as TorchMinMax
from torch.ao.quantization import PerChannelMinMaxObserver as TorchPerChannel


def _act_qp(lo, hi):
    return choose_qparams(torch.tensor(lo), torch.tensor(hi), ACT_U8)


@pytest.mark.parametrize("lo,hi", [(-1.3, 2.7), (0.0, 6.0), (-0.01, 0.02), (-5.0, -1.0)])
def test_fake_quant_matches_torch_forward_and_straight_through_grad(lo, hi):
    qp = _act_qp(lo, hi)
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 8, 9, 9, generator=g) * max(abs(lo), abs(hi)) * 1.5).requires_grad_()
    ours = fake_quant(x, qp)
    ref_x = x.detach().clone().requires_grad_()
    ref = torch.fake_quantize_per_tensor_affine(ref_x, float(qp.scale), int(qp.zero_point), 0, 255)
    assert torch.equal(ours, ref)
    up = torch.randn(ours.shape, generator=g)
    ours.backward(up)
    ref.backward(up)
    assert torch.equal(x.grad, ref_x.grad)
    assert 0 < int((x.grad == 0).sum()) < x.numel()        # some clipped, some passed


def test_per_channel_weights_match_torch():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(16, 8, 3, 3, generator=g) * torch.linspace(0.01, 3, 16).reshape(16, 1, 1, 1)
    qp = weight_qparams(w)
    assert qp.per_channel and qp.axis == 0 and torch.all(qp.zero_point == 0)
    ref_obs = TorchPerChannel(ch_axis=0, dtype=torch.qint8, qscheme=torch.per_channel_symmetric,
                              quant_min=-127, quant_max=127)
    ref_obs(w)
    ref_scale, ref_zp = ref_obs.calculate_qparams()
    torch.testing.assert_close(qp.scale, ref_scale.float(), rtol=1e-6, atol=0)
    assert torch.all(ref_zp == 0)
    wg = w.clone().requires_grad_()
    ours = fake_quant(wg, qp)
    ref = torch.fake_quantize_per_channel_affine(w, qp.scale, qp.zero_point.to(torch.int32), 0,
                                                 -127, 127)
    assert torch.equal(ours, ref)
    q = quantize(w, qp)
    assert int(q.min()) >= -127 and int(q.max()) <= 127
    assert torch.equal(dequantize(q, qp), ours.detach())
    # symmetric per channel: each channel's largest |w| lands on +-127 (nothing clips)
    assert torch.equal(q.abs().reshape(16, -1).max(1).values, torch.full((16,), 127))


def test_minmax_observer_over_batches_matches_torch_ao():
    g = torch.Generator().manual_seed(2)
    batches = [torch.randn(2, 4, 5, 5, generator=g) * s + m for s, m in [(1, 0), (3, 1), (0.5, -2)]]
    obs, ref = observer("minmax"), TorchMinMax(dtype=torch.quint8, qscheme=torch.per_tensor_affine)
    for b in batches:
        obs.update(b)
        ref(b)
    allx = torch.cat([b.reshape(-1) for b in batches])
    assert obs.range() == (float(allx.min()), float(allx.max()))
    qp = obs.qparams()
    ref_scale, ref_zp = ref.calculate_qparams()
    torch.testing.assert_close(qp.scale, ref_scale.reshape(()).float(), rtol=1e-6, atol=0)
    assert int(qp.zero_point) == int(ref_zp)


def test_zero_is_exact_and_ranges_hold_zero():
    for lo, hi in [(0.3, 5.0), (-4.0, -0.2), (-1.0, 1.0)]:
        qp = _act_qp(lo, hi)
        z = torch.zeros(3)
        assert torch.equal(fake_quant(z, qp), z)
        x = torch.tensor([lo, hi])
        assert torch.all((fake_quant(x, qp) - x).abs() <= float(qp.scale) / 2 + 1e-6)
    qp = _act_qp(0.0, 0.0)                    # a constant-zero tensor: no division by zero
    assert float(qp.scale) == 1.0 and torch.equal(fake_quant(torch.zeros(4), qp), torch.zeros(4))
    sym = choose_qparams(torch.tensor(-2.0), torch.tensor(0.5), WEIGHT_S8)
    assert int(sym.zero_point) == 0 and abs(float(sym.scale) * 127 - 2.0) < 1e-6


def _heavy_tailed(seed=3, n=200_000):
    g = torch.Generator().manual_seed(seed)
    x = torch.distributions.Laplace(0.0, 1.0).sample((n,))
    x[torch.randint(0, n, (20,), generator=g)] = 60.0     # a few large outliers
    return torch.relu(x)


def _qmse(x, qp):
    return float(((fake_quant(x, qp) - x) ** 2).mean())


def test_percentile_clips_outliers_and_100_is_minmax():
    x = _heavy_tailed()
    p = observer("percentile", percentile=99.9)
    p.update(x)
    lo, hi = p.range()
    assert lo == 0.0 and hi < 20.0 and hi > float(torch.quantile(x[:100_000], 0.99))
    full = observer("percentile", percentile=100.0)
    full.update(x)
    assert abs(full.range()[1] - float(x.max())) <= float(x.max()) / 2048 + 1e-9


@pytest.mark.parametrize("dist", ["laplace", "student_t3"])
def test_mse_observer_loses_least_on_heavy_tails_and_keeps_uniform_ranges(dist):
    torch.manual_seed(6)
    x = (torch.distributions.Laplace(0.0, 1.0) if dist == "laplace"
         else torch.distributions.StudentT(3.0)).sample((200_000,))
    errs = {}
    for kind in ("minmax", "percentile", "mse"):
        o = observer(kind)
        for chunk in x.split(50_000):                     # several batches: re-binning
            o.update(chunk)
        errs[kind] = _qmse(x, o.qparams())                # on the raw data, not the histogram
    assert errs["mse"] < 0.9 * errs["minmax"] and errs["mse"] < 0.9 * errs["percentile"], errs
    u = torch.rand(100_000, generator=torch.Generator().manual_seed(4)) * 4 - 1
    o = observer("mse")
    o.update(u)
    lo, hi = o.range()
    assert lo < -0.9 and hi > 2.8                           # nothing worth clipping


def test_histogram_rebinning_keeps_every_count():
    g = torch.Generator().manual_seed(5)
    o = observer("percentile")
    a, b = torch.randn(10_000, generator=g), torch.randn(10_000, generator=g) * 4
    o.update(a)
    o.update(b)
    assert float(o.hist.sum()) == 20_000
    one = observer("percentile")
    one.update(torch.cat([a, b]))
    bin_w = (one.hi - one.lo) / one.bins
    assert abs(o.range()[1] - one.range()[1]) <= 8 * bin_w


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="no data observed"):
        observer("mse").qparams()
    with pytest.raises(ConfigError, match="inf or nan"):
        observer("minmax").update(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ConfigError, match="unknown observer 'kl'"):
        observer("kl")
    with pytest.raises(ConfigError, match="percentile must be"):
        observer("percentile", percentile=30)
    with pytest.raises(ConfigError, match="inf or nan"):
        weight_qparams(torch.tensor([[1.0, float("inf")]]))
