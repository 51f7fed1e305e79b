"""Compiler-integrated structured pruning engine for mobile inference.

    opt = engine.optimize(model, example_inputs=(x,), target="host",
                          scheme="block", block=(4, 1), sparsity=0.8)
    y = opt(x)
"""
__version__ = "0.1.0"


def __getattr__(name):  # lazy: `import engine` stays cheap and torch-free until used
    if name in ("optimize", "OptimizedModel"):
        from . import api
        return getattr(api, name)
    raise AttributeError(name)
