"""int8 linear layers (engine.runtime.qmodules.QLinear, lowered by engine.quant.lower_int8): float
in and out, rows as the pixels of the 1x1 int8 kernel. References: the simulation (torch's
F.linear on fake-quantized weights and inputs, engine.quant.simulate), layer by layer on the same
input and end to end; the fp32 model; and an integer reference computed here from the int8
weight and the input codes."""
from dataclasses import replace

import numpy as np
import pytest
import torch

import engine
from engine.errors import ConfigError
from engine.quant import calibrate, lower_int8, simulate
from engine.quant.check import layer_diffs
from engine.runtime.qconv import QuantConv
from engine.runtime.qmodules import QLinear

from linear_nets import MLP, Block, Branchy


def _case(model, shape, n=4, seed=1):
    torch.manual_seed(0)
    m = model().eval()
    g = torch.Generator().manual_seed(seed)
    batches = [torch.randn(*shape, generator=g) for _ in range(n)]
    cal = calibrate(m, batches)
    qm = lower_int8(m, cal)
    kept = {k: lq for k, lq in cal.layers.items() if qm.int8_report[k].startswith("int8")}
    return m, cal, qm, simulate(m, replace(cal, layers=kept)), torch.randn(*shape, generator=g)


@pytest.mark.parametrize("model,shape,int8", [(MLP, (6, 1, 8, 8), ("fc1", "fc2")),
                                              (Block, (2, 12, 32), ("up", "down"))])
def test_linear_layers_run_int8_and_match_the_simulation(model, shape, int8):
    m, cal, qm, sim, x = _case(model, shape)
    rep = qm.int8_report
    assert all(rep[n] == "int8 (float in and out)" for n in int8), rep
    assert list(rep.values()).count("fp32: kept fp32 (fp32_layers: the classifier by default)") == 1
    assert sum(isinstance(mod, QLinear) for mod in qm.modules()) == 2
    diffs = layer_diffs(qm, sim, (x,))
    assert [d.name for d in diffs] == [f"{n}_int8" for n in int8]
    assert all(d.ok and d.outputs > 0 for d in diffs), diffs
    with torch.no_grad():
        got, want, ref = qm(x), sim(x), m(x)
    assert got.shape == ref.shape
    assert float((got - want).norm() / want.norm()) < 1e-3
    assert float((got - ref).norm() / ref.norm()) < 0.05
    # the pruned blocks are left out of the kernel's weights (4 row groups x 8 column quads)
    if model is MLP:
        assert qm.fc2_int8.layer.packed.stored == 48 * 96 - 16 * 32


def test_the_kernel_computes_the_integer_linear():
    """QLinear against numpy: exact int32 sums of (x - zx) * w, requantized as spe.h says."""
    g = np.random.default_rng(0)
    O, C, rows = 24, 40, 7
    wq = g.integers(-127, 128, (O, C)).astype(np.int8)
    wq[4:8, 8:16] = 0
    ws = g.uniform(0.001, 0.01, O).astype(np.float32)
    b = g.normal(0, 0.5, O).astype(np.float32)
    (sx, zx), (sy, zy) = (0.05, 120), (0.08, 3)
    q = QLinear(QuantConv(wq, ws, b, input=(sx, zx), output=(sy, zy), act="relu",
                          input_layout="nchw4", output_layout="nchw4", name="lin"))
    codes = g.integers(0, 256, (3, rows, C))
    x = torch.from_numpy(((codes - zx) * sx).astype(np.float32))
    acc = (codes.astype(np.int64) - zx) @ wq.T.astype(np.int64)          # (3, rows, O)
    v = np.float32(acc) * (np.float32(sx) * ws / np.float32(sy)) + b / np.float32(sy)
    want = np.clip(np.rint(np.maximum(v, 0)) + zy, 0, 255)
    got = np.rint(q(x).numpy() / sy) + zy
    assert got.shape == (3, rows, O)
    assert np.abs(got - want).max() <= 1 and (got != want).mean() < 0.01
    with pytest.raises(ConfigError, match="lin: input must be"):
        q(torch.zeros(2, C + 1))
    assert q(torch.zeros(0, C)).shape == (0, O)


def test_bits8_optimizes_the_linear_layers_and_the_artifact_runs_them(tmp_path):
    pytest.importorskip("tvm")
    torch.manual_seed(0)
    m = Block().eval()
    x = torch.randn(1, 16, 32)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = engine.optimize(m, (x,), block=(4, 4), sparsity=0.5, bits=8,
                          calibration=[torch.randn(2, 16, 32) for _ in range(3)],
                          measure=False, progress=False, guard="off")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    bits = {c.layer: c.bits for c in opt.plan}
    assert bits == {"up": 8, "down": 8, "head": 32}
    assert opt.plan.meta["int8"]["verify"]["layers"] == 2
    with torch.no_grad():
        host = opt(x)
    path = opt.save(tmp_path / "art")
    got = engine.load(path)(x)
    got = got[0] if isinstance(got, (tuple, list)) else got
    assert np.abs(np.asarray(got) - host.numpy()).max() <= 1e-4 * float(host.abs().max())
    import json
    layers = json.loads((path / "manifest.json").read_text())["extra"]["int8"]["layers"]
    assert "float in and out" in layers["up"]["activations"]


