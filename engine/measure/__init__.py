"""engine.measure: the measurements the mappers (mapping/) decide with.

    # default_space: mapping's; HostProfiler, model_specs, model_weights, profile_costs: here
    specs = model_specs(model, (x,))                      # mapping.LayerSpec per conv / linear
    weights = model_weights(model, specs)
    prof = HostProfiler(weights)                          # or RPCProfiler("arm64", host, port)
    table, cands, taken = profile_costs(prof, specs, default_space())   # cached on disk
    energy = retained_energy(weights, specs, cands, masks=prof.masks)   # accuracy proxy

Layout: specs.py (LayerInfo -> LayerSpec), masks.py (candidate -> keep-mask, shared cache),
host.py (HostProfiler: this machine, as optimize() measures), rpc.py (RPCProfiler: a device
over TVM RPC; its TVM half is engine/codegen/remote.py), energy.py (retained weight energy),
cache.py (cost-table location, profile_costs), progress.py (stderr progress line).
"""
from .cache import default_cost_path, open_costs, profile_costs, runnable_candidates
from .energy import retained_energy
from .host import HostProfiler
from .masks import MaskCache, mask_problem
from .rpc import CompiledProfiler, RPCProfiler
from .specs import layer_specs, model_specs, model_weights

__all__ = ["CompiledProfiler", "HostProfiler", "RPCProfiler", "MaskCache", "default_cost_path",
           "layer_specs", "mask_problem", "model_specs", "model_weights", "open_costs",
           "profile_costs", "retained_energy", "runnable_candidates"]
