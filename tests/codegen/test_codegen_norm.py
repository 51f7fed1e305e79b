"""Layer norm, RMS norm and softmax (reductions of a row feeding its output) get the row-norm
schedule (engine/codegen/norm_schedule.py): each row's reductions computed once, as vector
partial sums, then its output; they compute what torch computes, for one row (a decoder's
one-token step) and many, rows of any length (tails included)."""
import pytest
import torch
from torch import nn

from codegen_helpers import assert_close
from engine.codegen import compile_model
from engine.codegen._tvm import dlight, relax, s_tir
from engine.codegen.norm_schedule import schedule_row_norm
from engine.codegen.schedules import _extent, glue_rules


class Norms(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.scale = nn.Parameter(torch.rand(d) + 0.5)

    def forward(self, x):
        rms = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.scale
        return self.ln(x) + torch.softmax(rms, dim=-1)


def _layer_norm_func(shape):
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    g = relax.Var("g", relax.TensorType(shape[-1:], "float32"))
    b = relax.Var("b", relax.TensorType(shape[-1:], "float32"))
    with bb.function("main", [x, g, b]):
        with bb.dataflow():
            o = bb.emit_output(bb.emit(relax.op.nn.layer_norm(x, g, b, axes=[-1])))
        bb.emit_func_output(o)
    mod = relax.transform.LegalizeOps()(bb.get())
    return next(f for gv, f in mod.functions_items() if gv.name_hint != "main")


@pytest.mark.parametrize("shape", [(1, 1, 768), (1, 128, 768), (4, 100)])
def test_layer_norm_reduces_each_row_once(shape):
    sch = s_tir.Schedule(_layer_norm_func(shape))
    s = schedule_row_norm(sch, dlight.analysis.normalize_prim_func(sch), 16, _extent, 2048)
    assert s is not None
    text = s.mod["main"].script()
    assert "rf" in text and "T.vectorized" in text
    # the reductions sit under the row loop only: no loop over the row's elements encloses them
    head = text[:text.index("_sum")]
    assert head.count("for ") <= 2 + len(shape)


def test_row_norm_is_tried_before_dlight_reductions():
    names = [type(r).__name__ for r in glue_rules()]
    assert names.index("RowReduce") < names.index("RowNorm") < names.index("_Guard")


@pytest.mark.parametrize("shape", [(1, 1, 768), (1, 37, 100), (1, 1, 100), (2, 5, 19),
                                   (1, 12, 129)])
def test_norms_match_torch(shape):
    torch.manual_seed(0)
    model = Norms(shape[-1]).eval()
    x = torch.randn(*shape)
    cm = compile_model(model, (x,), None, "host")
    with torch.no_grad():
        assert_close(cm.run(x)[0], model(x), 1e-5)
