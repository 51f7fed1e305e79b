"""Inputs of any dtype and number (positional and keyword), outputs of any structure, through
optimize(), opt(...), the artifact and engine.load, against the model's own eager output; bad
inputs are errors naming the input; TVM's importer failures name the op and source line."""
import dataclasses
import inspect

import pytest
import torch
from torch import nn

import engine
from engine.errors import CompileError, ConfigError, InputError
from engine.graph.outputs import Outputs, flatten_outputs, rebuild


class Tagger(nn.Module):
    """Token ids + a bool mask in, a dict out: float logits and int64 predictions."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.fc = nn.Linear(16, 32)
        self.out = nn.Linear(32, 8)

    def forward(self, ids, mask=None, scale: float = 1.0):
        h = torch.relu(self.fc(self.emb(ids))) * scale
        if mask is not None:
            h = h * mask.unsqueeze(-1).to(h.dtype)
        logits = self.out(h)
        return {"logits": logits, "pred": (logits.argmax(-1), logits.sum(-1))}


@dataclasses.dataclass
class Out:
    y: torch.Tensor
    aux: torch.Tensor = None


torch.export.register_dataclass(Out)     # torch.export needs a dataclass output registered


class HalfIn(nn.Module):
    """A float16 input, a dataclass output with a None field."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(16, 16)

    def forward(self, x):
        return Out(self.fc(x.float()))


def _inputs():
    torch.manual_seed(0)
    ids = torch.randint(0, 50, (2, 6))
    mask = torch.rand(2, 6) > 0.3
    return ids, mask


@pytest.fixture(scope="module")
def tagged():
    ids, mask = _inputs()
    model = Tagger().eval()
    opt = engine.optimize(model, (ids,), example_kwargs={"mask": mask, "scale": 2.0},
                          sparsity=0.5, measure=False, progress=False)
    return model, opt, ids, mask


def _same(got, ref):
    """Same structure, integers exactly, floats within 1e-4 relative."""
    (gl, gt), (rl, rt) = flatten_outputs(got), flatten_outputs(ref)
    assert gt == rt
    for (n, g), (_, r) in zip(gl, rl):
        assert g.dtype == r.dtype, n
        if r.is_floating_point():
            assert (g - r).abs().max() <= 1e-4 * (r.abs().max() + 1e-6), n
        else:
            assert torch.equal(g, r), n


def test_dict_output_bool_mask_keyword_settings(tagged):
    model, opt, ids, mask = tagged
    assert any(c.pruned for c in opt.plan)
    with torch.no_grad():
        ref = opt.pruned_model(ids, mask, 2.0)
    got = opt(ids, mask=mask)                   # scale=2.0: the example's setting, kept
    assert isinstance(got, dict) and isinstance(got["pred"], tuple)
    _same(got, ref)
    _same(opt(ids, mask), ref)
    with torch.no_grad():   # a setting given in the call wins over the example's
        _same(opt(ids, mask=mask, scale=1.0), opt.pruned_model(ids, mask, 1.0))


def test_dtype_mismatch_names_the_input(tagged):
    _, opt, ids, mask = tagged
    with pytest.raises(InputError, match=r"input 1 'mask' is torch.int64, but the model was "
                                         r"optimized for torch.bool"):
        opt(ids, mask=mask.long())
    with pytest.raises(InputError, match=r"input 0 'ids' is torch.int32"):
        opt(ids.int(), mask)


def test_missing_or_extra_inputs_are_named(tagged):
    _, opt, ids, mask = tagged
    with pytest.raises(InputError, match=r"input 1 'mask' is missing"):
        opt(ids)
    with pytest.raises(InputError, match=r"3 inputs given.*optimized with 2"):
        opt(ids, mask, torch.ones(1))
    with pytest.raises(InputError, match=r"input\['nope'\] is not a parameter of Tagger"):
        opt(ids, mask, nope=1)


