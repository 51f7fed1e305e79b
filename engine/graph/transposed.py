"""nn.ConvTranspose2d as stride-1 convolutions (the sub-pixel / phase decomposition), so the
engine prunes, lowers and compiles an up-sampling layer like any conv.

A transposed conv of stride s writes output row Y = i*s - p + ky from input row i and kernel row
ky. Output rows of one phase a = Y mod s read only the kernel rows ky = r, r + s, r + 2s, ...
(r = (a + p) mod s), from consecutive input rows: phase a is a plain stride-1 correlation of
the input with those kernel rows, flipped and transposed ((in, out) -> (out, in)). Per
dimension, so an s x s stride gives s*s phase convs; their outputs interleaved (a pixel
shuffle) and cropped are the transposed conv's output, bias included.

Phases whose sub-kernels have the same size are one nn.Conv2d: its output channels are the
phases' in raster order (a, b), each phase `out_channels` consecutive rows, so block pruning
over output channels keeps to one phase. A U-Net's 2x2 stride-2 up-conv is one 1x1 conv with
4 * out channels; a 4x4 stride-2 padding-1 one (DCGAN, pix2pix) one 2x2 conv; 3x3 stride 2
four convs (2x2, 2x1, 1x2, 1x1). The geometry is fixed by kernel, stride, padding and
output_padding alone (any input size), with the output_padding the example run showed (so a
forward passing output_size gets the size it asked for at the example's shape).

Names: the user's layer `up` becomes a PhaseConvTranspose2d at `up` whose convs are
`up.p{kh}x{kw}` (sub-kernel size), listed, pruned and reported under those names; the plan's
meta["decomposed"] maps each user layer to them. to_conv_transpose() folds the (masked) weights
back into the user's nn.ConvTranspose2d. Other transposed convs (groups, dilation, a kernel
smaller than its stride, 1-D / 3-D) stay the user's module, dense, with the reason."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import nn

from .inputs import run_hooked


@dataclass(frozen=True)
class Phase1d:
    """One output phase a of one dimension: kernel taps `taps` (correlation order, i.e.
    flipped) read input positions u + offset + t for output position a + u*s."""

    a: int
    taps: tuple
    offset: int


def phases_1d(k: int, s: int, p: int) -> list:
    """The s output phases of one dimension of a transposed conv (kernel k, stride s, pad p)."""
    out = []
    for a in range(s):
        r, d = (a + p) % s, (a + p) // s
        m = len(range(r, k, s))
        out.append(Phase1d(a, tuple(r + (m - 1 - t) * s for t in range(m)), d - (m - 1)))
    return out


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class Geometry1d:
    """One dimension: extra = output size minus input * stride (a constant), `rows` = output
    rows per phase minus input rows, crop = interleaved rows past the output."""

    k: int
    s: int
    p: int
    op: int

    @property
    def extra(self) -> int:
        return self.k + self.op - 2 * self.p - self.s

    @property
    def rows(self) -> int:
        return _ceil_div(self.extra, self.s)

    @property
    def crop(self) -> int:
        return self.rows * self.s - self.extra

    def padding(self, phases: list) -> int:
        """The symmetric conv padding at which every phase of `phases` (same tap count) finds
        its window inside the conv's output."""
        m = len(phases[0].taps)
        return max([0] + [-ph.offset for ph in phases] +
                   [self.rows - 1 + ph.offset + m for ph in phases])

    def window(self, ph: Phase1d, pad: int) -> tuple:
        """(start, tail): the phase's rows are conv output[start : len - tail]."""
        m = len(ph.taps)
        start = ph.offset + pad
        return start, pad - m + 1 - ph.offset - self.rows


def unsupported(mod: nn.Module) -> Optional[str]:
    """Why a ConvTranspose2d is not decomposed (kept the user's, dense), or None."""
    name = type(mod).__name__
    if type(mod).forward is not nn.ConvTranspose2d.forward:
        return f"{name}.forward is its own: runs as the model's module, dense"
    why = []
    if mod.groups != 1:
        why.append(f"groups={mod.groups}")
    if tuple(mod.dilation) != (1, 1):
        why.append(f"dilation={tuple(mod.dilation)}")
    if any(k < s for k, s in zip(mod.kernel_size, mod.stride)):
        why.append(f"kernel {tuple(mod.kernel_size)} smaller than stride {tuple(mod.stride)}")
    if mod.padding_mode != "zeros":
        why.append(f"padding_mode={mod.padding_mode!r}")
    if not why:
        return None
    return (f"ConvTranspose2d with {', '.join(why)}: the phase decomposition into stride-1 convs "
            f"covers groups=1, dilation 1, kernel >= stride; runs in torch, dense")


