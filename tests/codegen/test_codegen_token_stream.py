"""A transformer's residual stream stays in the layout its linears run in (features as channels,
tokens as pixels; engine/codegen/token_linear.py): residual adds fuse into the linears' kernels,
layer norms run as column norms over the channels (engine/codegen/column_norm.py), and only the
attention's heads and the model's output are transposed. Checked against torch, with the
transposes the rewritten graph keeps counted."""
import numpy as np
import pytest
import torch
from torch import nn

from codegen_helpers import assert_close
import engine
from engine.codegen import compile_model
from engine.codegen._tvm import relax, tvm
from engine.codegen.column_norm import column_layer_norm_kernel
from engine.codegen.targets import as_target, tvm_target, vector_isa


def _isa():
    return vector_isa(tvm_target(as_target("host")))


@pytest.mark.parametrize("c,n", [(768, 128), (64, 48), (96, 100), (32, 7), (5, 1), (3, 37)])
def test_column_layer_norm_matches_torch(c, n):
    """Chunks of two vectors, a last chunk with an overlapping vector, fewer tokens than a
    vector; inputs with a large mean (the two-pass variance)."""
    tgt = tvm_target(as_target("host"))
    k = column_layer_norm_kernel(c, n, 1e-5, vector_isa(tgt))
    f = tvm.compile(tvm.IRModule({"main": k.prim_func().with_attr("global_symbol", "main")}),
                    tgt)
    rng = np.random.default_rng(c * 1000 + n)
    x = (rng.standard_normal((1, c, 1, n)) * 3 + 40).astype(np.float32)
    g, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    y = tvm.runtime.tensor(np.full_like(x, np.nan))
    f["main"](*[tvm.runtime.tensor(a) for a in (x, g, b)], y)
    ref = torch.nn.functional.layer_norm(torch.from_numpy(x[0, :, 0, :].T.copy()), (c,),
                                         torch.from_numpy(g), torch.from_numpy(b), 1e-5)
    assert_close(torch.from_numpy(y.numpy()[0, :, 0, :].T.copy()), ref, 2e-5)


def test_column_layer_norm_refuses_an_empty_tensor():
    with pytest.raises(ValueError, match="empty"):
        column_layer_norm_kernel(0, 16, 1e-5, _isa())


class Block(nn.Module):
    """A post-norm transformer layer without attention (BERT's shape): linear + residual ->
    layer norm -> linear -> GELU -> linear + residual -> layer norm, twice."""

    def __init__(self, d=32, f=64, layers=2):
        super().__init__()
        self.o = nn.ModuleList(nn.Linear(d, d) for _ in range(layers))
        self.a = nn.ModuleList(nn.Linear(d, f) for _ in range(layers))
        self.b = nn.ModuleList(nn.Linear(f, d) for _ in range(layers))
        self.n1 = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))
        self.n2 = nn.ModuleList(nn.LayerNorm(d) for _ in range(layers))

    def forward(self, x):
        for o, a, b, n1, n2 in zip(self.o, self.a, self.b, self.n1, self.n2):
            x = n1(o(x) * 0.5 + x)
            x = n2(b(torch.nn.functional.gelu(a(x))) + x)
        return x


def _rewritten(model, x, plan=None):
    from engine.codegen.compile import _LayerChooser, _import
    from engine.codegen.rewrite import find_layers, rewrite_layers
    mod, params, names, _ = _import(model, (x,))
    chooser = _LayerChooser(plan, "tir", "plan", _isa())
    mod, done = rewrite_layers(mod, find_layers(mod["main"], params, names), chooser, _isa())
    return relax.transform.DeadCodeElimination()(mod)["main"].script(), done


@pytest.mark.parametrize("tokens", [32, 24])
def test_residual_stream_stays_in_the_linears_layout(tokens):
    torch.manual_seed(0)
    model, x = Block().eval(), torch.randn(1, tokens, 32)
    for p in model.parameters():          # layer norms with non-trivial affine parameters
        if p.dim() == 1:
            p.data.uniform_(-1, 1)
    opt = engine.optimize(model, (x,), sparsity=0.7, measure=False, capture=False,
                          progress=False)
    with torch.no_grad():
        ref = opt.pruned_model(x)
    assert_close(compile_model(opt.pruned_model, (x,), opt.plan, "host").run(x)[0], ref, 2e-5)
    text, done = _rewritten(opt.pruned_model, x, opt.plan)
    fused = {m.layer: m.fused for m, _ in done}
    # o's residual is x itself, not o(x) * 0.5 + x: o's chain ends at the scale
    assert all("residual" in fused[f"b.{i}"] for i in range(2)), fused
    if tokens % 16 == 0:
        # the 3 layer norms a linear reads as column norms (the last, the output, over rows),
        # x transposed in once and the last linear's result out once
        assert text.count("tir_column_layer_norm_32x32_eps1e_05") == 3 and text.count("R.nn.layer_norm") == 1
        assert text.count("permute_dims") == 2
    else:
        # misaligned rows: layer norm stays over rows, each transposed around (module docs)
        assert "tir_column_layer_norm" not in text and text.count("R.nn.layer_norm") == 4
        assert text.count("permute_dims") > 2


