"""The simulation computes what lower_int8 runs, layer by layer (engine.quant.check): a residual
add fused into a conv's store (the conv's sum not rounded before the add, the sum quantized
once), a max pool of uint8 codes read on its input's grid. References: the int8 kernels' output
codes (each tested bit-exact against a scalar reference in tests/kernels)."""
from dataclasses import replace

import pytest
import torch

from engine.quant import calibrate, lower_int8, simulate
from engine.quant.check import LayerDiff, layer_diffs
from engine.quant.simulate import QuantSim

from qnet import qnet


def _batches(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 3, 16, 16, generator=g) for _ in range(n)]


@pytest.fixture(scope="module")
def lowered():
    m = qnet()
    cal = calibrate(m, _batches())
    qm = lower_int8(m, cal)
    # the layers that run int8 (the classifier stays fp32), as the pipeline simulates them
    kept = {n: lq for n, lq in cal.layers.items() if qm.int8_report[n].startswith("int8")}
    return m, qm, simulate(m, replace(cal, layers=kept))


def test_the_simulation_fuses_the_residual_add_as_the_int8_model_does(lowered):
    _, qm, sim = lowered
    assert qm.int8_report["conv3"] == "int8 (residual add fused)"
    calls = {n.target: n for n in sim.graph.nodes if n.op == "call_module"}
    # conv3 -> bn3 -> + identity -> ReLU is one QuantSim with the identity as its 2nd input
    assert len(calls["conv3_int8"].args) == 2 and calls["conv3_int8"].args[1].target == "pool"
    assert not any(n.op == "call_function" and "add" in str(n.target) for n in sim.graph.nodes)
    # the max pool's output is read as codes on the stem's grid, not quantized again
    assert not sim.conv1_int8.quant_input and sim.stem_int8.quant_input
    assert not sim.conv3_int8.quant_input and sim.conv3_int8.residual is None


def test_every_int8_layer_matches_its_simulation_on_the_same_input(lowered):
    _, qm, sim = lowered
    x = torch.cat(_batches(2, seed=7))
    diffs = layer_diffs(qm, sim, (x,))
    assert [d.name for d in diffs] == ["stem_int8", "conv1_int8", "conv2_int8", "conv3_int8",
                                       "dw_int8"]
    for d in diffs:
        assert d.ok and d.outputs > 0, d
        assert d.differ <= 1e-3 * d.outputs, d
    # end to end, nothing but those ties between them
    with torch.no_grad():
        got, want = qm(x), sim(x)
    assert float((got - want).norm() / want.norm()) < 1e-3


def test_a_wrong_int8_layer_is_named(lowered):
    _, qm, sim = lowered
    mod = qm.get_submodule("conv2_int8")
    fwd = mod.forward

    def off_by_three(x, r=None):           # a kernel whose store is off by 3 codes
        y = fwd(x, r)
        return torch.clamp(y.to(torch.int16) + 3, 0, 255).to(torch.uint8)
    mod.forward = off_by_three
    try:
        diffs = layer_diffs(qm, sim, (torch.cat(_batches(1, seed=9)),))
    finally:
        del mod.forward
    bad = [d for d in diffs if not d.ok]
    assert bad and bad[0].name == "conv2_int8" and bad[0].max_codes >= 3
    assert "conv2_int8" in str(bad[0])


def test_ties_are_allowed_more_is_not():
    assert LayerDiff("a", 10000, 5, 1).ok
    assert not LayerDiff("a", 10000, 5, 2).ok          # two codes apart: not a tie
    assert not LayerDiff("a", 10000, 50, 1).ok         # 0.5% of the outputs: not ties


def test_quant_sims_are_what_the_check_reads(lowered):
    _, _, sim = lowered
    assert {n for n, m in sim.named_modules() if isinstance(m, QuantSim)} == \
        {"stem_int8", "conv1_int8", "conv2_int8", "conv3_int8", "dw_int8"}


class _Chaos(torch.nn.Module):
    """The logistic map at r = 3.9, iterated: float32 rounding grows ~2x per step."""

    def __init__(self, steps: int, expanded: bool = False):
        super().__init__()
        self.steps, self.expanded = steps, expanded

    def forward(self, x):
        for _ in range(self.steps):
            x = 3.9 * x - 3.9 * x * x if self.expanded else 3.9 * x * (1 - x)
        return x


class _Result:
    """An optimized model's stand-in for verify.check_int8: its runtime has no int8 layer."""

    def __init__(self, fn):
        self.fn, self.runtime = fn, torch.nn.Identity()

    def __call__(self, *inputs):
        return self.fn(*inputs)


def test_verify_accepts_rounding_the_network_amplifies_and_nothing_more():
    from engine.errors import MismatchError
    from engine.pipeline.verify import INT8_VERIFY_RTOL, check_int8
    x = (torch.rand(4096, generator=torch.Generator().manual_seed(3)) * 0.8 + 0.1,)
    ref = _Chaos(40)
    other = _Chaos(40, expanded=True)        # the same map, its float32 rounding elsewhere
    with torch.no_grad():
        diff = float((other(*x) - ref(*x)).norm() / ref(*x).norm())
    assert diff > INT8_VERIFY_RTOL           # the case: past the end-to-end tolerance
    note = check_int8(_Result(other), ref, x)
    assert "float64" in note and "amplifies" in note
    # close enough: no note
    assert check_int8(_Result(_Chaos(3, expanded=True)), _Chaos(3), x) == ""
    # an error the simulation's own rounding does not explain is refused, with the numbers
    with pytest.raises(MismatchError, match="differs from itself in float64"):
        check_int8(_Result(lambda t: 5 * ref(t)), ref, x)
