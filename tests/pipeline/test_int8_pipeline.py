"""optimize(bits=...): int8 layers in the one pipeline, measured, calibrated, verified against
their simulation, saved into an artifact. References: engine.quant's simulation recomputed
here from the masked model, the float masked model, the artifact against the host result."""
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import engine
from engine.errors import ConfigError
from engine.quant import calibrate, simulate
from engine.runtime.qmodules import QConv2d, QDepthwiseConv2d

from qnet import qnet

X = torch.randn(1, 3, 32, 32)


def _batches(n=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(4, 3, 32, 32, generator=g) for _ in range(n)]


def _rel(a, b) -> float:
    return float((a - b).norm() / b.norm())


@pytest.fixture(scope="module")
def int8_opt():
    m = qnet()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    opt = engine.optimize(m, (X,), block=(4, 4), sparsity=0.5, bits=8, calibration=_batches(),
                          measure=False, progress=False, guard="off")
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    return m, opt


def test_bits8_runs_every_int8_able_layer_int8(int8_opt):
    _, opt = int8_opt
    bits = {c.layer: c.bits for c in opt.plan}
    assert bits == {"stem": 8, "conv1": 8, "conv2": 8, "conv3": 8, "dw": 8, "fc": 32}
    assert "classifier" in opt.plan["fc"].reason
    rep = opt.plan.meta["int8"]["report"]
    assert rep["conv3"] == "int8 (residual add fused)" and rep["dw"] == "int8"
    seen = opt.plan.meta["int8"]["verify"]            # each int8 layer checked on its own input
    assert seen["layers"] == 5 and seen["max_tie_fraction"] <= 1e-3 and seen["rel_l2"] < 2e-3
    kinds = [type(mod) for mod in opt.runtime.modules()]
    assert kinds.count(QConv2d) == 4 and kinds.count(QDepthwiseConv2d) == 1
    assert opt.int8


def test_int8_result_matches_an_independent_simulation(int8_opt):
    _, opt = int8_opt
    cal = calibrate(opt.pruned_model, _batches())
    # what runs int8: every calibrated layer but the classifier
    sim = simulate(opt.pruned_model, replace(cal, layers={n: lq for n, lq in cal.layers.items()
                                                          if n != "fc"}))
    x = torch.cat(_batches(2, seed=7))
    with torch.no_grad():
        got, want, flt = opt(x), sim(x), opt.pruned_model(x)
    # the simulation models what runs (fused residual add, pooled codes): float rounding ties
    # apart (engine.quant.check)
    assert _rel(got, want) < 2e-3
    assert 0 < _rel(got, flt) < 0.2                # int8, and close to the float model


def test_int8_plan_replays(int8_opt):
    m, opt = int8_opt
    again = engine.optimize(m, (X,), plan=opt.plan, calibration=_batches(), measure=False,
                            progress=False, guard="off")
    assert {c.layer: c.bits for c in again.plan} == {c.layer: c.bits for c in opt.plan}
    with torch.no_grad():
        assert torch.allclose(again(X), opt(X), atol=1e-5)


def test_an_int8_block_on_the_rgb_stem_is_one_quad_wide(int8_opt):
    # the uniform 4x4 keeps the 3-channel stem dense (an fp32 4-column block does not fit 3
    # channels); a plan's int8 4x4 choice for it prunes 4 rows x its 3 channels at each tap
    m, opt = int8_opt
    assert not opt.plan["stem"].pruned
    stem = replace(opt.plan["stem"], scheme="block", block=(4, 4), sparsity=0.5, bits=8)
    plan = replace(opt.plan, choices=[stem if c.layer == "stem" else c for c in opt.plan])
    again = engine.optimize(m, (X,), plan=plan, calibration=_batches(), measure=False,
                            progress=False, guard="off")
    got = again.plan["stem"]
    assert got.pruned and got.bits == 8 and abs(got.sparsity - 0.5) < 0.03
    w = again.pruned_model.stem.weight.detach()                      # (32, 3, 3, 3)
    kept = (w != 0).reshape(8, 4, 3, 9).any(dim=(1, 2))              # per 4 rows and tap
    assert torch.equal((w != 0).reshape(8, 4, 3, 9), kept[:, None, None, :].expand(8, 4, 3, 9))
    with torch.no_grad():
        assert 0 < _rel(again(X), again.pruned_model(X)) < 0.2        # int8, close to float


