"""Builtin scheduler plugin `basic`: round_robin and load_aware placement (a plugin package)."""
