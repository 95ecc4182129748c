"""Tritium: an inference server for 1-bit LLMs with sandboxed out-of-process plugins."""

__version__ = "0.1.0"
