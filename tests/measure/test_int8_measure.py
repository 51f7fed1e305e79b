"""The int8 side of the measurements: the tensors between layers and their conversions, int8
candidates timed by the host profiler, the data-free and data proxies of int8 candidates."""
import copy

import pytest
import torch

from engine.accuracy import DataProxy
from engine.errors import ConfigError
from engine.measure import HostProfiler, model_specs, model_weights, retained_energy
from engine.measure.domains import measure_conversions, model_tensors
from engine.quant.simulate import QuantSim
from mapping import DENSE, Candidate, CostTable

from qnet import qnet

X = torch.randn(1, 3, 32, 32)
INT8 = Candidate("block", (4, 4), 0.75, bits=8)
D8 = DENSE.with_bits(8)


def test_tensors_follow_the_int8_lowerings_domains():
    m = qnet()
    specs = model_specs(m, (X,))
    got = {(t.producer, tuple(t.consumers)): t.shape for t in model_tensors(m, (X,), specs)}
    # the pooled stem output feeds conv1 and, as the residual fused into conv3, conv3
    assert got[("stem", ("conv1", "conv3"))] == (1, 32, 16, 16)
    assert got[(None, ("stem",))] == (1, 3, 32, 32)
    assert ("conv1", ("conv2",)) in got and ("conv2", ("conv3",)) in got
    assert ("conv3", ("dw",)) in got                   # through the add and its ReLU
    assert got[("dw", (None,))] == (1, 32, 16, 16)     # the average pool runs fp32


def test_conversions_measured_once_and_cached():
    m = qnet()
    specs = model_specs(m, (X,))
    tensors = model_tensors(m, (X,), specs)
    table = CostTable()
    conv = measure_conversions(tensors, table, "t", min_time=0.002)
    n = len(table)
    assert n == 2 * len({t.shape for t in tensors}) and len(conv) == len(tensors)
    assert all(t.quantize_us > 0 and t.dequantize_us > 0 for t in conv.tensors)
    measure_conversions(tensors, table, "t", min_time=0.002)
    assert len(table) == n


def test_host_profiler_times_int8_candidates_on_the_int8_kernels():
    m = qnet()
    specs = {s.name: s for s in model_specs(m, (X,))}
    prof = HostProfiler(model_weights(m, list(specs.values())), min_time=0.002,
                        backends=("native",), cache="warm")
    got = prof.measure(specs["conv1"], [DENSE, INT8, D8])
    assert got[INT8.key].kernel.startswith("qs8_spmm") and got[D8.key].kernel.startswith("qs8")
    dw = prof.measure(specs["dw"], [DENSE, D8])
    assert D8.key in dw and dw[D8.key].us > 0
    # a linear layer: float in and out (QLinear), its quantize / dequantize in its time
    fc = prof.measure(specs["fc"], [DENSE, D8])
    assert prof.why_not(specs["fc"], D8) is None and fc[D8.key].kernel.startswith("qs8_spmm")


def test_energy_of_int8_candidates_counts_the_weight_rounding():
    m = qnet()
    specs = model_specs(m, (X,))
    weights = model_weights(m, specs)
    fp32 = Candidate("block", (4, 4), 0.75)
    e = retained_energy(weights, specs, {s.name: [fp32, INT8, D8] for s in specs
                                         if s.name != "fc"})
    for name in ("conv1", "conv2", "conv3"):     # 4x4 blocks: not the stem, not depthwise
        per = e[name]
        assert per[INT8.key] < per[fp32.key] and per[INT8.key] > 0.99 * per[fp32.key]
    for name in ("stem", "conv1", "conv2", "conv3", "dw"):
        assert 0.99 < e[name][D8.key] < 1.0


