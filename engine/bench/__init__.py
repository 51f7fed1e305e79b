"""Benchmarks, each a module with a `main(argv)` for `python -m engine bench <name>`: kernels.py
times the kernels on layer shapes kept as data in shapes/*.txt (regenerated from engine.zoo by
make_shapes.py)."""
