"""Benchmarks, each a module with a `main(argv)` for `python -m engine bench <name>`: kernels.py
and depthwise.py time the kernels the library lists (engine._kernels.list_kernels()) on layer
shapes kept as data in shapes/*.txt (layer_shapes.py; regenerated from engine.zoo by
make_shapes.py), printing and recording through report.py."""
