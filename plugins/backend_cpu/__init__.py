"""Builtin backend plugin `cpu`: runs the engine's CPU kernels in a plugin process (a plugin package)."""
