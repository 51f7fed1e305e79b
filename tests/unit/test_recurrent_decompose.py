"""engine.graph.recurrent: the decomposition of torch's recurrent layers into linears gives
torch's outputs (checked against torch's fused kernel) for every configuration it accepts,
answers torch's attribute names, and goes back to torch's module."""
import itertools

import pytest
import torch
from torch import nn

from engine.graph.recurrent import Recurrent, decompose_recurrent, restore_recurrent


def _outputs(out) -> list:
    first, rest = out
    return [first] + (list(rest) if isinstance(rest, tuple) else [rest])


CASES = list(itertools.product((nn.LSTM, nn.GRU, nn.RNN), (1, 2), (False, True),
                               (False, True), (False, True), ("none", "given", "unbatched")))


@pytest.mark.parametrize("cls,layers,bidir,bias,batch_first,state", CASES)
def test_same_outputs_as_torch(cls, layers, bidir, bias, batch_first, state):
    torch.manual_seed(0)
    kw = {"nonlinearity": "relu"} if cls is nn.RNN and bias else {}
    mod = cls(5, 7, layers, bias=bias, batch_first=batch_first, bidirectional=bidir,
              dropout=0.3 if layers > 1 else 0.0, **kw).eval()
    n = layers * (2 if bidir else 1)
    if state == "unbatched":
        x, h = torch.randn(6, 5), torch.randn(n, 7)
    else:
        x = torch.randn(3, 6, 5) if batch_first else torch.randn(6, 3, 5)
        h = torch.randn(n, 3, 7)
    args = (x,) if state == "none" else (x, (h, torch.randn_like(h)) if cls is nn.LSTM else h)
    rec = Recurrent.from_torch(mod).eval()
    with torch.no_grad():
        ref, got = _outputs(mod(*args)), _outputs(rec(*args))
    assert [t.shape for t in got] == [t.shape for t in ref]
    for r, g in zip(ref, got):
        assert float((r - g).abs().max()) < 1e-5
    assert [p.shape for p in rec.parameters()] and all(
        isinstance(m, nn.Linear) for m in rec.modules() if not list(m.children()))


def test_torch_names_and_restore():
    torch.manual_seed(0)
    mod = nn.LSTM(5, 7, 2, bidirectional=True, batch_first=True).eval()
    rec = Recurrent.from_torch(mod)
    assert rec.l1_reverse.hh.weight.shape == (28, 7)
    assert torch.equal(rec.weight_hh_l1_reverse, mod.weight_hh_l1_reverse)
    assert torch.equal(rec.bias_ih_l0, mod.bias_ih_l0)
    assert (rec.hidden_size, rec.num_layers, rec.batch_first, rec.mode) == (7, 2, True, "LSTM")
    rec.flatten_parameters()                        # callable as on torch's module
    with pytest.raises(AttributeError):
        rec.weight_ih_l2
    with pytest.raises(AttributeError):
        Recurrent.from_torch(nn.GRU(5, 7, bias=False)).bias_ih_l0
    assert rec.param_names("enc")["enc.l1_reverse.hh"] == "enc.weight_hh_l1_reverse"
    with torch.no_grad():
        rec.l0.hh.weight[:4] = 0                    # a "pruned" block
    back = restore_recurrent(nn.Sequential(rec))[0]
    assert type(back) is nn.LSTM and torch.equal(back.weight_hh_l0, rec.l0.hh.weight)
    x = torch.randn(2, 4, 5)
    assert torch.allclose(back(x)[0], rec(x)[0], atol=1e-6)


class Twice(nn.Module):
    """One GRU called at two places, and one the forward never calls."""

    def __init__(self):
        super().__init__()
        self.gru = nn.GRU(4, 4, batch_first=True)
        self.alias = self.gru
        self.unused = nn.LSTM(4, 4)

    def forward(self, x):
        return self.alias(self.gru(x)[0])[0]


def test_decompose_shared_and_unused():
    torch.manual_seed(0)
    model, x = Twice().eval(), torch.randn(1, 5, 4)
    want = model(x)
    record = decompose_recurrent(model, (x,))
    assert model.gru is model.alias and isinstance(model.gru, Recurrent)
    assert list(record.decomposed) == ["gru"] and "not called" in record.kept["unused"]
    assert torch.allclose(model(x), want, atol=1e-6)
    record = decompose_recurrent(Twice().eval(), (x,), exclude=("alias",))
    assert "excluded" in record.kept["gru"] and not record.decomposed
