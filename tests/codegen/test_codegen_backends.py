"""Per-layer backend measurement (tir / native / torch) and the choice rule."""
import pytest
import torch

from codegen_helpers import random_mask
from engine.codegen.backends import choose_backend, measure_backends, measure_layer
from engine.errors import ConfigError
from engine.graph.layers import list_layers


def test_measures_all_three_and_picks_one():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(32, 16, 3, 3, generator=g)
    w = w * random_mask(w.shape, 0.8, 4)
    t = measure_backends(w, (1, 16, 12, 12), padding=1, rows=4, act="relu", min_time=0.005,
                         backends=("tir", "native", "torch", "tir_dense"))
    assert set(t.times) == {"tir", "native", "torch", "tir_dense"}
    assert all(v > 0 for v in t.times.values())
    assert t.backend in ("tir", "native", "torch") and t.reason
    assert t.kernels["tir"].startswith("tir_f32_spmm_4x")
    assert t.density == pytest.approx(0.2, abs=0.03)


def test_linear_layer():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(24, 40, generator=g) * random_mask((24, 40), 0.75, 4)
    t = measure_backends(w, (2, 40), rows=4, bias=torch.randn(24), min_time=0.005)
    assert set(t.times) == {"tir", "native", "torch"}


def test_measure_layer_from_layer_info():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, stride=2, padding=1)).eval()
    info = list_layers(model, (torch.randn(1, 8, 10, 10),))[0]
    mask = random_mask(model[0].weight.shape, 0.5, 4)
    t = measure_layer(model, info, 4, mask, min_time=0.005, backends=("tir", "torch"))
    assert t.layer == "0" and set(t.times) == {"tir", "torch"}


def test_rule_prefers_the_fastest_sparse_backend_if_fast_enough():
    assert choose_backend({"tir": 1.0, "native": 2.0, "torch": 4.0})[0] == "tir"
    assert choose_backend({"tir": 2.0, "native": 1.0, "torch": 4.0})[0] == "native"
    b, why = choose_backend({"tir": 1.0, "native": 1.2, "torch": 1.05}, min_speedup=1.1)
    assert b == "torch" and "kept dense" in why
    assert choose_backend({"tir": 1.0, "tir_dense": 3.0})[0] == "tir"


def test_bad_backend_names():
    with pytest.raises(ConfigError, match="unknown backend"):
        measure_backends(torch.ones(4, 4), (1, 4), backends=("tir", "cuda"))
    with pytest.raises(ConfigError, match="at least one sparse"):
        measure_backends(torch.ones(4, 4), (1, 4), backends=("torch",))
