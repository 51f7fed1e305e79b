"""Compiler-integrated structured pruning engine for mobile inference.

    opt = engine.optimize(model, example_inputs=(x,), target="host",
                          scheme="block", block=(4, 1), sparsity=0.8)
    y = opt(x)
    opt.save("artifact/")              # compiled for the target, manifest + sha256
    model = engine.load("artifact/")   # runs it (when the target matches this machine)

    opt.save("artifact/", signing_key="release.pem")         # + manifest.sig (Ed25519)
    model = engine.load("artifact/", trusted_keys=["release.pub"])   # verified before loading
"""
from ._version import __version__  # noqa: F401


def __getattr__(name):  # lazy: the package stays cheap and torch-free until used
    if name in ("optimize", "OptimizedModel"):
        from . import api
        return getattr(api, name)
    if name == "load":
        from .artifact import load_artifact
        return load_artifact
    raise AttributeError(name)
