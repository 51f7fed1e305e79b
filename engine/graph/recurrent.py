"""nn.LSTM / nn.GRU / nn.RNN as linears the engine can prune (issue P8).

A recurrent layer is, for each layer k and direction, two matrix products and gates:

    gi = x @ W_ih^T + b_ih                 the whole sequence at once (T*B rows: a token linear)
    per step t:  gh = h @ W_hh^T + b_hh    (B rows: at batch 1 the GEMV)
                 h, c = gates(gi[t], gh, h, c)    (torch ops)

`decompose_recurrent` replaces each supported recurrent module of the engine's working copy of
a model (never the user's model) by a `Recurrent` module computing what torch's layer computes,
whose children are plain nn.Linear layers; layer discovery, the mappers, pruning, lowering and
compiling then treat them as any linear. Their names map back to torch's parameters:

    <module>.l{k}.ih           weight_ih_l{k}, bias_ih_l{k}           input projection
    <module>.l{k}.hh           weight_hh_l{k}, bias_hh_l{k}           recurrent projection
    <module>.l{k}_reverse.ih   weight_ih_l{k}_reverse, ...            backward direction

e.g. layer "encoder.lstm.l1.hh" is torch's encoder.lstm.weight_hh_l1. A `Recurrent` answers
torch's attribute names (weight_ih_l0, hidden_size, batch_first, flatten_parameters(), ...);
`restore_recurrent` gives back a model with torch's layers holding the (masked) weights.

The time loop is Python: torch.export unrolls it (the engine's shapes are static), the host
runtime runs it with the lowered linears in place (engine.lowering.host keeps a Recurrent a
leaf of the fx trace). Each replacement is checked on the calls the example inputs make: its
outputs must match torch's module, or the decomposition fails loudly.

Left as torch's module, dense, with the reason listed (engine.graph.weights): LSTMs with
proj_size, layers called with a PackedSequence, subclasses with a forward of their own, layers
the user excludes, layers not called on the example inputs, weights not float32.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from ..errors import InputError, LoweringError
from .inputs import run_hooked
from .layers import set_module

# mode (torch's RNNBase.mode) -> number of gates (rows of W_ih / W_hh per hidden unit)
GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}
_TORCH = (nn.LSTM, nn.GRU, nn.RNN)
_PARAM = re.compile(r"(weight|bias)_(ih|hh)_l(\d+)(_reverse)?")
TOLERANCE = 1e-4   # decomposed vs torch's module on the example calls, relative to max |out|


class Direction(nn.Module):
    """One layer, one direction: its input projection and its recurrent projection."""

    def __init__(self, ih: nn.Linear, hh: nn.Linear):
        super().__init__()
        self.ih, self.hh = ih, hh


class Recurrent(nn.Module):
    """torch's LSTM / GRU / RNN (proj_size 0) over plain nn.Linear children; same call
    signature, same outputs: (output, (h_n, c_n)) for an LSTM, (output, h_n) otherwise."""

    def __init__(self, mode: str, input_size: int, hidden_size: int, num_layers: int = 1,
                 bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
                 bidirectional: bool = False, device=None, dtype=None):
        super().__init__()
        if mode not in GATES:
            raise ValueError(f"mode must be one of {sorted(GATES)}, got {mode!r}")
        self.mode, self.input_size, self.hidden_size = mode, input_size, hidden_size
        self.num_layers, self.bias, self.batch_first = num_layers, bias, batch_first
        self.dropout, self.bidirectional, self.proj_size = float(dropout), bidirectional, 0
        rows, kw = GATES[mode] * hidden_size, {"device": device, "dtype": dtype}
        for k in range(num_layers):
            width = input_size if k == 0 else hidden_size * self.directions
            for sfx in self._suffixes():
                self.add_module(f"l{k}{sfx}", Direction(nn.Linear(width, rows, bias, **kw),
                                                        nn.Linear(hidden_size, rows, bias, **kw)))

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def nonlinearity(self) -> str:
        return "relu" if self.mode == "RNN_RELU" else "tanh"

    def _suffixes(self) -> tuple:
        return ("", "_reverse") if self.bidirectional else ("",)

    def param_names(self, prefix: str = "") -> dict:
        """layer name -> torch's weight name, e.g. {"lstm.l0.ih": "lstm.weight_ih_l0"}."""
        pre = prefix + "." if prefix else ""
        return {f"{pre}l{k}{s}.{w}": f"{pre}weight_{w}_l{k}{s}"
                for k in range(self.num_layers) for s in self._suffixes() for w in ("ih", "hh")}

    @classmethod
    def from_torch(cls, mod: nn.RNNBase) -> "Recurrent":
        """The Recurrent computing what `mod` computes, holding copies of its weights."""
        w = mod.weight_ih_l0
        new = cls(mod.mode, mod.input_size, mod.hidden_size, mod.num_layers, mod.bias,
                  mod.batch_first, mod.dropout, mod.bidirectional, w.device, w.dtype)
        with torch.no_grad():
            for name, p in _linear_params(new).items():
                p.copy_(getattr(mod, name))
                p.requires_grad_(getattr(mod, name).requires_grad)
        return new.train(mod.training)

    def to_torch(self) -> nn.RNNBase:
        """torch's module holding this one's current weights (pruned ones as they are)."""
        lin = self.l0.ih.weight
        cls = {"LSTM": nn.LSTM, "GRU": nn.GRU}.get(self.mode, nn.RNN)
        kw = {"nonlinearity": self.nonlinearity} if cls is nn.RNN else {}
        out = cls(self.input_size, self.hidden_size, num_layers=self.num_layers,
                  bias=self.bias, batch_first=self.batch_first, dropout=self.dropout,
                  bidirectional=self.bidirectional, device=lin.device, dtype=lin.dtype, **kw)
        with torch.no_grad():
            for name, p in _linear_params(self).items():
                getattr(out, name).copy_(p)
        return out.train(self.training)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            m = _PARAM.fullmatch(name)
            if m is None or (m.group(1) == "bias" and not self.bias):
                raise
            d = self._modules.get(f"l{m.group(3)}{m.group(4) or ''}")
            if d is None:
                raise
            return getattr(getattr(d, m.group(2)), m.group(1))

    def flatten_parameters(self) -> None:
        """torch's cuDNN weight-layout call: nothing to do here (no flat weight buffer)."""

    def extra_repr(self) -> str:
        return (f"{self.mode}, {self.input_size}, {self.hidden_size}, num_layers="
                f"{self.num_layers}, bias={self.bias}, batch_first={self.batch_first}, "
                f"bidirectional={self.bidirectional}")

    def forward(self, input, hx=None):
        if isinstance(input, PackedSequence) or not isinstance(input, torch.Tensor) or \
                input.dim() not in (2, 3):
            got = type(input).__name__ if not isinstance(input, torch.Tensor) else \
                f"shape {tuple(input.shape)}"
            raise InputError(f"{self.mode} (engine.graph.recurrent.Recurrent) takes a 2-D or "
                             f"3-D tensor, got {got}")
        batched = input.dim() == 3
        if not batched:            # torch's unbatched form: (T, I), hx (L*D, H)
            input, hx = input.unsqueeze(1), _map(hx, lambda t: t.unsqueeze(1))
        tdim = 1 if self.batch_first and batched else 0
        h0, c0 = self._initial(hx, input, int(input.shape[1 - tdim]))
        x, hs, cs = input, [], []
        for k in range(self.num_layers):
            outs = []
            for d, sfx in enumerate(self._suffixes()):
                i = k * self.directions + d
                seq, h, c = self._direction(getattr(self, f"l{k}{sfx}"), x, tdim, h0[i],
                                            None if c0 is None else c0[i], bool(d))
                outs.append(seq)
                hs.append(h)
                cs.append(c)
            x, tdim = (outs[0] if len(outs) == 1 else torch.cat(outs, -1)), 0
            if self.dropout and self.training and k < self.num_layers - 1:
                x = F.dropout(x, self.dropout, True)
        out = x.transpose(0, 1) if self.batch_first and batched else x
        h_n = torch.stack(hs, 0)
        c_n = torch.stack(cs, 0) if self.mode == "LSTM" else None
        if not batched:
            out, h_n, c_n = out.squeeze(1), h_n.squeeze(1), _map(c_n, lambda t: t.squeeze(1))
        return (out, (h_n, c_n)) if self.mode == "LSTM" else (out, h_n)

    def _initial(self, hx, x: torch.Tensor, batch: int) -> tuple:
        """(h0, c0), each (L*D, B, H); zeros where hx is None (c0 None but for an LSTM)."""
        if hx is None:
            z = x.new_zeros(self.num_layers * self.directions, batch, self.hidden_size)
            return z, (z if self.mode == "LSTM" else None)
        if self.mode == "LSTM":
            return hx[0], hx[1]
        return hx, None

    def _direction(self, d: Direction, x: torch.Tensor, tdim: int, h, c, reverse: bool):
        """(outputs (T, B, H), last h, last c) of one direction over x (time on `tdim`)."""
        gi = d.ih(x)               # every step's input projection at once
        steps = int(x.shape[tdim])
        outs: list = [None] * steps
        for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
            h, c = self._cell(gi.select(tdim, t), d.hh(h), h, c)
            outs[t] = h
        return torch.stack(outs, 0), h, c

    def _cell(self, gi: torch.Tensor, gh: torch.Tensor, h, c) -> tuple:
        """One step's gates, torch's formulas (gate order: LSTM i f g o, GRU r z n)."""
        if self.mode == "LSTM":
            i, f, g, o = (gi + gh).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            return torch.sigmoid(o) * torch.tanh(c), c
        if self.mode == "GRU":
            ir, iz, inn = gi.chunk(3, 1)
            hr, hz, hn = gh.chunk(3, 1)
            r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
            n = torch.tanh(inn + r * hn)
            return n + z * (h - n), c
        a = gi + gh
        return (torch.tanh(a) if self.mode == "RNN_TANH" else torch.relu(a)), c


