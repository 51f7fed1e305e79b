"""nn.LSTM / nn.GRU pruned (engine.graph.recurrent): each input matrix (weight_ih_l{k}) and
recurrent matrix (weight_hh_l{k}) is a layer of its own ("rnn.l{k}.ih" / "rnn.l{k}.hh"),
block-pruned, run on the engine's kernels, compiled into artifacts.

The reference is torch's own nn.LSTM / nn.GRU: a copy of the user's model whose recurrent
weights are replaced by the pruned model's matrices under torch's parameter names, run by
torch's fused recurrent kernel (never the engine's decomposition)."""
import copy
import json

import pytest
import torch
from torch import nn

import engine

ATOL = 2e-5


class TextClassifier(nn.Module):
    """Embedding -> recurrent layer -> Linear on the last step (int64 token ids in)."""

    def __init__(self, rnn: nn.RNNBase, vocab: int = 50, classes: int = 5):
        super().__init__()
        self.emb = nn.Embedding(vocab, rnn.input_size)
        self.rnn = rnn
        width = rnn.hidden_size * (2 if rnn.bidirectional else 1)
        self.fc = nn.Linear(width, classes)
        # an initial state the model gives (a buffer: not a weight layer)
        self.register_buffer("h0", 0.1 * torch.randn(
            rnn.num_layers * (2 if rnn.bidirectional else 1), 1, rnn.hidden_size))

    def forward(self, ids):
        x = self.emb(ids)
        if self.rnn.batch_first:
            out, _ = self.rnn(x)
            return self.fc(out[:, -1])
        out, h_n = self.rnn(x.transpose(0, 1), self.h0)
        return self.fc(out[-1]) + h_n.sum(0).mean()


def _lstm():
    return TextClassifier(nn.LSTM(16, 32, num_layers=2, batch_first=True, dropout=0.1)).eval()


def _gru():
    return TextClassifier(nn.GRU(16, 32, bidirectional=True, bias=False)).eval()


def _ids():
    return torch.randint(0, 50, (1, 12))


def _reference(model: nn.Module, opt) -> nn.Module:
    """The user's model with each recurrent weight replaced by the pruned model's matrix of
    the documented name (rnn.weight_ih_l0 <- layer rnn.l0.ih), the other layers' weights by
    theirs: torch runs it."""
    ref = copy.deepcopy(model)
    names = opt.plan.meta["recurrent"]["decomposed"]["rnn"]["layers"]
    assert names, "the plan names the recurrent matrices"
    with torch.no_grad():
        for c in opt.plan:
            if c.layer not in names:
                ref.get_submodule(c.layer).weight.copy_(
                    opt.pruned_model.get_submodule(c.layer).weight)
        for layer, param in names.items():
            pruned = opt.pruned_model.get_submodule(layer)
            ref.get_parameter(param).copy_(pruned.weight)
            if pruned.bias is not None:
                ref.get_parameter(param.replace("weight_", "bias_")).copy_(pruned.bias)
    return ref


def _check_pruned(opt, model, layers: list, sparsity: float = 0.8) -> None:
    """Each recurrent matrix pruned in 4x1 blocks over its output rows, kept weights equal
    to the user's; the model's sparsity counted over every weight (embedding included)."""
    assert {c.layer for c in opt.plan.pruned} >= set(layers)
    for layer in layers:
        param = opt.plan.meta["recurrent"]["decomposed"]["rnn"]["layers"][layer]
        w, user = opt.pruned_model.get_submodule(layer).weight, model.get_parameter(param)
        assert w.shape == user.shape
        assert torch.equal(w, user * (w != 0))
        z = (w == 0).reshape(-1, 4, w.shape[1])
        assert bool((z.all(1) | ~z.any(1)).all()), layer          # 4x1 blocks
        assert float((w == 0).float().mean()) == pytest.approx(sparsity, abs=0.02), layer
    other = {o["layer"]: o for o in opt.plan.other_layers}
    assert set(other) == {"emb"} and "recurrent" not in json.dumps(other)
    weights = [p for n, p in opt.pruned_model.named_parameters() if p.dim() >= 2]
    zeros = sum(int((p == 0).sum()) for p in weights)
    assert opt.sparsity == pytest.approx(zeros / sum(p.numel() for p in weights), abs=1e-6)


def _max_err(a, b) -> float:
    return float((torch.as_tensor(a) - b).abs().max())


