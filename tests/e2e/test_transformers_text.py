"""Tiny text transformers (random weights, no downloads) as users call them: int64 input_ids and
attention_mask, keyword inputs, ModelOutput outputs. Each is optimized with no model change,
opt(...) matches the masked reference and the dense model as the model returns it, the
artifact saves, loads and matches, and an arm64 artifact compiles."""
import json

import pytest
import torch

import engine

transformers = pytest.importorskip("transformers")


def _bert():
    cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64,
                                  max_position_embeddings=32)
    ids = torch.randint(0, 100, (1, 8))
    mask = torch.ones(1, 8, dtype=torch.int64)
    mask[0, 6:] = 0                                   # padding: the mask matters
    return transformers.BertModel(cfg).eval(), (ids,), {"attention_mask": mask}


def _gpt2():
    cfg = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=32,
                                  bos_token_id=0, eos_token_id=0)
    return (transformers.GPT2Model(cfg).eval(), (torch.randint(0, 100, (1, 8)),),
            {"use_cache": False})


def _t5():
    cfg = transformers.T5Config(vocab_size=100, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                                num_heads=2)
    return transformers.T5EncoderModel(cfg).eval(), (torch.randint(0, 100, (1, 8)),), {}


MODELS = {"bert": _bert, "gpt2": _gpt2, "t5": _t5}


def _max_err(a, b) -> float:
    return max((x - y).abs().max().item() for x, y in zip(a.values(), b.values()))


@pytest.mark.parametrize("name", list(MODELS))
def test_text_model_optimize_save_load(name, tmp_path):
    torch.manual_seed(0)
    model, args, kwargs = MODELS[name]()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        dense = model(*args, **kwargs)
    opt = engine.optimize(model, args, example_kwargs=kwargs, sparsity=0.5, measure=False,
                          progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pruned = [c for c in opt.plan if c.pruned]
    if name != "gpt2":          # GPT-2's Conv1D layers are not listed yet: it stays dense
        assert pruned, opt.plan
    got = opt(*args, **kwargs)
    assert type(got) is type(dense) and list(got.keys()) == list(dense.keys())
    with torch.no_grad():
        ref = opt.pruned_model(*args, **kwargs)
    assert _max_err(got, ref) < 1e-4
    if not pruned:
        assert _max_err(got, dense) < 1e-4
    # keyword tensors by name or position alike; the example's settings are kept
    if "attention_mask" in kwargs:
        assert _max_err(opt(args[0], kwargs["attention_mask"]), ref) < 1e-4

    opt.save(tmp_path / "art")
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    names = ["input_ids"] + [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
    assert [(s["name"], s["dtype"]) for s in manifest["inputs"]] == [(n, "int64") for n in names]
    assert [s["name"] for s in manifest["outputs"]] == list(dense.keys())
    art = engine.load(tmp_path / "art")
    tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    loaded = art(*args, **tensors)
    assert list(loaded.keys()) == list(dense.keys())
    assert loaded.last_hidden_state is loaded["last_hidden_state"] is loaded[0]
    assert _max_err(loaded, ref) < 1e-4
    # numpy inputs: numpy outputs, same values
    np_out = art(*(a.numpy() for a in args), **{k: v.numpy() for k, v in tensors.items()})
    assert abs(np_out[0] - ref[0].numpy()).max() < 1e-4


def test_bert_arm64_artifact_compiles(tmp_path):
    from engine.targets import get_target
    from engine.targets.toolchain import cross_compiler
    try:
        cross_compiler(get_target("arm64"))
    except engine.errors.ConfigError as e:
        pytest.skip(str(e))
    torch.manual_seed(0)
    model, args, kwargs = _bert()
    opt = engine.optimize(model, args, example_kwargs=kwargs, sparsity=0.5, measure=False,
                          progress=False)
    opt.save(tmp_path / "arm", target="arm64")
    manifest = json.loads((tmp_path / "arm" / "manifest.json").read_text())
    assert manifest["target"]["arch"] == "aarch64"
    assert [s["dtype"] for s in manifest["inputs"]] == ["int64", "int64"]
    head = (tmp_path / "arm" / "model.so").read_bytes()[:20]
    assert head[:4] == b"\x7fELF" and int.from_bytes(head[18:20], "little") == 183  # EM_AARCH64