class PhaseConvTranspose2d(nn.Module):
    """An nn.ConvTranspose2d (groups 1, dilation 1) as stride-1 phase convs (children
    `p{kh}x{kw}`), interleaved and cropped: the same outputs. Keeps the attributes a forward
    may read (kernel_size, stride, padding, output_padding, in/out_channels, ...) and `weight` /
    `bias` as the transposed conv's, read-only, assembled from the phase convs."""

    def __init__(self, conv: nn.ConvTranspose2d, output_padding: tuple, layer: str = ""):
        super().__init__()
        self.layer = layer
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self.kernel_size, self.stride = tuple(conv.kernel_size), tuple(conv.stride)
        self.padding, self.output_padding = tuple(conv.padding), tuple(output_padding)
        self.dilation, self.groups, self.padding_mode = (1, 1), 1, "zeros"
        self.geo = tuple(Geometry1d(k, s, p, op) for k, s, p, op in zip(
            self.kernel_size, self.stride, self.padding, self.output_padding))
        ph_y, ph_x = (phases_1d(g.k, g.s, g.p) for g in self.geo)
        groups: dict = {}
        for py in ph_y:
            for px in ph_x:
                groups.setdefault((len(py.taps), len(px.taps)), []).append((py, px))
        self.names, self.slices = [], []     # per conv: [(phase index, rows, cols)]
        for (mh, mw), members in groups.items():
            name = f"p{mh}x{mw}"
            pad = (self.geo[0].padding([py for py, _ in members]),
                   self.geo[1].padding([px for _, px in members]))
            sub = nn.Conv2d(self.in_channels, self.out_channels * len(members), (mh, mw),
                            padding=pad, bias=conv.bias is not None,
                            device=conv.weight.device, dtype=conv.weight.dtype)
            self._fill(sub, conv, members)
            self.add_module(name, sub.train(conv.training))
            self.names.append(name)
            self.slices.append([(py.a * self.stride[1] + px.a, self.geo[0].window(py, pad[0]),
                                 self.geo[1].window(px, pad[1])) for py, px in members])
        self.direct = len(self.names) == 1 and len({s[1:] for s in self.slices[0]}) == 1 and \
            [s[0] for s in self.slices[0]] == list(range(len(self.slices[0])))

    def _fill(self, sub: nn.Conv2d, conv: nn.ConvTranspose2d, members: list) -> None:
        """sub's weight rows: per phase, W[c, o, ky, kx] -> (o, c, ty, tx) at its taps."""
        c_out = self.out_channels
        with torch.no_grad():
            for j, (py, px) in enumerate(members):
                w = conv.weight[:, :, list(py.taps)][:, :, :, list(px.taps)]
                sub.weight[j * c_out:(j + 1) * c_out].copy_(w.transpose(0, 1))
                if conv.bias is not None:
                    sub.bias[j * c_out:(j + 1) * c_out].copy_(conv.bias)

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:
        c, (sy, sx) = self.out_channels, self.stride
        if self.direct:                  # one conv, its phases in raster order, one window
            (_, (r0, rt), (c0, ct)) = self.slices[0][0]
            z = getattr(self, self.names[0])(x)[:, :, r0:(-rt or None), c0:(-ct or None)]
        else:
            parts: list = [None] * (sy * sx)
            for name, slices in zip(self.names, self.slices):
                y = getattr(self, name)(x)
                for j, (ph, (r0, rt), (c0, ct)) in enumerate(slices):
                    parts[ph] = y[:, j * c:(j + 1) * c, r0:(-rt or None), c0:(-ct or None)]
            z = torch.cat(parts, 1)
        z = z.unflatten(1, (sy, sx, c)).permute(0, 3, 4, 1, 5, 2).flatten(4, 5).flatten(2, 3)
        z = z[:, :, :(-self.geo[0].crop or None), :(-self.geo[1].crop or None)]
        if isinstance(output_size, (tuple, list, torch.Size)) and all(
                isinstance(v, int) for v in output_size) and \
                tuple(output_size[-2:]) != tuple(z.shape[-2:]):
            raise ValueError(f"layer {self.layer!r}: output_size {tuple(output_size)} differs from "
                             f"the output {tuple(z.shape[-2:])} its phase convs were built for "
                             f"(output_padding {self.output_padding}, from the example run)")
        return z

    def to_conv_transpose(self) -> nn.ConvTranspose2d:
        """The user's nn.ConvTranspose2d with the phase convs' current (e.g. masked) weights."""
        first = getattr(self, self.names[0])
        out = nn.ConvTranspose2d(self.in_channels, self.out_channels, self.kernel_size,
                                 self.stride, self.padding, self.output_padding,
                                 bias=first.bias is not None, device=first.weight.device,
                                 dtype=first.weight.dtype)
        ph_y, ph_x = (phases_1d(g.k, g.s, g.p) for g in self.geo)
        c = self.out_channels
        with torch.no_grad():
            for name, slices in zip(self.names, self.slices):
                sub = getattr(self, name)
                for j, (ph, _, _) in enumerate(slices):
                    py, px = ph_y[ph // self.stride[1]], ph_x[ph % self.stride[1]]
                    w = sub.weight[j * c:(j + 1) * c].transpose(0, 1)
                    for ty, ky in enumerate(py.taps):
                        out.weight[:, :, ky, list(px.taps)] = w[:, :, ty]
            if first.bias is not None:
                out.bias.copy_(first.bias[:c])
        return out.train(self.training)

    @property
    def weight(self) -> torch.Tensor:
        return self.to_conv_transpose().weight.detach()

    @property
    def bias(self) -> Optional[torch.Tensor]:
        b = getattr(self, self.names[0]).bias
        return None if b is None else b[:self.out_channels].detach()

    def extra_repr(self) -> str:
        return (f"{self.layer}: ConvTranspose2d({self.in_channels}, {self.out_channels}, "
                f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"output_padding={self.output_padding}) as phase convs {self.names}")


def _observed_output_padding(model: nn.Module, example_inputs: tuple) -> dict:
    """{name: output_padding} of every nn.ConvTranspose2d called on the example inputs, as its
    output shows it (a forward passing output_size picks its own)."""
    seen: dict = {}
    hooks = []

    def hook_for(name):
        def hook(m, inputs, output):
            if name not in seen and inputs[0].dim() == 4:
                seen[name] = tuple(
                    int(ho) - ((int(h) - 1) * s - 2 * p + k) for ho, h, s, p, k in zip(
                        output.shape[-2:], inputs[0].shape[-2:], m.stride, m.padding,
                        m.kernel_size))
        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, nn.ConvTranspose2d):
            hooks.append(mod.register_forward_hook(hook_for(name)))
    if not hooks:
        return seen
    run_hooked(model, example_inputs, hooks)
    return seen


