"""engine.graph.transposed: an nn.ConvTranspose2d as stride-1 phase convs gives torch's output
(every kernel / stride / padding / output_padding combination torch accepts with kernel >=
stride, bias or not, non-square), folds back to the same weights, and says why it leaves the
layers it does not cover; the decomposition replaces every alias of the layer in the working
copy, never in the user's model."""
import copy
import itertools

import pytest
import torch
from torch import nn

from engine.graph.transposed import PhaseConvTranspose2d, decompose_transposed, unsupported


def _cases():
    for k, s, p, op in itertools.product((1, 2, 3, 4, 5), (1, 2, 3), (0, 1, 2), (0, 1, 2)):
        if k >= s and op < s and p < k:
            yield (k, k), (s, s), (p, p), (op, op)
    yield (2, 3), (2, 1), (0, 1), (1, 0)
    yield (4, 3), (2, 3), (1, 0), (0, 2)


@pytest.mark.parametrize("bias", [True, False])
def test_phase_convs_equal_conv_transpose(bias):
    for k, s, p, op in _cases():
        conv = nn.ConvTranspose2d(5, 6, k, s, p, op, bias=bias)
        x = torch.randn(2, 5, 7, 6)
        ref = conv(x)
        ph = PhaseConvTranspose2d(conv, op, "up")
        got = ph(x)
        assert got.shape == ref.shape, (k, s, p, op)
        assert torch.allclose(got, ref, atol=1e-5), (k, s, p, op, (got - ref).abs().max())
        assert torch.equal(ph.weight, conv.weight) and \
            (ph.bias is None if not bias else torch.equal(ph.bias, conv.bias))
        # every weight lands in exactly one phase conv
        assert sum(getattr(ph, n).weight.numel() for n in ph.names) == conv.weight.numel()


def test_unet_and_dcgan_up_convs_are_one_conv():
    up = PhaseConvTranspose2d(nn.ConvTranspose2d(8, 4, 2, 2), (0, 0), "up")
    assert up.names == ["p1x1"] and up.direct and up.p1x1.weight.shape == (16, 8, 1, 1)
    dc = PhaseConvTranspose2d(nn.ConvTranspose2d(8, 4, 4, 2, 1), (0, 0), "up")
    assert dc.names == ["p2x2"] and dc.p2x2.weight.shape == (16, 8, 2, 2)
    odd = PhaseConvTranspose2d(nn.ConvTranspose2d(8, 4, 3, 2, 1, 1), (1, 1), "up")
    assert sorted(odd.names) == ["p1x1", "p1x2", "p2x1", "p2x2"]


def test_masked_phase_weights_fold_back():
    conv = nn.ConvTranspose2d(6, 8, 3, 2, 1, 1)
    ph = PhaseConvTranspose2d(conv, (1, 1), "up")
    with torch.no_grad():
        for n in ph.names:
            w = getattr(ph, n).weight
            w.mul_((torch.rand_like(w) > 0.7).float())
    back = ph.to_conv_transpose()
    x = torch.randn(1, 6, 5, 5)
    assert torch.allclose(ph(x), back(x), atol=1e-5)
    zeros = sum(int((getattr(ph, n).weight == 0).sum()) for n in ph.names)
    assert int((back.weight == 0).sum()) == zeros


def test_unsupported_reasons():
    assert unsupported(nn.ConvTranspose2d(4, 4, 2, 2)) is None
    assert "groups=2" in unsupported(nn.ConvTranspose2d(4, 4, 2, 2, groups=2))
    assert "dilation" in unsupported(nn.ConvTranspose2d(4, 4, 3, 2, dilation=2))
    assert "smaller than stride" in unsupported(nn.ConvTranspose2d(4, 4, 1, 2))


class Up(nn.Module):
    """The same up conv called twice (shared), once with output_size."""

    def __init__(self):
        super().__init__()
        self.up = nn.ConvTranspose2d(4, 4, 3, 2, 1)
        self.alias = self.up

    def forward(self, x):
        y = self.up(x, output_size=(2 * x.shape[-2], 2 * x.shape[-1]))
        return y + self.alias(x, output_size=(2 * x.shape[-2], 2 * x.shape[-1]))


def test_decompose_in_working_copy_with_output_size_and_aliases():
    model, x = Up().eval(), torch.randn(1, 4, 6, 6)
    ref = model(x)
    work = copy.deepcopy(model)
    assert decompose_transposed(work, (x,)) == {"up": ["up.p1x1", "up.p1x2", "up.p2x1",
                                                             "up.p2x2"]}
    assert isinstance(work.up, PhaseConvTranspose2d) and work.alias is work.up
    assert isinstance(model.up, nn.ConvTranspose2d)            # the user's model untouched
    assert work.up.output_padding == (1, 1)
    assert torch.allclose(work(x), ref, atol=1e-5)
    with pytest.raises(ValueError, match="'up'.*output_size"):
        work.up(x, output_size=(11, 11))
