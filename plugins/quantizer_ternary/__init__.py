"""Builtin quantizer plugin `ternary`: float or ternary weights -> I2_S, TL1, TQ1_0, TQ2_0 (and F16/Q8_0).

A plugin package like any third-party one: the core starts it from plugin.toml and talks to it over
gRPC (`tritium.plugin.v1.Quantizer`); bulk tensors cross in shared memory. The kernels (numba, each next
to a plain numpy twin with the same signature) are importable for tests and benchmarks.
"""
