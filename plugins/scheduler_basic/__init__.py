"""Builtin scheduler plugin `basic`: round_robin, load_aware, energy and latency placement."""
