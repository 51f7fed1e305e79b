"""Generated TIR kernels as host-runtime torch modules (engine.codegen.host), against torch."""
import copy
import pickle

import pytest
import torch
import torch.nn.functional as F

from codegen_helpers import assert_close, random_mask
from engine.codegen.host import TirConv2d, TirLinear, tir_module
from engine.errors import ConfigError
from engine.runtime.modules import SparseConv2d, SparseLinear


def _act(y, act):
    return F.relu(y) if act == "relu" else F.relu6(y) if act == "relu6" else y


@pytest.mark.parametrize("o,c,k,stride,pad,dil,act,residual", [
    (16, 8, 3, 1, 1, 1, "relu", False),
    (12, 8, 3, 2, 1, 1, "relu6", False),
    (16, 16, 1, 1, 0, 1, "relu", True),
    (8, 3, 7, 2, 3, 1, "none", False),
    (8, 4, 3, 1, 2, 2, "relu", False),
    (10, 6, (1, 3), 1, (0, 1), 1, "none", True),
])
def test_conv_matches_torch(o, c, k, stride, pad, dil, act, residual):
    g = torch.Generator().manual_seed(0)
    kh, kw = (k, k) if isinstance(k, int) else k
    w = torch.randn(o, c, kh, kw, generator=g) * random_mask((o, c, kh, kw), 0.7, 4)
    b = torch.randn(o, generator=g)
    x = torch.randn(2, c, 13, 11, generator=g)
    m = TirConv2d(w, b, stride, pad, dil, act, rows=4, layer="conv")
    y0 = F.conv2d(x, w, b, stride, pad, dil)
    r = torch.randn(y0.shape, generator=g) if residual else None
    ref = _act(y0 + r if residual else y0, act)
    assert_close(m(x, r) if residual else m(x), ref)
    assert m.kernel_name.startswith("tir_f32_spmm_4x")


def test_linear_matches_torch_with_leading_dims():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(20, 32, generator=g) * random_mask((20, 32), 0.75, 4)
    b = torch.randn(20, generator=g)
    m = TirLinear(w, b, "relu", rows=4, layer="fc")
    x = torch.randn(2, 3, 32, generator=g)
    assert_close(m(x), F.relu(F.linear(x, w, b)))


def test_misaligned_input_and_new_shapes():
    """numpy-backed (16-byte aligned) and offset views work; a new shape compiles a new kernel."""
    g = torch.Generator().manual_seed(2)
    w = torch.randn(8, 4, 3, 3, generator=g) * random_mask((8, 4, 3, 3), 0.5, 4)
    m = TirConv2d(w, None, 1, 1, 1, "none", rows=4, layer="c")
    flat = torch.randn(1 + 4 * 9 * 9, generator=g)
    x = flat[1:].view(1, 4, 9, 9)             # data pointer 4 bytes past an allocation
    assert x.data_ptr() % 64 != 0
    assert_close(m(x), F.conv2d(x, w, None, 1, 1))
    x2 = torch.randn(3, 4, 6, 5, generator=g)
    assert_close(m(x2), F.conv2d(x2, w, None, 1, 1))
    assert len(m._kernels) == 2


def test_copies_and_pickles_rebuild():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(8, 8, 1, 1, generator=g) * random_mask((8, 8, 1, 1), 0.5, 4)
    m = TirConv2d(w, torch.randn(8, generator=g), act="relu", rows=4, layer="pw")
    x = torch.randn(1, 8, 5, 5, generator=g)
    y = m(x)
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert other._kernels == {}
        assert torch.equal(other(x), y)


def test_twin_of_native_modules_agrees():
    g = torch.Generator().manual_seed(4)
    w = torch.randn(16, 8, 3, 3, generator=g) * random_mask((16, 8, 3, 3), 0.8, 4)
    native = SparseConv2d(w, torch.randn(16, generator=g), (2, 2), (1, 1), act="relu6",
                          rows=4, layer="a")
    x = torch.randn(1, 8, 10, 10, generator=g)
    assert_close(tir_module(native)(x), native(x))
    wl = torch.randn(12, 24, generator=g) * random_mask((12, 24), 0.5, 4)
    nl = SparseLinear(wl, None, "none", rows=4, layer="fc")
    xl = torch.randn(3, 24, generator=g)
    assert_close(tir_module(nl)(xl), nl(xl))


def test_bad_input_names_the_layer():
    m = TirConv2d(torch.randn(4, 3, 3, 3), None, layer="stem")
    with pytest.raises(ConfigError, match="stem"):
        m(torch.randn(1, 5, 8, 8))
    fc = TirLinear(torch.randn(4, 6), None, layer="head")
    with pytest.raises(ConfigError, match="head.*6 input features"):
        fc(torch.randn(2, 7))
    with pytest.raises(ConfigError, match="grouped"):
        tir_module(SparseConv2d(torch.randn(4, 1, 3, 3), None, groups=4, layer="dw"))


class _TirNet(torch.nn.Module):
    """Generated-TIR layers as a lowered model holds them: a residual add fused into one."""

    def __init__(self, g):
        super().__init__()
        w = torch.randn(16, 8, 3, 3, generator=g) * random_mask((16, 8, 3, 3), 0.6, 4)
        self.c = TirConv2d(w, torch.randn(16, generator=g), 1, 1, 1, "relu", rows=4, layer="c")
        wp = torch.randn(16, 16, 1, 1, generator=g) * random_mask((16, 16, 1, 1), 0.5, 8)
        self.p = TirConv2d(wp, None, 1, 0, 1, "relu6", rows=8, layer="p")
        self.fc = TirLinear(torch.randn(5, 16, generator=g), torch.randn(5, generator=g),
                            rows=4, layer="fc")

    def forward(self, x):
        y = self.c(x)
        return self.fc(self.p(y, y).mean((2, 3)))


def test_tir_layers_compile_as_lowered():
    """A lowered model's generated-TIR layers are one spe_tir_layer node each under
    torch.export and compile (compile_lowered: the kernel generated for the target) to what
    torch computes with the same weights."""
    from engine.codegen.lowered import compile_lowered
    g = torch.Generator().manual_seed(3)
    m = _TirNet(g)
    x = torch.randn(2, 8, 9, 9, generator=g)
    with torch.no_grad():
        y = F.relu(F.conv2d(x, m.c.dense_weight(), torch.from_numpy(m.c.bias_np), padding=1))
        y = F.relu6(F.conv2d(y, m.p.dense_weight()) + y)
        ref = F.linear(y.mean((2, 3)), m.fc.dense_weight(), torch.from_numpy(m.fc.bias_np))
    ep = torch.export.export(m, (x,), strict=False)
    assert sum("spe_tir_layer" in str(n.target) for n in ep.graph.nodes) == 3
    cm = compile_lowered(m, (x,), "host")
    assert_close(torch.from_numpy(cm.run(x)[0]), ref)
    assert_close(m(x), ref)