def test_int8_artifact_runs_what_the_host_runs(int8_opt, tmp_path):
    pytest.importorskip("tvm")
    _, opt = int8_opt
    path = opt.save(tmp_path / "art")
    import json
    manifest = json.loads((path / "manifest.json").read_text())
    assert "conv1" in manifest["extra"]["int8"]["layers"]
    got = engine.load(path)(X)
    got = got[0] if isinstance(got, (tuple, list)) else got
    with torch.no_grad():
        want = opt(X)
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4,
                               atol=1e-4 * float(want.abs().max()))


def test_measured_int8_choices_say_what_was_measured():
    opt = engine.optimize(qnet(width=64), (X,), block=(4, 4), sparsity=0.75, bits=8,
                          calibration=_batches(), progress=False, guard="off")
    for c in opt.plan:
        if c.bits == 8:
            assert "int8 measured" in c.reason and c.kernel.startswith("qs8")
            assert c.latency_us > 0 and c.dense_latency_us > 0
        elif c.layer != "fc":
            assert "fp32:" in c.reason      # said why it is not int8
    assert any("conversions" in n for n in opt.notes)


def test_int8_options_checked():
    m = qnet()
    with pytest.raises(ConfigError, match="calibration"):
        engine.optimize(m, (X,), bits=8, measure=False, progress=False)
    with pytest.raises(ConfigError, match="bits must be"):
        engine.optimize(m, (X,), bits=16, progress=False)
    with pytest.raises(ConfigError, match="mapper"):
        engine.optimize(m, (X,), bits="auto", progress=False)
    with pytest.raises(ConfigError, match="auto"):
        engine.optimize(m, (X,), bits=8, mapper="rule", progress=False)
    with pytest.raises(ConfigError, match="bits='auto'"):
        engine.optimize(m, (X,), mapper="rule", space=["dense+int8"], progress=False)


@pytest.mark.parametrize("device", [None, "artifact"])
def test_auto_bits_mapper_counts_the_conversions(tmp_path, device):
    if device == "artifact":
        pytest.importorskip("tvm")
    m = qnet(width=64)
    space = ["block4x1@0.50/native", "block4x4@0.50/native", "block4x4@0.50/native+int8",
             "block4x4@0.75/native+int8", "dense+int8"]
    opt = engine.optimize(m, (X,), block=(4, 4), sparsity=0.5, bits="auto", mapper="rule",
                          calibration=_batches(), costs=str(tmp_path / "costs.json"),
                          space=space, backends="native", progress=False, guard="off",
                          allow_infeasible=True, device=device)
    p = opt.mapping
    assert p.has_int8 and len(p.conversions) > 0
    mapped = opt.plan.meta["mapping"]
    # the mapper's int8 layers arrive int8, or went back to fp32 when measured in place
    # (settle_bits: "fp32: int8 N us vs fp32 M us, the domain changes counted: ...")
    back = sum(c.bits == 32 and "the domain changes counted" in c.reason for c in opt.plan)
    assert mapped["int8"]["int8_layers"] == sum(c.bits == 8 for c in opt.plan) + back
    assert mapped["conversions_us"] == pytest.approx(mapped["int8"]["conversions_us"])
    if device == "artifact":    # layers and conversions timed as the artifact runs them
        prof = mapped["mapping"]["profiler"]
        assert prof.startswith("compiled/")
        table = json.loads((tmp_path / "costs.json").read_text())["targets"][prof]
        converts = [m for k, ms in table.items() if k.startswith("convert:") for m in ms.values()]
        int8 = [m for k, ms in table.items() for c, m in ms.items() if c.endswith("+int8")]
        assert converts and all(m["source"] == "compiled" for m in converts + int8)
        assert all(m["kernel"].startswith("qs8") for m in int8)