def _map(v, fn):
    if v is None:
        return None
    if isinstance(v, (tuple, list)):
        return type(v)(fn(t) for t in v)
    return fn(v)


def _linear_params(rec: Recurrent) -> dict:
    """torch's parameter name -> the Recurrent's parameter holding it."""
    out = {}
    for k in range(rec.num_layers):
        for s in rec._suffixes():
            d = getattr(rec, f"l{k}{s}")
            for w in ("ih", "hh"):
                lin = getattr(d, w)
                out[f"weight_{w}_l{k}{s}"] = lin.weight
                if lin.bias is not None:
                    out[f"bias_{w}_l{k}{s}"] = lin.bias
    return out


@dataclass
class RecurrentRecord:
    """What decompose_recurrent did: decomposed modules (name -> {"kind", "layers": {layer:
    torch weight name}}) and the recurrent modules kept as torch's (name -> reason)."""

    decomposed: dict = field(default_factory=dict)
    kept: dict = field(default_factory=dict)

    def to_meta(self) -> dict:
        return {"decomposed": copy.deepcopy(self.decomposed), "kept": dict(self.kept)}


def _kind(mod: nn.Module) -> str:
    return type(mod).__name__


def why_kept(mod: nn.Module, calls: list) -> str:
    """Why recurrent module `mod` stays torch's module (dense), or '' when it decomposes.
    calls: the (args, kwargs) it was called with on the example inputs."""
    base = next((c for c in _TORCH if isinstance(mod, c)), None)
    kind = _kind(mod)
    if base is None or getattr(mod, "mode", None) not in GATES:
        return f"{kind}: a recurrent layer type the engine cannot decompose; runs in torch, dense"
    if type(mod).forward is not base.forward:
        return (f"{kind}.forward is its own, not torch's {base.__name__}.forward: the engine "
                f"cannot decompose it; runs in torch, dense")
    if getattr(mod, "proj_size", 0):
        return (f"{kind} with proj_size={mod.proj_size}: projected LSTMs are not decomposed "
                f"into prunable linears yet; runs in torch, dense")
    bad = sorted({str(p.dtype).replace("torch.", "") for p in mod.parameters()
                  if p.dtype != torch.float32})
    if bad:
        return (f"{kind} weights are {'/'.join(bad)}: the kernels compute in float32; runs in "
                f"torch, dense")
    if not calls:
        return f"{kind} not called on the example inputs; left dense"
    for args, kwargs in calls:
        x = args[0] if args else kwargs.get("input")
        if isinstance(x, PackedSequence):
            return (f"{kind} called with a PackedSequence: variable-length batches are not "
                    f"decomposed (pad to a fixed length to prune it); runs in torch, dense")
        if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
            return f"{kind} called with an input it does not decompose for; runs in torch, dense"
    return ""