def test_bert_layers_compile_with_no_transpose_between_them():
    """transformers' BERT (2 layers, 64 tokens, ids and mask): the artifact matches torch and
    each layer keeps only the attention's transposes."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(hidden_size=64, num_attention_heads=2,
                                  intermediate_size=128, num_hidden_layers=2,
                                  vocab_size=100, max_position_embeddings=64)
    model = transformers.BertModel(cfg).eval()
    ids = torch.randint(0, 100, (1, 64))
    mask = torch.ones(1, 64, dtype=torch.int64)
    mask[0, 50:] = 0
    opt = engine.optimize(model, (ids,), example_kwargs={"attention_mask": mask}, sparsity=0.8,
                          block=(4, 1), measure=False, progress=False)
    cm = compile_model(opt.pruned_model, (ids, mask), opt.plan, "host")
    with torch.no_grad():
        ref = opt.pruned_model(ids, attention_mask=mask).last_hidden_state
    assert_close(cm.run(ids, mask)[0], ref, 2e-5)


class GeluFFN(nn.Module):
    def __init__(self, approximate):
        super().__init__()
        self.a, self.b, self.approximate = nn.Linear(32, 64), nn.Linear(64, 32), approximate

    def forward(self, x):
        h = self.a(x).view(1, x.shape[1], 64)            # the view BERT's intermediate makes
        return self.b(torch.nn.functional.gelu(h, approximate=self.approximate) * 4)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("backends", ["tir", "plan"])
def test_gelu_runs_in_the_linear_kernels_epilogue(approximate, backends):
    """GELU (erf) and GELU-tanh after a linear over tokens, through the view back to (1, N, O):
    the generated kernel (T.erf / T.exp) or the C++ kernel's epilogue (SPE_ACT_GELU*), against
    torch; inputs scaled so the GELU sees its negative tail."""
    torch.manual_seed(0)
    model, x = GeluFFN(approximate).eval(), torch.randn(1, 32, 32) * 3
    opt = engine.optimize(model, (x,), sparsity=0.7, measure=False, capture=False,
                          progress=False)
    cm = compile_model(opt.pruned_model, (x,), opt.plan, "host", backends=backends)
    with torch.no_grad():
        ref = opt.pruned_model(x)
    assert_close(cm.run(x)[0], ref, 2e-5)
    act = "gelu" if approximate == "none" else "gelu_tanh"
    a = next(l for l in cm.layers if l.layer == "a")
    assert act in a.fused, a.fused
    if backends == "plan":
        assert a.kernel == "spe.v1.sparse_conv2d"


@pytest.mark.parametrize("layers", [2, 3])
def test_int8_linears_run_in_the_token_stream(layers):
    """An int8 model's linears over tokens (QLinear, float in and out) compile as the same layer
    on (1, K, 1, N) (spe.v1.qconv2d_float: engine/codegen/token_int8.py) inside the stream: the
    number of transposes does not grow with the layers, the layer norms between them are column
    norms, and the artifact computes what the host's int8 model does (the same kernels and
    conversions; only float rounding of the ops between them differs)."""
    from engine.codegen.native_lowering import import_lowered
    from engine.codegen.token_int8 import qlinear_matches, stream_qlinears
    from engine.quant import compile_int8
    torch.manual_seed(0)
    model, x = Block(layers=layers).eval(), torch.randn(1, 32, 32)
    g = torch.Generator().manual_seed(1)
    opt = engine.optimize(model, (x,), block=(4, 4), sparsity=0.5, bits=8, measure=False,
                          progress=False, guard="off",
                          calibration=[torch.randn(1, 32, 32, generator=g) for _ in range(3)])
    bits = [c.bits for c in opt.plan]
    assert bits.count(8) == 3 * layers - 1, bits          # the last linear: the classifier, fp32
    imported = import_lowered(opt.runtime, (x,))
    # the float epilogues found: GELU after each a, the residual add after each b (but the
    # last, fp32), nothing after o (its result is scaled first)
    fused = [m.fused for m, _ in qlinear_matches(imported["main"])]
    assert fused == [[], ["gelu"], ["residual"]] * (layers - 1) + [[], ["gelu"]], fused
    mod = stream_qlinears(imported, _isa())
    text = relax.transform.DeadCodeElimination()(mod)["main"].script()
    assert text.count('"spe.v1.qconv2d_float"') == 3 * layers - 1 and "spe.v1.qlinear" not in text
    assert text.count("tir_column_layer_norm_32x32_eps1e_05") == 2 * layers - 1
    # x into the stream; what the fp32 last linear reads and gives back (its own transposes)
    assert text.count("permute_dims") == 5, text
    cm = compile_int8(opt.runtime, (x,), "host")
    with torch.no_grad():
        host, ref = opt(x), opt.pruned_model(x)
    got = torch.from_numpy(np.asarray(cm.run(x)[0]))
    assert float((got - host).abs().max()) <= 1e-4 * float(host.abs().max())
    assert float((got - ref).norm() / ref.norm()) < 0.1
