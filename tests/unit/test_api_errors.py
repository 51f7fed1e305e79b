"""optimize() rejects bad input with an error naming the problem, and loses nothing."""
import pytest
import torch

import engine
from engine.errors import CaptureError, ConfigError
from small_net import Small


class DataDependent(Small):
    def forward(self, x):
        y = self.c1(x)
        if y.sum() > 0:  # data-dependent control flow: torch.export cannot capture it
            y = y * 2
        return y


X = torch.randn(1, 3, 8, 8)


@pytest.mark.parametrize("sparsity", [1.0, -0.1, 1.5])
def test_sparsity_out_of_range(sparsity):
    with pytest.raises(ConfigError, match="sparsity"):
        engine.optimize(Small(), (X,), sparsity=sparsity)


def test_unknown_scheme_lists_known():
    with pytest.raises(ConfigError, match="unknown scheme 'blocky'.*block"):
        engine.optimize(Small(), (X,), scheme="blocky")


def test_unknown_target_lists_known():
    with pytest.raises(ConfigError, match="unknown target 'phone'.*arm64"):
        engine.optimize(Small(), (X,), target="phone")


def test_compile_target_is_planned_on_the_host_and_says_so():
    opt = engine.optimize(Small(), (X,), target="arm64", sparsity=0.5, measure=False)
    assert opt.plan.target == "arm64"
    assert any("proxy for target 'arm64'" in n for n in opt.notes)


@pytest.mark.parametrize("block", ["4y1", (0, 1), "x"])
def test_bad_block(block):
    with pytest.raises(ConfigError, match="block"):
        engine.optimize(Small(), (X,), block=block)


def test_block_that_fits_no_layer():
    with pytest.raises(ConfigError, match="fits no layer"):
        engine.optimize(Small(), (X,), block=(64, 1), measure=False)


def test_uncapturable_model_names_the_line():
    with pytest.raises(CaptureError, match=r"test_api_errors.py:\d+ in forward"):
        engine.optimize(DataDependent(), (X,))


def test_bad_example_inputs():
    with pytest.raises(ConfigError, match="example_inputs"):
        engine.optimize(Small(), ("not a tensor",))
    with pytest.raises(ConfigError, match="float32"):
        engine.optimize(Small(), (X.double(),))


def test_unknown_exclude():
    with pytest.raises(ConfigError, match="exclude names 'nope'"):
        engine.optimize(Small(), (X,), exclude=("nope",), measure=False)


def test_bad_threads():
    with pytest.raises(ConfigError, match="threads"):
        engine.optimize(Small(), (X,), threads=0)


def test_model_untouched_on_success_and_failure():
    m = Small().train()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    engine.optimize(m, (X,), block=(4, 1), sparsity=0.5, measure=False)
    with pytest.raises(ConfigError):
        engine.optimize(m, (X,), block=(64, 1), measure=False)
    assert m.training
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert all(p.requires_grad for p in m.parameters())


def test_excluded_layer_stays_dense_with_reason():
    opt = engine.optimize(Small(), (X,), block=(4, 1), sparsity=0.5, exclude=("c2",),
                          measure=False)
    assert not opt.plan["c2"].pruned and "excluded" in opt.plan["c2"].reason