def decompose_transposed(model: nn.Module, example_inputs: tuple) -> dict:
    """Replace, in `model` (the engine's working copy, never the user's), every
    nn.ConvTranspose2d the example run calls and the decomposition covers by its
    PhaseConvTranspose2d; returns {layer: [its phase conv names]}."""
    done: dict = {}
    for name, op in _observed_output_padding(model, example_inputs).items():
        conv = model.get_submodule(name)
        if unsupported(conv) is not None:
            continue
        new = PhaseConvTranspose2d(conv, op, name)
        parents = [(mod, child_name) for mod in model.modules()       # every alias of it
                   for child_name, child in mod._modules.items() if child is conv]
        for mod, child_name in parents:
            setattr(mod, child_name, new)
        done[name] = [f"{name}.{n}" for n in new.names]
    return done


def fold_phase_convs(model: nn.Module) -> nn.Module:
    """A copy of `model` (e.g. opt.pruned_model) with every PhaseConvTranspose2d folded back
    into the user's nn.ConvTranspose2d, its (masked) weights kept: the user's architecture."""
    import copy
    out = copy.deepcopy(model)
    for mod in list(out.modules()):
        for child_name, child in list(mod._modules.items()):
            if isinstance(child, PhaseConvTranspose2d):
                setattr(mod, child_name, child.to_conv_transpose())
    return out
