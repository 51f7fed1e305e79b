"""Activation x activation matmuls (attention) get the register-tiled schedule
(engine/codegen/matmul_schedule.py), and compute what torch computes; linears over many rows
compile as 1x1 convs over them (engine/codegen/token_linear.py) on every backend."""
import copy

import pytest
import torch
from torch import nn

from codegen_helpers import assert_close
import engine
from engine.codegen import compile_model
from engine.codegen._tvm import relax, s_tir
from engine.codegen.matmul_schedule import schedule_matmul
from engine.codegen.schedules import _extent, glue_rules
from engine.codegen.token_linear import MIN_TOKENS

from engine.codegen._tvm import dlight


class Attention(nn.Module):
    """Scores and mixing of a 2-head attention, no weights: two activation matmuls."""

    def forward(self, q, k, v):
        s = torch.softmax(q @ k.transpose(-1, -2) * 0.125, dim=-1)
        return s @ v


def _matmul_func(sa, sb):
    bb = relax.BlockBuilder()
    a = relax.Var("a", relax.TensorType(sa, "float32"))
    b = relax.Var("b", relax.TensorType(sb, "float32"))
    with bb.function("main", [a, b]):
        with bb.dataflow():
            o = bb.emit_output(bb.emit(relax.op.matmul(a, b)))
        bb.emit_func_output(o)
    mod = relax.transform.LegalizeOps()(bb.get())
    return next(f for gv, f in mod.functions_items() if gv.name_hint != "main")


def _scheduled(func):
    sch = s_tir.Schedule(func)
    return schedule_matmul(sch, dlight.analysis.normalize_prim_func(sch), 16, _extent)


@pytest.mark.parametrize("sa,sb", [((1, 2, 32, 16), (1, 2, 16, 40)), ((3, 8, 5), (3, 5, 32)),
                                   ((12, 7), (7, 48))])
def test_matmul_rule_tiles_the_shapes_it_divides(sa, sb):
    s = _scheduled(_matmul_func(sa, sb))
    assert s is not None
    text = s.mod["main"].script()
    assert "local" in text and "T.vectorized" in text and "T.unroll" in text


@pytest.mark.parametrize("sa,sb", [((2, 5, 7), (2, 7, 9)),      # 9 columns: no vector tile
                                   ((4, 1), (1, 16))])          # k = 1: nothing to accumulate
def test_matmul_rule_leaves_what_it_cannot_tile(sa, sb):
    assert _scheduled(_matmul_func(sa, sb)) is None


def test_matmul_rule_is_tried_before_the_reductions():
    names = [type(r).__name__ for r in glue_rules()]
    assert names.index("Matmul") < names.index("RowReduce") < names.index("Window")


def test_attention_matmuls_match_torch():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 2, 48, 16, generator=g) for _ in range(3))
    cm = compile_model(Attention(), (q, k, v), None, "host")
    assert_close(cm.run(q, k, v)[0], Attention()(q, k, v), 1e-5)


class Tokens(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(32, 48), nn.Linear(48, 32), nn.Linear(32, 8)

    def forward(self, x):
        return self.c(self.b(torch.relu(self.a(x))) + x)


@pytest.fixture(scope="module")
def pruned():
    torch.manual_seed(0)
    m = Tokens().eval()
    x = torch.randn(1, 24, 32)
    opt = engine.optimize(m, (x,), sparsity=0.7, measure=False, capture=False, progress=False)
    return opt, x


@pytest.mark.parametrize("backend", ["tir", "native"])
def test_a_linear_over_many_rows_runs_as_a_conv_over_them(pruned, backend):
    opt, x = pruned
    plan = copy.deepcopy(opt.plan)
    for c in plan:
        c.backend = backend
    cm = compile_model(opt.pruned_model, (x,), plan, "host", backends="plan")
    with torch.no_grad():
        ref = opt.pruned_model(x)
    assert_close(cm.run(x)[0], ref, 1e-5)
    assert {l.op for l in cm.layers} == {"linear"} and len(cm.layers) == 3
    kernels = {l.kernel for l in cm.layers}
    if backend == "tir":
        assert all("spmm" in k for k in kernels), kernels     # the conv kernel, not the GEMV
    else:
        assert kernels == {"spe.v1.sparse_conv2d"}


def test_few_rows_keep_the_row_kernel_and_dense_layers_the_conv(pruned):
    opt, _ = pruned
    few = torch.randn(1, MIN_TOKENS - 1, 32)
    cm = compile_model(opt.pruned_model, (few,), opt.plan, "host")
    with torch.no_grad():
        ref = opt.pruned_model(few)
    assert_close(cm.run(few)[0], ref, 1e-5)
    assert all("gemv" in l.kernel for l in cm.layers)
    many = torch.randn(1, 3 * MIN_TOKENS, 32)
    dense = compile_model(opt.pruned_model, (many,), None, "host")      # every layer dense
    with torch.no_grad():
        ref = opt.pruned_model(many)
    assert_close(dense.run(many)[0], ref, 1e-5)
    assert all("spmm" in l.kernel and l.kind == "dense" for l in dense.layers)


class FFN(nn.Module):
    """linear -> GELU -> linear, then a residual and tanh before a third linear."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(32, 64), nn.Linear(64, 32), nn.Linear(32, 16)

    def forward(self, x):
        y = self.b(torch.nn.functional.gelu(self.a(x))) + x
        return self.c(torch.tanh(y))


def test_token_linears_chained_through_elementwise_ops_skip_the_transposes():
    from engine.codegen.compile import _LayerChooser, _import
    from engine.codegen.rewrite import find_layers, rewrite_layers
    from engine.codegen.targets import as_target, tvm_target, vector_isa
    torch.manual_seed(0)
    m, x = FFN().eval(), torch.randn(1, 24, 32)
    opt = engine.optimize(m, (x,), sparsity=0.7, measure=False, capture=False, progress=False)
    with torch.no_grad():
        ref = opt.pruned_model(x)
    assert_close(compile_model(opt.pruned_model, (x,), opt.plan, "host").run(x)[0], ref, 1e-5)
    mod, params, names, _ = _import(opt.pruned_model, (x,))
    chooser = _LayerChooser(opt.plan, "tir", "plan", vector_isa(tvm_target(as_target("host"))))
    mod, done = rewrite_layers(mod, find_layers(mod["main"], params, names), chooser)
    text = relax.transform.DeadCodeElimination()(mod)["main"].script()
    assert len(done) == 3 and all(rep.tokens == 24 for _, rep in done)
    # a's GELU is its kernel's epilogue and b reads a's result in the conv layout; b's
    # residual (x) is the input a already read transposed, fused into b's kernel; c reads tanh
    # of b's result in that layout. Two transposes are left of the 6 without it: x into the
    # layout, c's result out of it
    fused = {m.layer: m.fused for m, _ in done}
    assert fused["a"] == ["bias", "gelu"] and "R.nn.gelu" not in text
    assert "residual" in fused["b"]
    tanh = next(l for l in text.splitlines() if "R.tanh" in l)
    assert "(1, 32, 1, 24)" in tanh
    assert text.count("permute_dims") == 2
