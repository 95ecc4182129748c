"""The built-in demo model: a tiny BitNet b1.58 GGUF shipped with Tritium, used when no model is given."""

from __future__ import annotations

from pathlib import Path

from tritium.core.errors import ModelFormatError

DEMO_MODEL = Path(__file__).resolve().parent / "demo" / "tritium-demo.gguf"


def demo_model_path() -> Path:
    """Path of the built-in demo GGUF; ModelFormatError saying where it was expected if it is missing."""
    if not DEMO_MODEL.is_file():
        raise ModelFormatError(
            f"the built-in demo model is missing: expected {DEMO_MODEL}. "
            f"Pass a model with --model PATH, or reinstall Tritium")
    return DEMO_MODEL
