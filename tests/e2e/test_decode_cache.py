"""A decoder's one-token step with its KV cache, as a user runs it: GPT-2 with a transformers
DynamicCache passed as `cache=`. The engine optimizes it without touching the user's cache,
opt(...) updates a cache in place as the model does, and the artifact takes the cache's
tensors (or the cache itself) and returns the new cache. Tiny configs, random weights."""
import json

import pytest
import torch

import engine
from engine.errors import ConfigError, InputError

transformers = pytest.importorskip("transformers")

P = 12                              # tokens already in the cache


def _gpt2():
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=100, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                  bos_token_id=0, eos_token_id=0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    with torch.no_grad():
        cache = model(torch.randint(0, 100, (1, P)), use_cache=True).past_key_values
    return model, cache, torch.randint(0, 100, (1, 1))


def _kv(cache) -> list:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _copy(cache):
    from engine.graph.containers import fresh
    return fresh(cache)


@pytest.fixture(scope="module")
def decoded():
    model, cache, nxt = _gpt2()
    before = [(k.clone(), v.clone()) for k, v in _kv(cache)]
    opt = engine.optimize(model, (nxt,), example_kwargs={"cache": cache, "use_cache": True},
                          sparsity=0.5, measure=False, progress=False)
    return model, cache, nxt, before, opt


def test_user_cache_untouched_by_optimize(decoded):
    model, cache, nxt, before, opt = decoded
    assert cache.get_seq_length() == P
    assert all(torch.equal(k, k0) and torch.equal(v, v0)
               for (k, v), (k0, v0) in zip(_kv(cache), before))
    assert sum(c.pruned for c in opt.plan) >= 6          # c_attn, c_proj, c_fc, mlp c_proj


def test_decode_step_matches_masked_reference(decoded):
    model, cache, nxt, _, opt = decoded
    mine = _copy(cache)
    got = opt(nxt, cache=mine, use_cache=True)
    with torch.no_grad():
        ref = opt.pruned_model(nxt, cache=_copy(cache), use_cache=True)
        dense = model(nxt, cache=_copy(cache), use_cache=True)
    assert type(got) is type(dense)
    assert (got.logits - ref.logits).abs().max().item() < 1e-4
    assert (got.logits - dense.logits).abs().max().item() > 1e-3    # pruned: not the dense
    # the user's cache object grew by the token, as the model's own call grows it
    assert mine.get_seq_length() == P + 1 and got.past_key_values is mine
    for (k, v), (rk, rv) in zip(_kv(mine), _kv(ref.past_key_values)):
        assert k.shape[-2] == P + 1
        assert (k - rk).abs().max().item() < 1e-4 and (v - rv).abs().max().item() < 1e-4
    # a longer cache runs too in opt(...) (the host runtime is not shape-specialised)
    again = opt(nxt, cache=mine, use_cache=True)
    assert mine.get_seq_length() == P + 2 and torch.isfinite(again.logits).all()


def test_decode_artifact_takes_and_returns_the_cache(decoded, tmp_path):
    _, cache, nxt, _, opt = decoded
    opt.save(tmp_path / "art")
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    names = [s["name"] for s in manifest["inputs"]]
    assert names[0] == "input_ids" and names[1:] == \
        [f"cache.key_cache.{i}" for i in range(2)] + [f"cache.value_cache.{i}" for i in range(2)]
    assert manifest["inputs"][1]["shape"] == [1, 2, P, 16]
    art = engine.load(tmp_path / "art")
    with torch.no_grad():
        ref = opt.pruned_model(nxt, cache=_copy(cache), use_cache=True)
    flat = [k for k, _ in _kv(cache)] + [v for _, v in _kv(cache)]
    by_tensors = art(nxt, *flat)
    by_cache = art(nxt, cache)                       # the DynamicCache itself
    for out in (by_tensors, by_cache):
        assert (out.logits - ref.logits).abs().max().item() < 1e-4
        new = list(out.values())[1]                  # the returned cache: key_cache, value_cache
        assert list(new.keys()) == ["key_cache", "value_cache"]
        for got, want in zip(new["value_cache"], [layer.values for layer in ref.past_key_values.layers]):
            assert got.shape[-2] == P + 1 and (got - want).abs().max().item() < 1e-4
    assert cache.get_seq_length() == P


def test_cache_of_another_structure_refused(decoded):
    model, cache, nxt, _, opt = decoded
    with pytest.raises(InputError, match="cache"):
        opt(nxt, cache={"key_cache": [1]}, use_cache=True)


def test_empty_or_static_cache_refused_with_reason():
    model, cache, nxt = _gpt2()
    with pytest.raises(ConfigError, match="use_cache=False"):
        engine.optimize(model, (nxt,), example_kwargs={"cache": transformers.DynamicCache(),
                                                      "use_cache": True},
                        sparsity=0.5, measure=False, progress=False)
    static = transformers.StaticCache(config=model.config, max_cache_len=32)
    with pytest.raises(ConfigError, match="StaticCache"):
        engine.optimize(model, (nxt,), example_kwargs={"cache": static, "use_cache": True},
                        sparsity=0.5, measure=False, progress=False)


def test_decode_arm64_artifact_matches_under_qemu(decoded, tmp_path):
    from engine.bench.qemu import arm64_runner, run_arm64
    try:
        runner = arm64_runner()
    except ConfigError as e:
        pytest.skip(str(e))
    _, cache, nxt, _, opt = decoded
    path = opt.save(tmp_path / "arm", target="arm64")
    flat = [k for k, _ in _kv(cache)] + [v for _, v in _kv(cache)]
    outs = run_arm64(runner, path, [nxt] + flat)
    with torch.no_grad():
        ref = opt.pruned_model(nxt, cache=_copy(cache), use_cache=True)
    want = [ref.logits] + [layer.keys for layer in ref.past_key_values.layers] + \
        [layer.values for layer in ref.past_key_values.layers]
    assert len(outs) == len(want)
    for got, w in zip(outs, want):
        assert got.shape == tuple(w.shape)
        assert abs(got - w.numpy()).max() < 1e-4 * max(1.0, w.abs().max().item())