def test_data_proxy_simulates_the_int8_layers():
    m = qnet()
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    proxy = DataProxy(m, (x, y))
    a = {"conv1": INT8, "dw": D8, "conv2": DENSE}
    net = proxy.pruned_copy(a)
    sims = {mod.name for mod in net.modules() if isinstance(mod, QuantSim)}
    assert sims == {"conv1", "dw"}
    # the int8 copy computes something else than the float one, close to it
    with torch.no_grad():
        f, q = proxy.pruned_copy({"conv1": INT8.with_bits(32)})(x), net(x)
    err = float((f - q).norm() / f.norm())
    assert 0 < err < 0.2
    assert 0.0 <= proxy.score(a) <= 1.0
    no_calib = DataProxy(copy.deepcopy(m), lambda net: 0.5)
    with pytest.raises(ConfigError, match="calibration"):
        no_calib.score(a)


def _compiled(m):
    pytest.importorskip("tvm")
    from engine.measure import CompiledProfiler
    specs = {s.name: s for s in model_specs(m, (X,))}
    return specs, CompiledProfiler(weights=model_weights(m, list(specs.values())),
                                   cache="warm", threads=1, min_repeat_ms=1, min_rounds=3)


def test_compiled_profiler_times_int8_candidates_as_the_artifact_runs_them():
    specs, prof = _compiled(qnet())
    for name, cands in (("conv1", [DENSE, INT8, D8]), ("conv3", [DENSE, INT8, D8]),
                        ("dw", [DENSE, D8])):
        got = prof.measure(specs[name], cands)
        # every int8 function's output matched this host's int8 kernel bit for bit (else left
        # out with the reason), and the kernel named is the int8 one
        assert set(got) == {c.key for c in cands}, (name, prof.notes)
        assert all(got[c.key].kernel.startswith("qs8") and got[c.key].source == "compiled"
                   for c in cands if c.is_int8)
    assert not [n for n in prof.notes if "differs" in n]
    assert "grouped" in (prof.why_not(specs["dw"], INT8) or "")
    assert "linear" in (prof.why_not(specs["fc"], D8) or "")


def test_compiled_int8_function_is_checked_against_the_reference():
    pytest.importorskip("tvm")
    from engine.codegen.remote import (KernelChoice, LayerShape, build_layer_module,
                                       local_session, time_on_device)
    from engine.measure.int8 import int8_timed
    specs = {s.name: s for s in model_specs(qnet(), (X,))}
    spec = specs["conv3"]                       # with the residual fused
    q = int8_timed(spec, torch.randn(spec.out_channels, spec.in_channels, 1, 1),
                   torch.randn(spec.out_channels), 4)
    layer = LayerShape("conv2d", (1, spec.in_channels, 16, 16), (1, spec.out_channels, 16, 16),
                       act="relu", residual=True)
    module = build_layer_module(layer, [KernelChoice(n, "native", None, int8=q.module)
                                        for n in ("good", "bad")], None, "host")
    want = q().numpy()
    off = want.copy()
    off.reshape(-1)[7] ^= 1                     # one code off by one
    ins = [q.x.numpy(), q.residual.numpy()]
    res, failed = time_on_device(local_session(), module, {"good": ins, "bad": ins},
                                 {"good": want, "bad": off}, min_repeat_ms=1, min_rounds=2)
    assert set(res) == {"good"} and res["good"].max_err == 0.0
    assert "differs" in failed["bad"]


def test_conversions_measured_as_the_artifact_runs_them():
    m = qnet()
    specs, prof = _compiled(m)
    tensors = model_tensors(m, (X,), list(specs.values()))
    table = CostTable()
    conv = measure_conversions(tensors, table, prof.target, profiler=prof)
    shapes = {t.shape for t in tensors}
    assert len(table) == 2 * len(shapes) and not prof.notes
    for shape in shapes:
        key = "convert:" + "x".join(map(str, shape))
        q, dq = (table.get(prof.target, key, k) for k in ("quantize", "dequantize"))
        assert q.kernel == "spe.v1.quantize" and dq.kernel == "spe.v1.dequantize"
        assert q.source == dq.source == "compiled" and q.us > 0 and dq.us > 0
    assert all(t.quantize_us > 0 for t in conv.tensors)
