"""Glue schedules: every PrimFunc TVM legalizes gets a rule (never naive loops), and the
scheduled glue computes what torch computes."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from codegen_helpers import assert_close
from engine.codegen import compile_model
from engine.codegen._tvm import tvm
from engine.codegen.compile import _bind_params, _import
from engine.codegen.pipeline import run_until, step_names
from engine.codegen.schedules import glue_rules
from engine.codegen.targets import as_target, tvm_target


class Glue(nn.Module):
    def forward(self, x):
        a = F.max_pool2d(x, 3, 2, 1)                    # window reduction with padding
        b = F.avg_pool2d(x, 2)                          # window reduction + divide
        c = torch.relu(a[:, :, :8, :8] + b)             # injective
        d = F.adaptive_avg_pool2d(c, 1).flatten(1)      # mean
        e = torch.softmax(d * 3.0, dim=1)               # dlight-style reduction
        return e, c.permute(0, 2, 3, 1).reshape(2, -1)  # layout change


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 24, 16, 16, generator=torch.Generator().manual_seed(0))


def test_glue_matches_torch(x):
    cm = compile_model(Glue(), (x,), None, "host")
    got = cm.run(x)
    ref = Glue()(x)
    assert len(got) == 2
    for g, r in zip(got, ref):
        assert_close(g, r, 1e-5)


def test_every_glue_function_is_scheduled(x):
    tgt = tvm_target(as_target("host"))
    mod, params, _, _ = _import(Glue(), (x,))
    mod = _bind_params(mod, params)
    assert "glue_schedules" in step_names(tgt)
    mod = run_until(mod, tgt, "glue_schedules")
    funcs = {gv.name_hint: f for gv, f in mod.functions_items()
             if isinstance(f, tvm.tirx.PrimFunc)}
    assert funcs
    for name, f in funcs.items():
        assert "tirx.is_scheduled" in f.attrs, f"{name} was left unscheduled"
    text = "\n".join(f.script() for f in funcs.values())
    assert "T.parallel" in text and "T.vectorized" in text


def test_rules_order():
    names = [type(r).__name__ for r in glue_rules()]
    assert names[0] == "Injective" and names[-1] == "Fallback"