def test_settle_bits_counts_the_domain_changes():
    """A slow int8 layer goes back to fp32; one slightly slower than fp32 alone stays int8 when
    the quantize / dequantize around it would cost more (reference: the costs written here and
    the conversions of the same tensors, costed by the stage's timer)."""
    from types import SimpleNamespace
    from mapping import Choice, CostTable
    from engine.measure import model_specs
    from engine.measure.domains import measure_conversions, model_tensors
    from engine.pipeline.int8 import settle_bits
    from mapping import Measurement

    def per_shape(shapes):    # the conversions' costs, fixed: 1 us per 1000 values each way
        return {s: {k: Measurement(math.prod(s) / 1e3, 0.0, 1, k, "t")
                    for k in ("quantize", "dequantize")} for s in shapes}
    timer = SimpleNamespace(time_conversions=per_shape)
    m = qnet()
    specs = {s.name: s for s in model_specs(m, (X,))}
    conv = measure_conversions(model_tensors(m, (X,), list(specs.values())), CostTable(), "t",
                               profiler=timer)
    around = {n: sum(t.quantize_us + t.dequantize_us for t in conv.touching(n)) for n in specs}
    names = ["stem", "conv1", "conv2", "conv3", "dw"]
    costs = {n: {"spec": specs[n], "int8_us": 10.0, "fp32_us": 40.0} for n in names}
    costs["conv2"]["int8_us"] = 40.0 + 10 * around["conv2"] + 1000.0     # far slower: fp32
    # the stem in fp32 would quantize its pooled output (32 channels) instead of the image
    # (3): a little slower int8 kernel still wins
    after = {n: 8 for n in names} | {"conv2": 32, "fc": 32}
    extra = conv.flip_delta(after, "stem", 32)
    assert extra > 0
    costs["stem"]["int8_us"] = 40.0 + 0.5 * extra
    state = SimpleNamespace(int8_costs=costs, base=m, example_inputs=(X,), notes=[],
                            config=SimpleNamespace(threads=None),
                            choices={n: Choice(n, bits=8) for n in names} |
                            {"fc": Choice("fc")})
    redone = []
    settle_bits(state, lambda spec: redone.append(spec.name), timer)
    assert redone == ["conv2"] and state.choices["conv2"].bits == 32
    assert "domain changes counted" in state.choices["conv2"].reason
    assert state.choices["stem"].bits == 8           # its conversions would cost more


