"""Entry point of the `ternary` quantizer plugin: `python -m tritium.plugins.quantizer_ternary`."""

from __future__ import annotations

from tritium.sdk import serve

from .servicer import TernaryQuantizer

NAME = "ternary"
VERSION = "0.1.0"

if __name__ == "__main__":
    serve(TernaryQuantizer(), "quantizer", NAME, VERSION)
