"""Benchmarks: kernel microbenchmarks (kernels.py) over layer shapes kept as data (shapes/*.txt,
regenerated from engine.zoo by make_shapes.py)."""
