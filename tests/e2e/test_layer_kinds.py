"""Every weight layer a user has is listed (P8 part C): layers the engine prunes in the plan's
choices (LSTM / GRU as their decomposed linears, tests/e2e/test_recurrent.py), every other one
(embeddings, MultiheadAttention, ConvTranspose2d, Conv3d, ...) in plan.other_layers with its
kind, weight shape and why it stays dense; the
model's sparsity is counted over all of them. transformers' Conv1D (GPT-2) is pruned and run as
the linear of its transposed weight.

References are independent of the engine's kernels: the user's own model (layers left dense
must keep its weights), torch's layers with the plan's masks multiplied in (opt.pruned_model,
itself checked against the user's weights), and a count of zeroed weights over every weight
parameter of the model."""
import pytest
import torch
from torch import nn

import engine

T = pytest.importorskip("transformers")
from transformers.pytorch_utils import Conv1D  # noqa: E402

RTOL = 1e-4


def _weights(model: nn.Module) -> dict:
    """id -> (module name, parameter) of every weight matrix / kernel (2+ dims), each once."""
    out = {}
    for name, mod in model.named_modules():
        for _, p in mod.named_parameters(recurse=False):
            if p.dim() >= 2 and id(p) not in out:
                out[id(p)] = (name, p)
    return out


def _weight_layers(model: nn.Module) -> set:
    return {name for name, _ in _weights(model).values()} | {
        n for n, m in model.named_modules()
        if any(p.dim() >= 2 for p in m.parameters(recurse=False))}


def _check_listing(opt, model: nn.Module, other_kinds: dict) -> None:
    """Every weight layer is in the plan or in plan.other_layers, with kind, shape and reason;
    the table shows them; opt.sparsity is the zeroed fraction of all weight parameters."""
    other = {o["layer"]: o for o in opt.plan.other_layers}
    user_layer = {sub: name for name, d in opt.plan.meta.get("decomposed", {}).items()
                  for sub in d["layers"]}     # a ConvTranspose2d's phase convs -> the layer
    chosen = {user_layer.get(c.layer, c.layer) for c in opt.plan}
    assert chosen.isdisjoint(other)
    # the engine's copy names recurrent layers' weights by their decomposed linears and a
    # ConvTranspose2d's by its phase convs: the plan's own names there
    assert {c.layer for c in opt.plan} | set(other) == _weight_layers(opt.pruned_model)
    for name, kind in other_kinds.items():
        o = other[name]
        assert o["kind"] == kind and o["reason"], o
        assert tuple(o["weight_shape"]) == tuple(
            next(p for p in model.get_submodule(name).parameters(recurse=False)
                 if p.dim() >= 2).shape)
    table = opt.plan.table()
    assert all(n in table for n in other) and ("other weight layer" in table) == bool(other)
    pruned = _weights(opt.pruned_model)
    zeros = sum(int((p == 0).sum()) for _, p in pruned.values())
    total = sum(p.numel() for _, p in pruned.values())
    assert opt.sparsity == pytest.approx(zeros / total, abs=1e-6)
    # the layers left dense keep the user's weights exactly
    for name in other:
        for pn, p in model.get_submodule(name).named_parameters(recurse=False):
            assert torch.equal(p, opt.pruned_model.get_submodule(name).get_parameter(pn)), name


def _close(a, b) -> None:
    assert torch.allclose(a, b, rtol=RTOL, atol=RTOL * float(b.abs().max())), \
        float((a - b).abs().max())


def _save_load(opt, x, tmp_path) -> None:
    loaded = engine.load(opt.save(tmp_path / "art"))
    _close(torch.as_tensor(loaded(x)), opt.pruned_model(x))


