"""fast_erf: float32 erf as TIR arithmetic (GELU), against float64 erf and torch, vectorised."""
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from engine.codegen import compile_model


class Erf(nn.Module):
    def forward(self, x):
        return torch.erf(x), F.gelu(x)


def test_erf_and_gelu_match_float64_and_torch_everywhere():
    grid = torch.cat([torch.linspace(-7, 7, 60001), torch.tensor([0.0, -0.0, 1e-30, -1e-30])])
    x = torch.cat([grid, torch.randn(64 * 1024 - grid.numel())]).reshape(1, 64, 1024)
    cm = compile_model(Erf(), (torch.randn(x.shape),), None, "host")
    erf, gelu = cm.run(x)
    xs = x.double().numpy().reshape(-1)
    exact = np.array([math.erf(v) for v in xs])
    assert np.abs(erf.reshape(-1) - exact).max() < 5e-7             # a few ulp of 1
    exact_gelu = 0.5 * xs * (1 + np.array([math.erf(v / math.sqrt(2)) for v in xs]))
    assert np.abs(gelu.reshape(-1) - exact_gelu).max() < 3e-6
    ref_erf, ref_gelu = Erf()(x)
    assert np.abs(erf - ref_erf.numpy()).max() < 5e-7
    assert np.all(np.sign(erf.reshape(-1)[xs != 0]) == np.sign(xs[xs != 0]))   # odd


def test_erf_special_values():
    x = torch.tensor([float("inf"), -float("inf"), float("nan"), 4.5, -30.0] + [0.5] * 11)
    cm = compile_model(Erf(), (torch.randn(1, 16),), None, "host")
    erf, gelu = cm.run(x.reshape(1, 16))
    e = erf.reshape(-1)
    assert e[0] == 1.0 and e[1] == -1.0 and np.isnan(e[2]) and e[3] == 1.0 and e[4] == -1.0
    assert np.isnan(gelu.reshape(-1)[2])


def test_erf_is_lowered_to_arithmetic_not_a_libm_call(tmp_path):
    import shutil
    import subprocess
    import pytest
    if shutil.which("nm") is None:
        pytest.skip("needs nm")
    cm = compile_model(Erf(), (torch.randn(1, 64, 1024),), None, "host")
    so = cm.export_library(tmp_path / "m.so")
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(so)], capture_output=True,
                               text=True, check=True).stdout
    assert "expf" not in undefined.split() and "erff" not in undefined