def test_example_kwargs_errors_name_the_problem():
    ids, mask = _inputs()
    with pytest.raises(ConfigError, match=r"example_kwargs\['mask'\]: input 1 of forward\(\) "
                                          r"is given twice"):
        engine.optimize(Tagger(), (ids, mask), example_kwargs={"mask": mask}, measure=False)
    with pytest.raises(ConfigError, match=r"example_kwargs\['bogus'\] is not a parameter"):
        engine.optimize(Tagger(), (ids,), example_kwargs={"bogus": mask}, measure=False)
    with pytest.raises(ConfigError, match=r"example_inputs\[0\] must be a float32.*float64"):
        engine.optimize(HalfIn(), (torch.randn(1, 16).double(),), measure=False)


def test_artifact_round_trip_keeps_structure_and_dtypes(tagged, tmp_path):
    _, opt, ids, mask = tagged
    opt.save(tmp_path / "a")
    art = engine.load(tmp_path / "a")
    assert [(s.name, s.dtype) for s in art.inputs] == [("ids", "int64"), ("mask", "bool")]
    assert [s.name for s in art.outputs] == ["logits", "pred.0", "pred.1"]
    with torch.no_grad():
        ref = opt.pruned_model(ids, mask, 2.0)
    _same(art(ids, mask=mask), ref)
    with pytest.raises(engine.errors.ArtifactError, match=r"input 1 'mask' is int64\[2, 6\]"):
        art(ids, mask.long())


def test_float16_input_dataclass_output(tmp_path):
    torch.manual_seed(0)
    model = HalfIn().eval()
    x = torch.randn(3, 16).half()
    opt = engine.optimize(model, (x,), sparsity=0.5, measure=False, progress=False)
    with torch.no_grad():
        ref = opt.pruned_model(x)
    got = opt(x)
    assert isinstance(got, Out) and got.aux is None
    assert torch.allclose(got.y, ref.y, atol=1e-5)
    opt.save(tmp_path / "h")
    out = engine.load(tmp_path / "h")(x)
    assert isinstance(out, Outputs) and list(out) == ["y"]
    assert torch.allclose(out.y, ref.y, atol=1e-5)


def test_rebuild_inverts_flatten():
    t = [torch.arange(3), torch.ones(2), torch.zeros(1)]
    value = {"a": (t[0], [t[1], None]), "b": t[2]}
    leaves, tree = flatten_outputs(value)
    assert [n for n, _ in leaves] == ["a.0", "a.1.0", "b"]
    back = rebuild(tree, [x for _, x in leaves])
    assert back["a"][0] is t[0] and back["a"][1] == [t[1], None] and back["b"] is t[2]
    assert [n for n, _ in flatten_outputs((t[0], t[1]))[0]] == ["output0", "output1"]


class FloorDiv(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        y = self.fc(x)
        return y + torch.div(y, 2, rounding_mode="floor")    # float floor division


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)

    def forward(self, x):
        return torch.cummax(self.fc(x), 1)[0]


def test_float_floor_division_compiles(tmp_path):
    """Float floor division (DETR's sine position embedding) imports as floor(a / b)
    (engine.codegen.export_fixes): the artifact saves and matches."""
    torch.manual_seed(0)
    x = torch.randn(1, 4, 8) * 4
    opt = engine.optimize(FloorDiv().eval(), (x,), measure=False, progress=False)
    art = engine.load(opt.save(tmp_path / "x"))
    with torch.no_grad():
        ref = opt.pruned_model(x)
    assert torch.allclose(torch.as_tensor(art(x)), ref, atol=1e-5)


@pytest.mark.parametrize("cls,op,hint", [
    (Unsupported, r"aten\.cummax", r"rewrite that line"),
])
def test_tvm_import_failure_names_op_and_line(cls, op, hint, tmp_path):
    torch.manual_seed(0)
    opt = engine.optimize(cls().eval(), (torch.randn(1, 4, 8),), measure=False, progress=False)
    line = inspect.getsourcelines(cls.forward)[1]
    with pytest.raises(CompileError) as e:
        opt.save(tmp_path / "x")
    msg = str(e.value)
    assert "test_io_structures.py:" in msg, msg
    assert int(msg.split("test_io_structures.py:")[1].split()[0]) > line, msg
    assert __import__("re").search(op, msg) and __import__("re").search(hint, msg), msg
    assert not (tmp_path / "x").exists()          # nothing half-written
