"""Squeeze-excitation glue: global pools reduce in vector partial sums (RowReduce), the gate is
computed once per channel instead of once per element it scales, and float32 exp lowers to a
polynomial (fast_math) that matches torch's exp / sigmoid / SiLU."""
import numpy as np
import pytest
import torch
from torch import nn

from codegen_helpers import assert_close
from engine.codegen import compile_model
from engine.codegen._tvm import tirx, tvm
from engine.codegen.compile import _LayerChooser, _bind_params, _import
from engine.codegen.fast_math import register_fast_exp
from engine.codegen.rewrite import find_layers, rewrite_layers
from engine.codegen.pipeline import run_until
from engine.codegen.schedules import RowReduce, _lanes
from engine.codegen.targets import as_target, tvm_target, vector_isa
from engine.zoo.blocks import SqueezeExcitation


class Pools(nn.Module):
    """Reductions over trailing contiguous runs of awkward lengths."""

    def forward(self, a, b, c, d):
        return (a.mean((2, 3), keepdim=True),   # 7x7 = 49: three vectors and a tail of 1
                b.mean((2, 3)),                 # 112x112: long run, two vectors per step
                c.sum(-1),                      # 37: a tail of 5 past two vectors
                d.mean((2, 3)))                 # 1x1: too short for a vector


class Gates(nn.Module):
    """EfficientNet's SiLU / sigmoid SE and MobileNetV3's hard-sigmoid SE on odd shapes
    (10 x 13 scaled in rows, 1 x 1, 7 x 7 scaled as one run)."""

    def __init__(self):
        super().__init__()
        self.se = SqueezeExcitation(24, 8, nn.SiLU)
        self.hse = SqueezeExcitation(24, 8, nn.ReLU, nn.Hardsigmoid)
        self.se1 = SqueezeExcitation(24, 8, nn.SiLU)
        self.se2 = SqueezeExcitation(24, 8, nn.SiLU)

    def forward(self, x, y, z):
        return self.hse(self.se(nn.functional.silu(x))), self.se1(y), self.se2(z)


def _pool_inputs():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, 20, 7, 7, generator=g) + 0.5,
            torch.randn(1, 8, 112, 112, generator=g) + 1,
            torch.randn(3, 5, 37, generator=g), torch.randn(1, 24, 1, 1, generator=g))


def _scheduled(model, inputs) -> dict:
    """The glue PrimFuncs' scheduled text, convs replaced by generated kernels first (as
    compile_model does)."""
    tgt = tvm_target(as_target("host"))
    mod, params, names, _ = _import(model, inputs)
    chooser = _LayerChooser(None, "tir", "tir", vector_isa(tgt))
    mod, _ = rewrite_layers(mod, find_layers(mod["main"], params, names), chooser)
    mod = run_until(_bind_params(mod, params), tgt, "glue_schedules")
    return {gv.name_hint: f.script() for gv, f in mod.functions_items()
            if isinstance(f, tirx.PrimFunc) and not gv.name_hint.startswith("engine_")}


def test_pools_match_torch():
    xs = _pool_inputs()
    got = compile_model(Pools(), xs, None, "host").run(*xs)
    ref = Pools()(*[x.double() for x in xs])
    assert len(got) == len(ref)
    for i, (g, r) in enumerate(zip(got, ref)):
        assert_close(g, r.float(), 1e-5, what=f"output {i}")


def test_row_reduce_vectorises_every_long_run():
    """The pipeline schedules each pool with RowReduce (vector partial sums, the rfactor
    buffer); the 1x1 mean is left to the other rules."""
    funcs = _scheduled(Pools(), _pool_inputs())
    reductions = {n: s for n, s in funcs.items() if "T.init()" in s or "_rf" in s}
    assert len(reductions) == 4, sorted(funcs)
    by_run = {n: s for n, s in reductions.items() if "T.int64(24), T.int64(1), T.int64(1)" not in s}
    assert len(by_run) == 3
    for name, text in by_run.items():
        assert "_rf_update" in text and "T.vectorized" in text, name
    short = (set(reductions) - set(by_run)).pop()
    assert "_rf" not in reductions[short]


def test_row_reduce_declines_what_it_cannot_vectorise():
    tgt = tvm_target(as_target("host"))
    lanes = _lanes(tgt)
    for w, applies in ((lanes - 1, False), (lanes + 1, True)):
        x = torch.randn(2, 3, w)
        mod, _, _, _ = _import(_Sum(), (x,))
        mod = run_until(mod, tgt, "dead_code")
        (f,) = [f for _, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)]
        with tgt:
            assert (RowReduce().apply(f, tgt, False) is not None) == applies, w


class _Sum(nn.Module):
    def forward(self, x):
        return x.sum(-1)