def test_cli_bits():
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "engine", "optimize", "--model", "resnet18_cifar",
                        "--block", "4x4", "--bits", "8", "--calib-batches", "1", "--guard",
                        "off", "--min-time", "0.05", "--threads", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stdout.splitlines()
    head = next(ln.split() for ln in lines if ln.startswith("layer "))
    assert head[:3] == ["layer", "scheme", "bits"]
    rows = [ln.split() for ln in lines if ln.startswith(("conv1", "layer1.", "layer4.", "fc"))]
    assert rows and {row[2] for row in rows} <= {"8", "32"}
    assert all(row[5].startswith("qs8") for row in rows if row[2] == "8")
    assert any(ln.startswith("note: int8:") for ln in lines)    # what settle_bits decided
    bad = subprocess.run([sys.executable, "-m", "engine", "optimize", "--model",
                          "resnet18_cifar", "--bits", "auto"], capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode != 0 and "mapper" in bad.stderr


def test_fp32_layers_of_an_int8_plan_run_the_plans_backend(tmp_path):
    """A plan's fp32 layer on the generated (TIR) kernel runs that kernel in the int8 model and
    in its artifact (what the mapper measured), not the dense GEMM lower_int8 defaults to nor
    another sparse kernel (references: the plan's own choice; the artifact against the host
    result, the host result against the int8 simulation)."""
    pytest.importorskip("tvm")
    from engine.codegen.host import TirConv2d
    m = qnet()
    plan = engine.optimize(m, (X,), block=(4, 4), sparsity=0.5, measure=False,
                           progress=False).plan
    plan["conv2"].backend = "tir"
    plan["conv1"].bits = 8
    opt = engine.optimize(m, (X,), plan=plan, calibration=_batches(), measure=False,
                          progress=False)
    assert opt.plan["conv1"].bits == 8 and opt.plan["conv2"].bits == 32
    mods = dict(opt.runtime.named_modules())
    conv2 = [mod for n, mod in mods.items() if n.startswith("conv2")]
    assert conv2 and all(isinstance(mod, TirConv2d) for mod in conv2), conv2
    assert any(n.startswith("conv1") and type(mod).__name__ == "QConv2d"
               for n, mod in mods.items())
    cm = opt.compile()
    assert cm.layer("conv2").kind == "sparse" and cm.layer("conv2").kernel.startswith("tir_")
    with torch.no_grad():
        want = opt(X)
    got = engine.load(opt.save(tmp_path / "art"))(X)
    got = got[0] if isinstance(got, (tuple, list)) else got
    np.testing.assert_allclose(np.asarray(got), want.numpy(), rtol=1e-4,
                               atol=1e-4 * float(want.abs().max()))


def test_a_wrong_int8_layer_fails_verify_by_name(monkeypatch):
    import sys
    from engine.errors import MismatchError
    native = sys.modules["engine.quant.native"]
    right = native.int8_weight

    def wrong(lq):                         # conv2's first output channel packed 5 units off
        wq, ws = right(lq)
        if lq.name == "conv2":
            wq = wq.copy()
            wq[0] = np.clip(wq[0].astype(np.int32) + 5, -127, 127).astype(np.int8)
        return wq, ws
    monkeypatch.setattr(native, "int8_weight", wrong)
    with pytest.raises(MismatchError, match="int8 layer conv2_int8: .* output codes differ"):
        engine.optimize(qnet(), (X,), block=(4, 4), sparsity=0.5, bits=8,
                        calibration=_batches(), measure=False, progress=False, guard="off")


@pytest.mark.parametrize("artifact_int8_wins", [True, False])
def test_int8_guard_times_the_compiled_artifacts(monkeypatch, artifact_int8_wins):
    """The Python runtime calls every layer from Python; what ships is the compiled artifact
    (and the two forms compile differently): the guard compiles both forms and decides on
    those, whatever opt(...) in Python would say."""
    import engine.pipeline.decide as decide
    import engine.pipeline.timing as timing
    import engine.runtime.measure as measure
    monkeypatch.setattr(decide, "settle_bits", lambda *a, **k: None)   # every int8 layer stays
    runtime_compare = measure.compare

    asked = []

    def compare(calls, **kw):
        if set(calls) == {"int8", "fp32"}:          # the runtime: never asked
            asked.append(runtime_compare(calls, min_time=0.01))
            return {"int8": 2.0, "fp32": 1.0}
        return {k: (1.0 if k == "optimized" else 2.0) for k in calls}
    monkeypatch.setattr(measure, "compare", compare)
    timed = []

    def best_of_two(runs):
        assert set(runs) == {"int8", "fp32"}
        timed.append({k: _numpy(r()) for k, r in runs.items()})   # the compiled artifacts run
        return {"int8": 1.0, "fp32": 2.0} if artifact_int8_wins else {"int8": 2.0, "fp32": 1.0}
    monkeypatch.setattr(timing, "best_of_two", best_of_two)
    opt = engine.optimize(qnet(), (X,), block=(4, 4), sparsity=0.5, bits=8,
                          calibration=_batches(), progress=False)
    assert len(timed) == 1 and not asked
    outs = timed[0]
    g = opt.plan.meta["int8"]["guard"]
    assert g["measured"] == "artifact"
    with torch.no_grad():
        ref = opt(X).numpy()
    if artifact_int8_wins:
        assert g["kept"] == "int8" and opt.int8
        assert sum(c.bits == 8 for c in opt.plan) == 5
        np.testing.assert_allclose(outs["int8"], ref, rtol=1e-4, atol=1e-4 * float(abs(ref).max()))
    else:
        assert g["kept"] == "fp32" and not opt.int8     # the twin: every layer fp32
        assert all("as compiled artifacts" in c.reason for c in opt.plan if c.layer != "fc")
        # the twin's artifact is the fp32 one: it computes the masked model in fp32
        with torch.no_grad():
            masked = opt.pruned_model(X).numpy()
        np.testing.assert_allclose(outs["fp32"], masked, rtol=1e-4, atol=1e-4 * float(abs(masked).max()))


def _numpy(out):
    if not hasattr(out, "numpy"):      # a tuple / the VM's array of outputs: the first
        out = out[0]
    return out.numpy()