class Recurrent(nn.Module):
    """Embedding + LSTM + GRU + MultiheadAttention + Linear (float input: the embedding table
    is read as a projection, so the model takes a float tensor)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 32)
        self.lstm = nn.LSTM(32, 32, batch_first=True)
        self.gru = nn.GRU(32, 32, batch_first=True)
        self.mha = nn.MultiheadAttention(32, 4, batch_first=True)
        self.fc = nn.Linear(32, 64)
        self.head = nn.Linear(64, 8)

    def forward(self, x):
        h = x @ self.emb.weight[:32]
        h, _ = self.lstm(h)
        h, _ = self.gru(h)
        h, _ = self.mha(h, h, h, need_weights=False)
        return self.head(torch.relu(self.fc(h)))


def test_recurrent_attention_embedding_listed_with_reasons(tmp_path):
    torch.manual_seed(0)
    model, x = Recurrent().eval(), torch.randn(1, 8, 32)
    opt = engine.optimize(model, (x,), measure=False, progress=False)
    _check_listing(opt, model, {"emb": "Embedding", "mha": "MultiheadAttention",
                                "mha.out_proj": "NonDynamicallyQuantizableLinear"})
    other = {o["layer"]: o for o in opt.plan.other_layers}
    assert "embedding" in other["emb"]["reason"]
    assert "output projection" in other["mha.out_proj"]["reason"]
    rnn = [f"{m}.l0.{w}" for m in ("lstm", "gru") for w in ("ih", "hh")]
    assert {c.layer for c in opt.plan.pruned} == {"fc", "head", *rnn}
    assert 0.8 * 0.5 < opt.sparsity < 0.8        # embedding and attention left dense
    _close(opt(x), opt.pruned_model(x))
    _save_load(opt, x, tmp_path)                 # attention compiled dense


def test_recurrent_excluded_listed_with_reason():
    """exclude= keeps a recurrent layer torch's own module, listed with why."""
    torch.manual_seed(0)
    model, x = Recurrent().eval(), torch.randn(1, 8, 32)
    opt = engine.optimize(model, (x,), measure=False, progress=False, exclude=["lstm"])
    _check_listing(opt, model, {"lstm": "LSTM"})
    other = {o["layer"]: o for o in opt.plan.other_layers}
    assert "excluded by the user" in other["lstm"]["reason"]
    assert set(other["lstm"]["weights"]) == {"weight_ih_l0", "weight_hh_l0"}
    assert type(opt.pruned_model.lstm) is nn.LSTM
    assert {"gru.l0.ih", "gru.l0.hh"} <= {c.layer for c in opt.plan.pruned}
    _close(opt(x), opt.pruned_model(x))


