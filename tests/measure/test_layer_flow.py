"""engine.graph.flow: the data flow between prunable layers (LayerSpec.inputs), written out by
hand for a net with a depthwise -> pointwise pair, a residual add, a concat, a pooled linear
head and a layer called twice; None for a model torch.fx cannot trace (the GNN mapper then
falls back to the sequential chain)."""
import torch
from torch import nn

from engine.graph.flow import layer_inputs
from engine.measure import model_specs
from mapping.search.graph_embed import layer_graph


class _Flow(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.a = nn.Conv2d(16, 8, 1)
        self.b = nn.Conv2d(16, 8, 3, padding=1)
        self.shared = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        s = torch.relu(self.bn(self.stem(x)))
        r = s + self.pw(torch.relu(self.dw(s)))                 # residual add
        c = torch.cat([self.a(r), self.b(nn.functional.max_pool2d(r, 1))], dim=1)
        y = self.shared(self.shared(c))                         # one layer called twice
        return self.fc(y.mean((2, 3)))


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = self.c1(x)
        if y.sum() > 0:                    # data-dependent control flow: fx cannot trace it
            y = torch.relu(y)
        return self.c2(y)


EXPECTED = {"stem": (), "dw": ("stem",), "pw": ("dw",), "a": ("stem", "pw"),
            "b": ("stem", "pw"), "shared": ("a", "b", "shared"), "fc": ("shared",)}


def test_inputs_follow_the_data_flow():
    torch.manual_seed(0)
    model = _Flow().eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    specs = model_specs(model, (torch.randn(1, 3, 8, 8),))
    assert {s.name: s.inputs for s in specs} == EXPECTED
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    g = layer_graph(specs)
    names = [s.name for s in specs]
    edges = {(names[a], names[b]) for a, b in g.edges}
    assert g.source == "data flow" and ("stem", "a") in edges and ("pw", "a") in edges
    assert ("shared", "shared") not in edges          # the self-loop is the node's own term


def test_untraceable_model_has_no_inputs_and_the_graph_is_the_chain():
    model = _Untraceable().eval()
    assert layer_inputs(model, ["c1", "c2"]) is None
    specs = model_specs(model, (torch.randn(1, 3, 8, 8),))
    assert [s.inputs for s in specs] == [None, None]
    g = layer_graph(specs)
    assert g.source == "sequential chain" and g.edges == ((0, 1),)


def test_a_custom_layer_module_is_kept_as_a_leaf():
    """A listed layer that is not a torch leaf module (like transformers' Conv1D) is still
    one node of the flow, not traced through."""
    class Inner(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.randn(4, 4))

        def forward(self, x):
            return x @ self.weight

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.first, self.second = nn.Linear(4, 4), Inner()

        def forward(self, x):
            return self.second(torch.relu(self.first(x)))

    assert layer_inputs(Outer(), ["first", "second"]) == {"first": (), "second": ("first",)}
