"""The rule mapper on the mobile-class zoo's squeeze-excitation layers: 1x1 convs on a 1x1 map
(MobileNetV3-Large's; EfficientNet-B0's are alike, left out for time), where a sparse kernel
rarely beats dense. Whatever the
measurements say on this machine, a pruned SE layer must have measured faster than dense in
place, and a dense one must say which measurement kept it dense. Every other layer is excluded,
so only the SE layers' candidates are measured (optimize still times every layer's dense
backends: ~20 s)."""
import re

import pytest
import torch

import engine
from engine import zoo
from engine.graph.layers import list_layers
from engine.zoo.init import randomize_bn
from mapping import default_space

SPACE = default_space(blocks=((4, 1),), sparsities=(0.8,), backends=("native",), pattern=False)
SE = {"mobilenetv3_large": ("features.4.block.2", "features.12.block.2")}


@pytest.mark.parametrize("name", sorted(SE))
def test_squeeze_excitation_layers_pruned_only_where_measured_faster(name, tmp_path):
    torch.manual_seed(0)
    model, x = randomize_bn(zoo.get(name).eval()), torch.randn(1, 3, 32, 32)
    se = [f"{b}.{fc}" for b in SE[name] for fc in ("fc1", "fc2")]
    exclude = [l.name for l in list_layers(model, (x,)) if l.name not in se]
    opt = engine.optimize(model, (x,), mapper="rule", sparsity=0.5, space=SPACE, exclude=exclude,
                          costs=tmp_path / "costs.json", capture=False, progress=False,
                          allow_infeasible=True, guard="off")   # the per-layer decisions
    with torch.no_grad():
        ref = opt.pruned_model(x)
        assert (opt(x) - ref).abs().max().item() <= 1e-4 * ref.abs().max().item()
    for layer in se:
        c = opt.plan[layer]
        if c.pruned:
            assert c.latency_us * opt.config.min_speedup <= c.dense_latency_us * (1 + 1e-9)
        else:   # the reason names the measured ratio that kept it dense
            assert re.search(r"measured \d+\.\d+x", c.reason), (layer, c.reason)
    for layer in exclude:
        assert not opt.plan[layer].pruned
