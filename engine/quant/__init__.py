"""int8 quantization (issue P9): the numbers every int8 path shares.

    obs = engine.quant.observer("mse")          # or "minmax", "percentile"; default DEFAULT
    for x in calibration_batches: obs.update(x)
    qp = obs.qparams()                          # QParams: scale, zero point, range
    y = engine.quant.fake_quant(x, qp)          # quantize -> dequantize, straight-through grad
    cal = engine.quant.calibrate(model, batches) # every tensor of a model, BN folded (calibrate.py)
    sim = engine.quant.simulate(model, cal)      # the model as int8 will compute it (simulate.py)
    layer = engine.quant.qconv_of(conv, cal.layer(name))  # that layer on the int8 kernels (native.py)
    qm = engine.quant.lower_int8(model, cal)     # the whole model on the int8 kernels (lower.py)
    engine.quant.layer_diffs(qm, sim, (x,))      # each int8 layer vs its simulation (check.py)
    cm = engine.quant.compile_int8(qm, (x,), "arm64")  # into model.so (compile.py)

Conventions (those of the int8 kernels and of XNNPACK / TFLite, so peers quantized by ONNX
Runtime, OpenVINO or ExecuTorch compare like for like):
- activations: per tensor, asymmetric, uint8 [0, 255]: real = scale * (q - zero_point), the
  range widened to hold 0 so that zero padding and ReLU's zeros are exact;
- weights: per output channel, symmetric, int8 [-127, 127] (zero point 0, -128 unused: a
  product of two -128s is never formed, and sign-flipping tricks stay exact).
"""
from .observers import (DEFAULT, MinMaxObserver, MSEObserver, Observer, PercentileObserver,
                        observer, weight_qparams)
from .qparams import ACT_U8, WEIGHT_S8, QParams, QRange, choose_qparams
from .fake import fake_quant, quantize, dequantize
from .calibrate import Calibration, LayerQuant, calibrate
from .simulate import QuantSim, simulate
from .native import int8_weight, qconv_of
from .lower import lower_int8
from .check import LayerDiff, layer_diffs
from .compile import compile_int8, int8_manifest

__all__ = ["ACT_U8", "Calibration", "DEFAULT", "LayerDiff", "LayerQuant", "layer_diffs", "QuantSim", "calibrate", "simulate", "MSEObserver", "MinMaxObserver", "Observer",
           "PercentileObserver", "QParams", "QRange", "WEIGHT_S8", "choose_qparams",
           "dequantize", "fake_quant", "compile_int8", "int8_manifest", "int8_weight", "lower_int8", "observer", "qconv_of", "quantize",
           "weight_qparams"]