def _probe(model: nn.Module, example_inputs, mods: list) -> dict:
    """id(module) -> the first two (args, kwargs) each of `mods` is called with."""
    calls: dict = {}

    def hook(m, args, kwargs):
        seen = calls.setdefault(id(m), [])
        if len(seen) < 2:
            seen.append((args, dict(kwargs)))

    run_hooked(model, example_inputs,
               [m.register_forward_pre_hook(hook, with_kwargs=True) for m in mods])
    return calls


def _tensors(v) -> list:
    if isinstance(v, torch.Tensor):
        return [v]
    if isinstance(v, (tuple, list)):
        return [t for item in v for t in _tensors(item)]
    return []


def _check_same(name: str, old: nn.Module, new: Recurrent, calls: list) -> None:
    """The postcondition: `new` gives `old`'s outputs on every recorded call."""
    with torch.no_grad():
        for args, kwargs in calls:
            ref, got = _tensors(old(*args, **kwargs)), _tensors(new(*args, **kwargs))
            for r, g in zip(ref, got):
                err = float((r - g).abs().max()) if r.shape == g.shape else float("inf")
                if len(ref) != len(got) or err > TOLERANCE * max(1.0, float(r.abs().max())):
                    raise LoweringError(
                        f"decomposing {_kind(old)} {name!r} into linears changed its output "
                        f"(max abs err {err:.3g} on input {tuple(_tensors(args)[0].shape)}); "
                        f"exclude=[{name!r}] keeps it as torch's module")


