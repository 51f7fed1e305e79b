"""engine.codegen.pool_tir: max pooling compiled as the generated separable kernel matches
torch (padding, asymmetric kernels and strides, windows wider than the stride, -inf and NaN-free
extremes), is what compile_model puts in place of TVM's pooling, and leaves the pools it does
not handle (ceil mode, dilation) to TVM, still matching torch."""
import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("tvm")

from engine.codegen import compile_model  # noqa: E402
from engine.codegen.compile import _import  # noqa: E402
from engine.codegen.pool_tir import max_pool_kernel, rewrite_pools  # noqa: E402
from engine.codegen.targets import as_target, tvm_target, vector_isa  # noqa: E402

CASES = [  # (input shape, kernel, stride, padding)
    ((1, 8, 112, 112), 3, 2, 1),           # ResNet's stem pool, rows of 7 vectors
    ((2, 5, 13, 11), 3, 2, 1),             # odd sizes, batch 2
    ((1, 3, 17, 19), (2, 3), (1, 2), (1, 1)),
    ((1, 7, 8, 8), 2, 2, 0),
    ((1, 4, 33, 35), 5, 3, 2),             # window wider than the stride, pad 2
    ((1, 2, 9, 40), (3, 1), (3, 1), (0, 0)),
    # deinterleaved columns (strides 2-4 over full vectors): whole vectors only, the last
    # vector's window reaching the row's slack, strides 3 and 4 with a tail
    ((1, 2, 8, 64), 2, 2, 0),
    ((1, 2, 11, 100), 5, 3, 2),
    ((1, 3, 20, 70), 4, 4, 2),
]


def _isa():
    return vector_isa(tvm_target(as_target("host")))


@pytest.mark.parametrize("shape,k,s,p", CASES)
def test_compiled_max_pool_matches_torch(shape, k, s, p):
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(*shape, generator=g) * 100
    x.view(-1)[::7] = -float("inf")               # whole windows of -inf in the 1-wide cases
    x.view(-1)[3::11] = torch.finfo(torch.float32).max
    model = nn.Sequential(nn.MaxPool2d(k, s, p), nn.ReLU6()).eval()
    cm = compile_model(model, (torch.randn(*shape, generator=g),))   # examples must be finite
    got = cm.run(x)[0]
    np.testing.assert_array_equal(got, model(x).numpy())
    mod, _, _, _ = _import(model, (x,))
    _, n = rewrite_pools(mod, _isa())
    assert n == 1


def test_minus_inf_windows_stay_minus_inf():
    x = torch.full((1, 1, 6, 6), -float("inf"))
    x[0, 0, 5, 5] = 1.0
    model = nn.MaxPool2d(2, 2).eval()
    cm = compile_model(model, (torch.randn(1, 1, 6, 6),))
    np.testing.assert_array_equal(cm.run(x)[0], model(x).numpy())


@pytest.mark.parametrize("pool", [nn.MaxPool2d(3, 2, 1, ceil_mode=True),
                                  nn.MaxPool2d(3, 1, 1, dilation=2)])
def test_pools_it_does_not_handle_are_left_to_tvm(pool):
    x = torch.randn(1, 3, 15, 15, generator=torch.Generator().manual_seed(1))
    model = nn.Sequential(pool).eval()
    mod, _, _, _ = _import(model, (x,))
    _, n = rewrite_pools(mod, _isa())
    assert n == 0
    np.testing.assert_allclose(compile_model(model, (x,)).run(x)[0], model(x).numpy(),
                               rtol=0, atol=0)


def test_an_empty_output_is_refused():
    with pytest.raises(ValueError, match="empty output"):
        max_pool_kernel((1, 1, 2, 2), (3, 3), (1, 1), (0, 0), _isa())
