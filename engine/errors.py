"""Exception types: every error names the layer, shape or option at fault."""


class EngineError(Exception):
    """Base class of every error the engine raises on purpose."""


class ConfigError(EngineError, ValueError):
    """A bad option passed to the engine (sparsity, scheme, block, target, threads ...)."""


class CaptureError(EngineError):
    """torch.export could not capture the model; the message names the op / construct."""


class SchemeError(EngineError):
    """A pruning scheme cannot be applied to a layer (message names layer and shape)."""


class LoweringError(EngineError):
    """A layer cannot be run on the engine's kernels or modules: the message names the layer
    and the reason."""


class LayerAttributeError(LoweringError, AttributeError):
    """The model's forward reads an attribute the module the engine put in place of a layer
    does not have (names the layer, the module and the attribute). An AttributeError too, so
    hasattr() / getattr(..., default) behave as with any module."""


class MismatchError(EngineError):
    """The optimized model's output does not match the masked reference."""


class ArtifactError(EngineError):
    """An artifact cannot be written, loaded or called: the message names the file, field,
    target or input at fault (missing, tampered, truncated, wrong arch, wrong shape ...)."""


class InputError(EngineError, ValueError):
    """An input given to an optimized model does not fit a layer: the message names the layer,
    the shape it takes and the shape it got."""


class InfeasibleError(ConfigError):
    """The budget asked for (sparsity, latency, accuracy floor) cannot be met on this target:
    the message says what is reachable and why, and which option to change. `.plan` is the
    best plan the mapper found (what allow_infeasible=True would return)."""

    def __init__(self, message: str, plan=None, reachable: dict = None):
        super().__init__(message)
        self.plan = plan
        self.reachable = dict(reachable or {})


class CompileError(EngineError):
    """TVM could not compile the captured model: the message names the op, the source line it
    comes from and a workaround (never a raw TVM exception)."""