def _excluded(name: str, exclude) -> bool:
    return any(name == e or name.startswith(e + ".") for e in exclude)


def decompose_recurrent(model: nn.Module, example_inputs, exclude=()) -> RecurrentRecord:
    """Replace, in place, each supported recurrent module of `model` (the engine's working
    copy) by its Recurrent; the record says what was decomposed and why the rest was not."""
    record = RecurrentRecord()
    paths: dict = {}
    for name, mod in model.named_modules(remove_duplicate=False):
        if isinstance(mod, nn.RNNBase):
            paths.setdefault(id(mod), (mod, []))[1].append(name)
    if not paths:
        return record
    calls = _probe(model, example_inputs, [m for m, _ in paths.values()])
    for mod, names in paths.values():
        name = names[0]
        why = ("excluded by the user; runs in torch, dense"
               if any(_excluded(n, exclude) for n in names) else why_kept(mod, calls.get(id(mod))))
        if why:
            record.kept[name] = why
            continue
        new = Recurrent.from_torch(mod)
        _check_same(name, mod, new, calls[id(mod)])
        for n in names:
            set_module(model, n, new)
        record.decomposed[name] = {"kind": _kind(mod), "layers": new.param_names(name)}
    return record


def keep_all(model: nn.Module, reason: str) -> RecurrentRecord:
    """A record keeping every recurrent module of `model` as torch's, for `reason`."""
    return RecurrentRecord(kept={n: f"{_kind(m)}: {reason}; runs in torch, dense"
                                 for n, m in model.named_modules() if isinstance(m, nn.RNNBase)})


def restore_recurrent(model: nn.Module) -> nn.Module:
    """A copy of `model` with every Recurrent back as torch's module, holding its current
    weights (e.g. opt.pruned_model with the masked weights in torch's nn.LSTM / nn.GRU)."""
    out = copy.deepcopy(model)
    made: dict = {}          # a module shared by several paths stays shared
    for name, mod in list(out.named_modules(remove_duplicate=False)):
        if isinstance(mod, Recurrent):
            if id(mod) not in made:
                made[id(mod)] = mod.to_torch()
            set_module(out, name, made[id(mod)])
    return out