def test_se_gates_match_torch_and_are_computed_once():
    g = torch.Generator().manual_seed(1)
    xs = (torch.randn(1, 24, 10, 13, generator=g) * 2, torch.randn(1, 24, 1, 1, generator=g),
          torch.randn(1, 24, 7, 7, generator=g))
    model = Gates().eval()
    got = compile_model(model, xs, None, "host").run(*xs)
    with torch.no_grad():
        ref = model(*xs)
    for i, (a, r) in enumerate(zip(got, ref)):
        assert_close(a, r, 1e-5, what=f"output {i}")
    texts = _scheduled(model, xs).values()
    assert any("T.sigmoid" in t for t in texts) and any("T.float32(6.0)" in t for t in texts)
    # x[0, c, h, w] * gate[0, c, 0, 0]: the gate read, not computed, per element
    scaled = [ln for t in texts for ln in t.splitlines()
              if ln.strip().startswith("T_multiply_intermediate[")
              and "v1, v2] =" in ln and "T.int64(0), T.int64(0)]" in ln]
    assert len(scaled) >= 3
    for ln in scaled:
        assert "T.sigmoid" not in ln and "T.float32(6.0)" not in ln, ln
    # 7 x 7 scaled as one run of 49: three full vectors and a partitioned tail
    (gate7,) = [t for t in texts if "T.int64(7), T.int64(7)), \"float32\")" in t
                and "T_multiply" in t and "T.sigmoid" in t]
    assert f"T.vectorized(T.int64({_lanes(tvm_target(as_target('host')))}))" in gate7
    assert "_partition" in gate7


def _elementwise(fn, x: np.ndarray) -> np.ndarray:
    """fn(PrimExpr) over x in a compiled loop, and the LLVM IR it compiled to."""
    register_fast_exp()
    tgt = tvm_target(as_target("host"))
    n = x.size
    a = tirx.decl_buffer((n,), "float32", "A")
    b = tirx.decl_buffer((n,), "float32", "B")
    i = tirx.Var("i", "int32")
    store = tirx.BufferStore(b, fn(tirx.BufferLoad(a, [i])), [i])
    body = tirx.For(i, 0, n, tirx.ForKind.SERIAL, store)
    func = tirx.PrimFunc([a, b], body).with_attr("global_symbol", "f")
    with tgt:
        exe = tvm.compile(tvm.IRModule({"f": func}), target=tgt)
    y = tvm.runtime.tensor(np.zeros(n, np.float32))
    exe.mod["f"](tvm.runtime.tensor(x), y)
    return y.numpy(), exe.mod.inspect_source("ll")


_SPECIAL = np.array([0.0, -0.0, np.nan, np.inf, -np.inf, -87.33, -87.34, -88.5, 88.72, 88.73,
                     -104.0, 1e-8, -1e-8], np.float32)
_MIN_NORMAL = float(np.finfo(np.float32).tiny)


@pytest.mark.parametrize("op", ["exp", "sigmoid", "silu"])
def test_fast_exp_matches_torch(op):
    """Relative 1e-6 wherever torch's result is a normal float on [-90, 90]; NaN, +-inf, -0.0
    and the overflow / underflow edges as torch (subnormal results within one subnormal step,
    or flushed to 0 for exp); and no libm call left."""
    one = tirx.const(1.0, "float32")
    fns = {"exp": tirx.exp, "sigmoid": tirx.sigmoid,
           "silu": lambda v: v / (one + tirx.exp(tirx.const(0.0, "float32") - v))}
    ref_fn = {"exp": torch.exp, "sigmoid": torch.sigmoid, "silu": nn.functional.silu}[op]
    x = np.concatenate([np.linspace(-90, 90, 200_001, dtype=np.float32), _SPECIAL])
    got, ll = _elementwise(fns[op], x)
    assert "expf" not in ll and "llvm.exp" not in ll
    ref = ref_fn(torch.from_numpy(x)).numpy()
    normal = np.isfinite(ref) & (np.abs(ref) >= _MIN_NORMAL)
    rel = np.abs(got[normal].astype(np.float64) - ref[normal]) / np.abs(ref[normal])
    assert rel.max() <= 1e-6, (op, x[normal][rel.argmax()])
    rest = ~normal
    assert np.array_equal(np.isnan(got[rest]), np.isnan(ref[rest]))
    edge = rest & ~np.isnan(ref)      # +-inf, 0, subnormal
    g, r = got[edge], ref[edge]
    near = np.isfinite(r) & (np.abs(g - np.where(np.isfinite(r), r, 0)) <= 1.5e-45)
    flushed = (op == "exp") & (g == 0) & (np.abs(r) < _MIN_NORMAL)
    assert np.all((g == r) | (near & (op != "exp")) | flushed), x[edge][~((g == r) | flushed)]
    assert np.array_equal(np.signbit(got[x == 0]), np.signbit(ref[x == 0]))
