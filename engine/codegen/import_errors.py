"""TVM's importer failures as engine errors: the op, the model's source line, a workaround.

TVM's torch importer raises a bare TypeError / AssertionError / TVMError naming neither the
node nor where it comes from ("Binary operators must have the same datatype ...",
"Unsupported function types ['i0.default']"). _tvm.import_exported_program finds the node it
was converting; this module turns that into a CompileError:

    TVM could not compile op aten.floor_divide (node floor_divide) at
    transformers/models/detr/modeling_detr.py:412 in forward: `dim_t = ...`: TypeError: ...
    workaround: torch.floor(a / b) instead of a // b (floor division of floats), or ...
"""
from __future__ import annotations

import os
import re

from ..errors import CompileError

# op name (as torch.export names it after decomposition) -> how to avoid it
WORKAROUNDS = {
    "floor_divide": "write torch.floor(a / b) instead of a // b or torch.div(a, b, "
                    "rounding_mode='floor') on float tensors (TVM's floor_divide takes one "
                    "dtype for both operands)",
    "div": "for rounding_mode='floor' / 'trunc' on floats, write torch.floor(a / b) / "
           "torch.trunc(a / b)",
    "cat": "leave out empty tensors before torch.cat (a KV cache that starts empty: pass "
           "use_cache=False in example_kwargs)",
    "concat": "leave out empty tensors before torch.cat (a KV cache that starts empty: pass "
              "use_cache=False in example_kwargs)",
}
GENERIC = ("rewrite that line with ops TVM's importer supports, or keep the model for opt(...) "
           "in Python (the host runtime runs any op torch runs); exclude= only keeps layers "
           "dense, it does not remove the op from the compiled graph")


def compile_error(err: BaseException, node, nodes: list) -> CompileError:
    """A CompileError naming node's op, its source line and a workaround for `err`."""
    first = (str(err).strip().splitlines() or [type(err).__name__])[0][:400]
    if node is None:
        return CompileError(f"TVM could not import the captured model: {type(err).__name__}: "
                            f"{first}; {GENERIC}")
    op = op_name(node)
    short = op.split(".")[1] if op.startswith("aten.") else op
    others = sorted({op_name(n) for n in nodes if op_name(n) != op})
    unsupported = "Unsupported function types" in str(err)
    what = ("TVM's importer has no conversion for op" if unsupported else
            "TVM could not compile op")
    more = f" (also unsupported: {', '.join(others)})" if unsupported and others else ""
    reason = "" if unsupported else f": {type(err).__name__}: {first}"
    hint = WORKAROUNDS.get(short, GENERIC)
    return CompileError(f"{what} {op} (node {node.name}){source_line(node)}{more}{reason}; "
                        f"workaround: {hint}")


def op_name(node) -> str:
    """'aten.floor_divide' for torch.ops.aten.floor_divide.Tensor, else the target's name."""
    target = node.target
    name = getattr(target, "__name__", str(target))
    ns = getattr(target, "namespace", None)
    base = name.split(".")[0]
    return f"{ns}.{base}" if ns else base


_PKG = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)\n\s*(.*)')


def source_line(node) -> str:
    """' at file:line in fn: `code`' for the model's innermost frame of the node's stack trace
    (torch.export records it in node.meta), '' when it has none. Frames of torch itself are
    skipped; the model's library code (e.g. transformers) is kept: that is where the op is."""
    trace = node.meta.get("stack_trace") or ""
    frames = [m for m in _FRAME.finditer(trace)
              if "/torch/" not in m.group(1) and not m.group(1).startswith(_PKG)]
    if not frames:
        return ""
    m = frames[-1]
    code = m.group(4).strip()
    return f" at {m.group(1)}:{m.group(2)} in {m.group(3)}" + (f": `{code}`" if code else "")


def build_error(err: BaseException, mod) -> CompileError:
    """A failure of tvm.compile after the import (legalization, scheduling, LLVM codegen) as a
    CompileError: TVM's message names a C++ check, not the op, so it says what stage failed,
    the dtypes of the graph's non-float ops (the usual culprits: integer / bool glue), and how
    to narrow it down."""
    text = str(err).strip()
    first = next((ln for ln in text.splitlines() if "Check failed" in ln or "Error" in ln),
                 text.splitlines()[0] if text else type(err).__name__)[:300]
    ops = set()
    try:
        for line in mod.script().splitlines():
            m = re.search(r'dtype="(bool|u?int\d+)"\) = (R\.\w+)', line)
            if m:
                ops.add(f"{m.group(2)}[{m.group(1)}]")
    except Exception:  # noqa: BLE001  (only for the message)
        pass
    glue = f"; the graph's integer / bool ops: {', '.join(sorted(ops)[:20])}" if ops else ""
    return CompileError(f"TVM could not build the compiled model: {type(err).__name__}: "
                        f"{first.strip()}{glue}; workaround: keep the model for opt(...) in "
                        f"Python, or rewrite the op (an integer / bool op in float form)")
