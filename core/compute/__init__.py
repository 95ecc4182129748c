"""Compute: the reference forward pass and the fast runtime (numba kernels) that runs BitNet models."""

from tritium.core.compute.runtime import Runtime, Sequence

__all__ = ["Runtime", "Sequence"]
