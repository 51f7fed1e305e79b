"""engine.measure.energy.retained_energy: the kept fraction of each layer's sum of w^2."""
import pytest
import torch

from engine import zoo
from engine.errors import ConfigError
from engine.measure import MaskCache, model_specs, model_weights, retained_energy
from mapping import Candidate, LayerSpec, default_space


def test_hand_computed_small_weight():
    spec = LayerSpec("fc", "linear", 4, 2)
    w = torch.tensor([[1.0, -2.0, 3.0, 0.5], [0.1, 4.0, -1.0, 2.0]])
    total = float((w * w).sum())
    cands = [Candidate("block", (1, 1), 0.5, "native"), Candidate("block", (2, 1), 0.5, "native"),
             Candidate("block", (1, 1), 0.5, "tir")]
    e = retained_energy({"fc": w}, [spec], cands)["fc"]
    assert e["dense"] == 1.0
    # unstructured 50%: keep the 4 largest |w|: 4, 3, -2, 2
    assert e["block1x1@0.50/native"] == pytest.approx((16 + 9 + 4 + 4) / total)
    # 2x1 blocks (both rows of one input column): column energies 1.01, 20, 10, 4.25 -> keep 2
    assert e["block2x1@0.50/native"] == pytest.approx((20 + 10) / total)
    assert e["block1x1@0.50/tir"] == e["block1x1@0.50/native"]      # backends share the mask


def test_monotone_in_sparsity_on_a_real_weight():
    torch.manual_seed(0)
    model = zoo.get("resnet18_cifar").eval()
    specs = [s for s in model_specs(model, (torch.randn(1, 3, 32, 32),))
             if s.name == "layer2.0.conv2"]
    weights = model_weights(model, specs)
    space = default_space(blocks=((4, 1),), sparsities=(0.5, 0.6, 0.7, 0.8, 0.9),
                          backends=("native", "tir"))
    masks = MaskCache()
    e = retained_energy(weights, specs, space, masks=masks)["layer2.0.conv2"]
    seq = [e[f"block4x1@{s:.2f}/native"] for s in (0.5, 0.6, 0.7, 0.8, 0.9)]
    assert all(a >= b for a, b in zip(seq, seq[1:])) and 0 < seq[-1] < seq[0] < 1
    assert e["dense"] == 1.0
    # magnitude pruning keeps more energy than the kept fraction of weights
    assert seq[3] > 0.2
    # pattern: 3x3 only, and never below its 5/9 floor
    assert "pattern@0.50/native" not in e and "pattern@0.60/native" in e
    # one mask per (layer, scheme, block, sparsity): native and tir share it
    assert len(masks) == 5 + 4
    assert e["block4x1@0.80/tir"] == e["block4x1@0.80/native"]


def test_missing_weight_names_the_layer():
    with pytest.raises(ConfigError, match="'fc'"):
        retained_energy({}, [LayerSpec("fc", "linear", 4, 2)], [])
    with pytest.raises(ConfigError, match="fc.*shape"):
        retained_energy({"fc": torch.zeros(3, 3)}, [LayerSpec("fc", "linear", 4, 2)], [])