def test_a_model_fx_cannot_trace_gets_its_linears_int8_in_place():
    """No graph: calibrated by hooks, the linears swapped in place (engine.quant.in_place),
    each matching its simulation; the user's model untouched."""
    m, cal, qm, sim, x = _case(Branchy, (5, 24))
    assert not cal.traced and set(cal.layers) == {"a", "b", "c"}
    rep = qm.int8_report
    assert rep["a"] == rep["b"] == "int8 (float in and out)" and rep["c"].startswith("fp32")
    assert isinstance(qm.a, QLinear) and isinstance(qm.b, QLinear) and not isinstance(m.a, QLinear)
    diffs = layer_diffs(qm, sim, (x,))
    assert [d.name for d in diffs] == ["a", "b"] and all(d.ok for d in diffs), diffs
    with torch.no_grad():
        got, want, ref = qm(x), sim(x), m(x)
    assert float((got - want).norm() / want.norm()) < 1e-3
    assert 0 < float((got - ref).norm() / ref.norm()) < 0.05
    other = Branchy().eval()
    with pytest.raises(ConfigError, match="does not match"):
        lower_int8(other, cal)


def test_bits8_on_a_transformers_model(tmp_path):
    """BERT (transformers, random weights; torch.fx cannot trace it): every linear int8 but the
    last, verified layer by layer against the simulation, and the artifact runs them."""
    pytest.importorskip("tvm")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=128, vocab_size=100)
    m = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 100, (1, 16))
    opt = engine.optimize(m, (ids,), block=(4, 4), sparsity=0.5, bits=8, progress=False,
                          calibration=[torch.randint(0, 100, (1, 16)) for _ in range(3)],
                          measure=False, guard="off")
    bits = {c.layer: c.bits for c in opt.plan}
    assert sum(b == 8 for b in bits.values()) == 6 and bits["pooler.dense"] == 32
    assert opt.plan.meta["int8"]["verify"]["layers"] == 6
    with torch.no_grad():
        host = opt(ids).last_hidden_state
    got = engine.load(opt.save(tmp_path / "art"))(ids).last_hidden_state
    assert np.abs(np.asarray(got) - host.numpy()).max() <= 1e-4 * float(host.abs().max())


def test_bits8_on_gpt2_runs_its_conv1d_linears_int8(tmp_path):
    """GPT-2 (transformers, random weights): its Conv1D linears (weight stored (in, out)) are
    calibrated by hooks, run int8 (QLinear of the transposed weight), each within one code of
    its simulation, the last one fp32 (the classifier rule); the artifact matches the host and
    the model stays close to the pruned fp32 one."""
    pytest.importorskip("tvm")
    transformers = pytest.importorskip("transformers")
    from engine.graph.layers import gemm_weight
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=100, n_embd=64, n_layer=2, n_head=2, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    m = transformers.GPT2Model(cfg).eval()
    ids = torch.randint(0, 100, (1, 16))
    kw = {"use_cache": False}
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = engine.optimize(m, (ids,), example_kwargs=kw, block=(4, 4), sparsity=0.5, bits=8,
                          progress=False, measure=False, guard="off",
                          calibration=[torch.randint(0, 100, (1, 16)) for _ in range(3)])
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    bits = {c.layer: c.bits for c in opt.plan}
    assert len(bits) == 8 and bits.pop("h.1.mlp.c_proj") == 32, bits
    assert set(bits.values()) == {8}, bits
    assert opt.plan.meta["int8"]["verify"]["layers"] == 7
    qlin = [mod for mod in opt.runtime.modules() if isinstance(mod, QLinear)]
    assert len(qlin) == 7 and {q.in_features for q in qlin} == {64, 256}
    # the kernel's weight is the Conv1D's transposed (the pruned blocks left out)
    c_fc = opt.pruned_model.get_submodule("h.0.mlp.c_fc")
    stored = next(q for q in qlin if q.layer.name == "h.0.mlp.c_fc").layer.packed
    assert (stored.out_channels, stored.in_channels) == tuple(gemm_weight(c_fc).shape) == (256, 64)
    with torch.no_grad():
        host = opt(ids, **kw).last_hidden_state
        ref = opt.pruned_model(ids, **kw).last_hidden_state
    assert float((host - ref).norm() / ref.norm()) < 0.1
    got = engine.load(opt.save(tmp_path / "art"))(ids).last_hidden_state
    assert np.abs(np.asarray(got) - host.numpy()).max() <= 1e-4 * float(host.abs().max())


def test_run_float_is_run_linear_transposed_with_a_float_epilogue():
    """QuantConv.run_float on (1, C, 1, rows) gives run_linear's floats transposed, bit for bit;
    its float epilogue adds a residual exactly and applies GELU as torch does (to the kernels'
    documented 1e-6 relative); a residual of another shape is refused, named."""
    g = np.random.default_rng(3)
    O, C, rows = 20, 36, 37
    wq = g.integers(-127, 128, (O, C)).astype(np.int8)
    wq[:8, 4:20] = 0
    layer = QuantConv(wq, g.uniform(0.001, 0.01, O).astype(np.float32),
                      g.normal(0, 0.5, O).astype(np.float32), input=(0.05, 120),
                      output=(0.08, 100), input_layout="nchw4", output_layout="nchw4", name="lin")
    x = g.normal(0, 2, (rows, C)).astype(np.float32)
    xp = np.ascontiguousarray(x.T)[None, :, None, :]
    rows_out = layer.run_linear(x)
    y = layer.run_float(xp)
    assert y.shape == (1, O, 1, rows) and np.array_equal(y[0, :, 0, :].T, rows_out)
    r = g.normal(0, 1, y.shape).astype(np.float32)
    assert np.array_equal(layer.run_float(xp, r), y + r)
    want = torch.nn.functional.gelu(torch.from_numpy(y + r)).numpy()
    got = layer.run_float(xp, r, post_act="gelu")
    assert np.abs(got - want).max() <= 1e-6 * np.abs(y + r).max() + 1e-7
    with pytest.raises(ConfigError, match="lin: residual must be the output's shape"):
        layer.run_float(xp, r[:, :, :, :-1])