@pytest.mark.parametrize("make,layers", [
    (_lstm, ["rnn.l0.ih", "rnn.l0.hh", "rnn.l1.ih", "rnn.l1.hh"]),
    (_gru, ["rnn.l0.ih", "rnn.l0.hh", "rnn.l0_reverse.ih", "rnn.l0_reverse.hh"]),
])
def test_recurrent_classifier_pruned_matches_torch(make, layers, tmp_path):
    torch.manual_seed(0)
    model, ids = make(), _ids()
    before = copy.deepcopy(model.state_dict())
    opt = engine.optimize(model, (ids,), sparsity=0.8, block=(4, 1), measure=False,
                          progress=False)
    assert [c.layer for c in opt.plan if c.layer.startswith("rnn.")] == layers
    _check_pruned(opt, model, layers)
    ref = _reference(model, opt)(ids)
    assert _max_err(opt(ids), ref) < ATOL                 # the engine's kernels
    assert _max_err(opt.pruned_model(ids), ref) < ATOL    # the masked reference
    assert _max_err(model(ids), ref) > 1e-3               # pruning changed the model
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert type(model.rnn) in (nn.LSTM, nn.GRU)           # the user's model untouched
    loaded = engine.load(opt.save(tmp_path / "art"))
    assert _max_err(loaded(ids), ref) < ATOL


def test_lstm_arm64_artifact_compiles(tmp_path):
    from engine.targets import get_target
    from engine.targets.toolchain import cross_compiler
    try:
        cross_compiler(get_target("arm64"))
    except engine.errors.ConfigError as e:
        pytest.skip(str(e))
    torch.manual_seed(0)
    opt = engine.optimize(_lstm(), (_ids(),), sparsity=0.8, measure=False, progress=False)
    opt.save(tmp_path / "arm", target="arm64")
    manifest = json.loads((tmp_path / "arm" / "manifest.json").read_text())
    assert manifest["target"]["arch"] == "aarch64"
    assert [s["dtype"] for s in manifest["inputs"]] == ["int64"]
    assert {c["layer"] for c in manifest["plan"]["choices"] if c["sparsity"] > 0} >= \
        {"rnn.l0.ih", "rnn.l0.hh", "rnn.l1.ih", "rnn.l1.hh"}
    head = (tmp_path / "arm" / "model.so").read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64


def test_recurrent_matrices_measured_kept_dense_with_reason():
    """Each recurrent matrix is measured in place like any layer: with a speedup floor no
    kernel reaches, every one stays dense and says what it measured."""
    torch.manual_seed(0)
    model, ids = _lstm(), _ids()
    opt = engine.optimize(model, (ids,), sparsity=0.8, min_speedup=50.0, guard="off",
                          progress=False)
    for c in opt.plan:
        if c.layer.startswith("rnn."):
            assert not c.pruned and c.dense_latency_us > 0, c
            assert "kept dense" in c.reason and "measured" in c.reason, c
    assert _max_err(opt(ids), model(ids)) < ATOL


class Projected(nn.Module):
    def __init__(self):
        super().__init__()
        self.rnn = nn.LSTM(8, 16, proj_size=4, batch_first=True)
        self.packed = nn.GRU(8, 16, batch_first=True)
        self.fc = nn.Linear(4 + 16, 8)

    def forward(self, x):
        a, _ = self.rnn(x)
        seq = nn.utils.rnn.pack_padded_sequence(x, torch.tensor([x.shape[1]]), True)
        _, h = self.packed(seq)
        return self.fc(torch.cat([a[:, -1], h[-1]], -1))


def test_projected_and_packed_kept_whole_with_reasons():
    torch.manual_seed(0)
    model, x = Projected().eval(), torch.randn(1, 6, 8)
    opt = engine.optimize(model, (x,), measure=False, progress=False, capture=False)
    other = {o["layer"]: o["reason"] for o in opt.plan.other_layers}
    assert "proj_size=4" in other["rnn"] and "PackedSequence" in other["packed"]
    assert [c.layer for c in opt.plan] == ["fc"]
    assert _max_err(opt(x), opt.pruned_model(x)) < ATOL


class Untraceable(nn.Module):
    """A forward torch.fx cannot trace (a branch on a tensor value): the engine's modules are
    swapped in place, the LSTM's linears too."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.rnn = nn.LSTM(16, 32, batch_first=True)
        self.fc = nn.Linear(32, 5)

    def forward(self, ids):
        out, (h, _) = self.rnn(self.emb(ids))
        if bool((ids >= 0).all()):
            out = out + 0.0
        return self.fc(out[:, -1] + h[-1])


def test_untraceable_model_swaps_recurrent_linears_in_place():
    torch.manual_seed(0)
    model, ids = Untraceable().eval(), _ids()
    opt = engine.optimize(model, (ids,), sparsity=0.8, measure=False, progress=False,
                          capture=False)
    assert any("could not trace" in n for n in opt.notes), opt.notes
    ran = {m.layer for m in opt.runtime.modules() if getattr(m, "kernel_name", "")}
    assert {"rnn.l0.ih", "rnn.l0.hh", "fc"} <= ran
    ref = _reference(model, opt)(ids)
    assert _max_err(opt(ids), ref) < ATOL