class Audio(nn.Module):
    """Conv1d stem, strided Conv1d, depthwise Conv1d, dilated 'same' Conv1d with reflect
    padding, pointwise Conv1d, then a Linear head."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv1d(8, 32, 5, padding=2)
        self.down = nn.Conv1d(32, 32, 3, stride=2, padding=1)
        self.dw = nn.Conv1d(32, 32, 3, padding=1, groups=32)
        self.dil = nn.Conv1d(32, 16, 3, dilation=2, padding="same", padding_mode="reflect")
        self.pw = nn.Conv1d(16, 16, 1)
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        h = torch.relu(self.down(torch.relu(self.stem(x))))
        h = self.pw(torch.relu(self.dil(torch.relu(self.dw(h)))))
        return self.fc(h.transpose(1, 2))


def test_conv1d_pruned_as_conv2d_and_saved(tmp_path):
    """nn.Conv1d runs as the Conv2d of kernel (1, K) on (N, C, 1, L): pruned (4x1 blocks over
    output channels), depthwise on the dense kernel, the engine's modules keep the Conv1d's
    weight shape and attributes; compiled with the pruned ones on sparse kernels."""
    torch.manual_seed(0)
    model, x = Audio().eval(), torch.randn(1, 8, 64)
    opt = engine.optimize(model, (x,), measure=False, progress=False)
    _check_listing(opt, model, {})
    assert [c.layer for c in opt.plan] == ["stem", "down", "dw", "dil", "pw", "fc"]
    assert {c.layer for c in opt.plan.pruned} == {"stem", "down", "dil", "pw", "fc"}
    assert "groups=32" in opt.plan["dw"].reason
    info = {l.name: l for l in opt.layers}
    assert info["down"].weight_shape == (32, 32, 1, 3) and info["down"].stride == (1, 2)
    assert info["down"].in_shape == (1, 32, 1, 64) and info["down"].out_shape == (1, 32, 1, 32)
    for name in ("stem", "down", "dil", "pw"):
        user, ref = model.get_submodule(name), opt.pruned_model.get_submodule(name)
        assert torch.equal(ref.weight, user.weight * (ref.weight != 0))
        z = (ref.weight == 0).reshape(-1, 4, ref.weight[0].numel())     # 4x1 over outputs
        assert bool((z.all(1) | ~z.any(1)).all()), name
    ran: dict = {}
    for m in opt.runtime.modules():      # pre-order: the Conv1dView before the conv it wraps
        if getattr(m, "layer", ""):
            ran.setdefault(m.layer, m)
    assert all(type(ran[n]).__name__ == "Conv1dView" for n in ("stem", "down", "dw", "pw"))
    for name in ("stem", "dil"):
        mod, user = ran[name], model.get_submodule(name)
        assert torch.equal(mod.weight, opt.pruned_model.get_submodule(name).weight)
        assert (mod.kernel_size, mod.stride, mod.padding, mod.dilation, mod.padding_mode) == \
            (user.kernel_size, user.stride, user.padding, user.dilation, user.padding_mode)
    _close(opt(x), opt.pruned_model(x))
    kinds = {lk.layer: lk for lk in opt.compile().layers}
    assert all(kinds[n].stats.get("pruned") for n in ("stem", "down", "pw")), kinds
    _save_load(opt, x, tmp_path)


class UNetish(nn.Module):
    """Down conv, ConvTranspose2d up (output_padding), skip concat, conv; a Conv3d side branch;
    a grouped ConvTranspose2d (not decomposed)."""

    def __init__(self):
        super().__init__()
        self.down = nn.Conv2d(8, 32, 3, 2, 1)
        self.up = nn.ConvTranspose2d(32, 16, 3, 2, 1, output_padding=1)
        self.out = nn.Conv2d(24, 8, 3, 1, 1)
        self.vol = nn.Conv3d(1, 2, 3, padding=1)
        self.gup = nn.ConvTranspose2d(32, 8, 2, 2, groups=2)

    def forward(self, x):
        d = torch.relu(self.down(x))
        u = torch.relu(self.up(d))
        v = self.vol(x[:, :1].unsqueeze(1)).mean(1)
        return self.out(torch.cat([u, x], 1)) + v + self.gup(d)


def test_conv_transpose_and_conv3d_listed():
    torch.manual_seed(0)
    model, x = UNetish().eval(), torch.randn(1, 8, 16, 16)
    opt = engine.optimize(model, (x,), measure=False, progress=False)
    _check_listing(opt, model, {"gup": "ConvTranspose2d", "vol": "Conv3d"})
    other = {o["layer"]: o for o in opt.plan.other_layers}
    assert "groups=2" in other["gup"]["reason"] and "Conv3d" in other["vol"]["reason"]
    # the 3x3 stride-2 up conv: four phase convs (2x2, 2x1, 1x2, 1x1 sub-kernels), pruned
    phases = {"up.p2x2", "up.p2x1", "up.p1x2", "up.p1x1"}
    assert set(opt.plan.meta["decomposed"]["up"]["layers"]) == phases
    assert {c.layer for c in opt.plan.pruned} == {"down", "out"} | phases
    _close(opt(x), opt.pruned_model(x))


def _gpt2():
    cfg = T.GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=100, n_positions=32,
                       attn_implementation="eager")
    return T.GPT2Model(cfg)


class Embeds(nn.Module):
    """GPT-2 called with float inputs_embeds (no cache)."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, e):
        return self.m(inputs_embeds=e, use_cache=False).last_hidden_state


