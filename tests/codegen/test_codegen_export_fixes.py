"""engine.codegen.export_fixes: float floor / trunc divisions rewritten as round(a / b) (the
form TVM's importer converts), integer ones left alone; the rewritten graph computes what
torch's own ops compute on the same inputs."""
import numpy as np
import torch
from torch import nn

from engine.codegen.export_fixes import apply_fixes

aten = torch.ops.aten


class Divs(nn.Module):
    def forward(self, x, i):
        a = x // 2                                             # DETR's `dim_t // 2`
        b = torch.div(x, 3.0, rounding_mode="trunc")
        c = torch.floor_divide(x, x.abs() + 1.5)
        d = i // 3                                             # integer: imported as it is
        return a + b + c, d


def _decomposed(model, args):
    return torch.export.export(model, args, strict=False).run_decompositions()


def test_float_floor_division_rewritten_and_equal():
    x = torch.linspace(-7.3, 9.1, 40).reshape(4, 10)
    i = torch.arange(-20, 20).reshape(4, 10)
    ep = _decomposed(Divs(), (x, i))
    counts = apply_fixes(ep)
    assert counts["float_floor_division"] == 3
    targets = [n.target for n in ep.graph.nodes if n.op == "call_function"]
    float_divs = [n for n in ep.graph.nodes if n.op == "call_function"
                  and n.target in (aten.div.Tensor_mode, aten.floor_divide.default)
                  and n.meta["val"].dtype.is_floating_point]
    assert not float_divs
    assert aten.floor.default in targets and aten.trunc.default in targets
    got = ep.module()(x, i)
    ref = Divs()(x, i)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])


def test_nothing_to_fix_leaves_graph_alone():
    ep = _decomposed(nn.Linear(4, 3), (torch.randn(2, 4),))
    before = [n.target for n in ep.graph.nodes]
    assert not any(apply_fixes(ep).values())
    assert [n.target for n in ep.graph.nodes] == before


class Powers(nn.Module):
    def forward(self, x, i):
        gelu_new = 0.5 * x * (1 + torch.tanh(0.79788456 * (x + 0.044715 * torch.pow(x, 3.0))))
        return gelu_new + x ** 2 + x.abs() ** 2.5 + x.abs() ** 4, i ** 3          # 2.5, 4, int: as is


def test_square_and_cube_are_products_equal_to_torch():
    """x ** 2 and x ** 3 of float tensors become products (TVM's power is libm's powf per
    element), bit for bit torch's; other exponents and integer tensors stay powers; and the
    compiled model matches torch."""
    x = torch.linspace(-4.0, 4.0, 64).reshape(4, 16)
    i = torch.arange(-8, 8).reshape(4, 4)
    ep = _decomposed(Powers(), (x, i))
    counts = apply_fixes(ep)
    assert counts["square_and_cube"] == 2
    pows = [n for n in ep.graph.nodes if n.op == "call_function" and n.target in
            (aten.pow.Tensor_Scalar, aten.pow.Scalar)]
    assert len(pows) == 3, [n.args for n in pows]
    got, ref = ep.module()(x, i), Powers()(x, i)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])
    from engine.codegen import compile_model
    cm = compile_model(Powers(), (x, i), None, "host")
    out = cm.run(x, i)
    assert torch.allclose(torch.as_tensor(np.asarray(out[0])), ref[0], rtol=1e-5, atol=1e-5)
    assert torch.equal(torch.as_tensor(np.asarray(out[1])), ref[1])