def _block_rows_over_outputs(w_in_out: torch.Tensor, rows: int) -> bool:
    """A (in, out) Conv1D weight's zeros come in blocks of `rows` consecutive outputs."""
    z = (w_in_out.t() == 0).reshape(-1, rows, w_in_out.shape[0])
    return bool((z.all(1) | ~z.any(1)).all())


def test_gpt2_conv1d_pruned_as_transposed_linear():
    torch.manual_seed(0)
    model, x = Embeds(_gpt2()).eval(), torch.randn(1, 16, 64)
    opt = engine.optimize(model, (x,), measure=False, progress=False)
    conv1d = [n for n, m in model.named_modules() if isinstance(m, Conv1D)]
    assert len(conv1d) == 8 and [c.layer for c in opt.plan] == conv1d
    assert all(c.pruned and c.backend == "native" for c in opt.plan)
    _check_listing(opt, model, {"m.wte": "Embedding", "m.wpe": "Embedding"})
    for name in conv1d:
        user, ref = model.get_submodule(name), opt.pruned_model.get_submodule(name)
        assert ref.weight.shape == user.weight.shape
        assert torch.equal(ref.weight, user.weight * (ref.weight != 0))
        assert _block_rows_over_outputs(ref.weight, 4), name     # 4x1 over output channels
        mod = opt.runtime.get_submodule(name)          # what GPT-2's forward reads of Conv1D
        assert (mod.nf, mod.nx) == (user.nf, user.nx)
        assert torch.equal(mod.weight, ref.weight) and torch.equal(mod.bias, ref.bias)
    _close(opt(x), opt.pruned_model(x))


def test_tied_linear_left_dense():
    """A head sharing the embedding's weight (GPT-2's lm_head) is not pruned: it would prune
    the embedding too; the shared weight counts once."""
    torch.manual_seed(0)

    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(48, 32)
            self.fc = nn.Linear(32, 32)
            self.head = nn.Linear(32, 48, bias=False)
            self.head.weight = self.emb.weight

        def forward(self, x):
            return self.head(torch.relu(self.fc(x + self.emb.weight[:8])))

    model, x = Tied().eval(), torch.randn(1, 8, 32)
    opt = engine.optimize(model, (x,), measure=False, progress=False)
    assert "shared" in opt.plan["head"].reason and not opt.plan["head"].pruned
    assert opt.plan["fc"].pruned
    _check_listing(opt, model, {"emb": "Embedding"})
    assert opt.plan.other_layers[0]["params"] == 0
    assert torch.equal(opt.pruned_model.emb.weight, model.emb.weight)
    _close(opt(x), opt.pruned_model(x))


class Conv1DNet(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.fc = Conv1D(hidden, d)
        self.proj = Conv1D(d, hidden)

    def forward(self, x):
        return self.proj(torch.relu(self.fc(x))) + x


def test_conv1d_measured_kept_only_where_faster_and_saved(tmp_path):
    torch.manual_seed(0)
    model, x = Conv1DNet(256, 1024).eval(), torch.randn(1, 32, 256)
    opt = engine.optimize(model, (x,), sparsity=0.9, min_speedup=1.1, guard="off",
                          progress=False)
    assert [c.layer for c in opt.plan] == ["fc", "proj"]
    for c in opt.plan:
        assert c.latency_us and c.dense_latency_us, c
        if c.pruned:
            assert c.speedup >= 1.1 and c.backend in ("native", "tir"), c
        else:
            assert "kept dense" in c.reason or "torch" in c.reason, c
    _close(opt(x), opt.pruned_model(x))
    for name in ("fc", "proj"):
        w = opt.pruned_model.get_submodule(name).weight
        assert float((w == 0).float().mean()) == pytest.approx(
            opt.plan[name].sparsity, abs=1e-6)
    _save_load(opt, x, tmp_path)
